package peer

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

var (
	testCluster  = NameID("east")
	testDialer   = NameID("replica-1")
	testAcceptor = NameID("primary-1")
)

func testPSK(t testing.TB, fill byte) PSK {
	t.Helper()
	p, err := NewPSK(bytes.Repeat([]byte{fill}, 32), "test")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// seeded is a deterministic nonce source.
func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func acceptorCfg(t testing.TB, psk PSK) AcceptorConfig {
	return AcceptorConfig{Cluster: testCluster, Node: testAcceptor, PSK: psk, Rand: seeded(1)}
}

func dialerCfg(psk PSK, seed byte) DialerConfig {
	return DialerConfig{Cluster: testCluster, Node: testDialer, PSK: psk, Rand: seeded(seed)}
}

type result struct {
	c   *Conn
	err error
}

// handshakePair runs a real dialer against a real acceptor over a pipe.
func handshakePair(t testing.TB, a *Acceptor, dcfg DialerConfig) (d, acc result) {
	t.Helper()
	dn, an := net.Pipe()
	ch := make(chan result, 1)
	go func() {
		c, err := a.Accept(an)
		ch <- result{c, err}
	}()
	c, err := Handshake(dn, dcfg)
	d = result{c, err}
	acc = <-ch
	t.Cleanup(func() { dn.Close(); an.Close() })
	return d, acc
}

func newAcceptor(t testing.TB, cfg AcceptorConfig) *Acceptor {
	t.Helper()
	a, err := NewAcceptor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rawFrame reads one untagged frame from a raw test peer.
func rawFrame(t testing.TB, r io.Reader) (byte, []byte) {
	t.Helper()
	typ, body, err := readRawFrame(r, MaxHandshakeFrame)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return typ, body
}

// waitClosed reports whether the peer end of nc was closed: a read gets
// EOF or a closed-pipe error instead of data.
func waitClosed(t testing.TB, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if n, err := nc.Read(b[:]); err == nil {
		t.Fatalf("expected the connection to be closed, read %d bytes", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open after 5s")
	}
}

var _ clock.Clock = (*clock.Fake)(nil)
