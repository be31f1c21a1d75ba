package peer

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStatsCountHandshakesAndTagFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := NewStats(reg, nil)
	psk := testPSK(t, 'k')
	cfg := acceptorCfg(t, psk)
	cfg.Stats = st
	a := newAcceptor(t, cfg)
	dc := dialerCfg(psk, 2)
	dc.Stats = st

	d, acc := handshakePair(t, a, dc)
	if d.err != nil || acc.err != nil {
		t.Fatal(d.err, acc.err)
	}
	other := dialerCfg(psk, 3)
	other.Cluster = NameID("west")
	other.Stats = st
	handshakePair(t, a, other)
	wrong := dialerCfg(testPSK(t, 'x'), 4)
	wrong.Stats = st
	handshakePair(t, a, wrong)

	for _, c := range []struct {
		role, result string
		want         float64
	}{
		{"acceptor", "ok", 1}, {"dialer", "ok", 1},
		{"acceptor", "cluster_mismatch", 1}, {"dialer", "cluster_mismatch", 1},
		{"acceptor", "bad_mac", 1}, {"dialer", "bad_mac", 1},
	} {
		if got := testutil.ToFloat64(st.handshakes.WithLabelValues(c.role, c.result)); got != c.want {
			t.Errorf("handshakes{role=%s,result=%s} = %v, want %v", c.role, c.result, got, c.want)
		}
	}

	// Frames and bytes per direction, then a forged frame.
	sent := make(chan error, 1)
	go func() { sent <- d.c.SendSeq(TypeAck, 0) }()
	if _, _, err := acc.c.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(st.frames.WithLabelValues("received")); got != 1 {
		t.Errorf("frames received = %v, want 1", got)
	}
	if got := testutil.ToFloat64(st.bytes.WithLabelValues("sent")); got != 4+1+8+TagBytes {
		t.Errorf("bytes sent = %v, want %d", got, 4+1+8+TagBytes)
	}
	forged := SealFrame(nil, &[32]byte{}, 1, TypeAck, make([]byte, 8))
	inject(d.c, forged)
	if _, _, err := acc.c.Recv(); !errors.Is(err, ErrBadTag) {
		t.Fatalf("forged frame: %v", err)
	}
	if got := testutil.ToFloat64(st.tagFails); got != 1 {
		t.Errorf("tag failures = %v, want 1", got)
	}
}

func TestHandshakeFrameOver256Closes(t *testing.T) {
	a := newAcceptor(t, acceptorCfg(t, testPSK(t, 'k')))
	dn, an := net.Pipe()
	defer dn.Close()
	res := acceptInBackground(a, an)
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:], MaxHandshakeFrame+1)
	hdr[4] = TypeHello
	go dn.Write(hdr[:])
	if r := <-res; !errors.Is(r.err, ErrProtocol) {
		t.Fatalf("a 257-byte handshake frame: %v, want ErrProtocol", r.err)
	}
	waitClosed(t, dn)
}
