package peer

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// linked returns an authenticated dialer/acceptor pair.
func linked(t *testing.T) (d, a *Conn) {
	t.Helper()
	psk := testPSK(t, 'k')
	dr, ar := handshakePair(t, newAcceptor(t, acceptorCfg(t, psk)), dialerCfg(psk, 2))
	if dr.err != nil || ar.err != nil {
		t.Fatalf("handshake: %v / %v", dr.err, ar.err)
	}
	return dr.c, ar.c
}

// inject writes raw bytes on from's socket (bypassing its Send), then
// closes it so a receiver waiting for more sees the end.
func inject(from *Conn, b []byte) {
	go func() {
		from.nc.Write(b)
		from.nc.Close()
	}()
}

// expectClosed checks that to's next Recv fails (with want, unless nil:
// any error) and that the connection is then closed from to's side.
func expectClosed(t *testing.T, to *Conn, want error) {
	t.Helper()
	typ, _, err := to.Recv()
	if err == nil {
		t.Fatalf("frame of type 0x%02x accepted, want %v", typ, want)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("Recv: %v, want %v", err, want)
	}
	if _, err := to.nc.Write([]byte{0}); err == nil {
		t.Fatal("connection still open after a bad frame")
	}
}

func seal(c *Conn, ctr uint64, typ byte, body []byte) []byte {
	return SealFrame(nil, (*[32]byte)(c.wkey), ctr, typ, body)
}

func TestFrameTruncatedCloses(t *testing.T) {
	d, a := linked(t)
	f := seal(d, 0, TypeAck, make([]byte, 8))
	for _, n := range []int{2, 4, 10, len(f) - 1} {
		d, a = linked(t)
		inject(d, f[:n])
		if n < 4 {
			expectClosed(t, a, io.ErrUnexpectedEOF)
		} else {
			expectClosed(t, a, ErrProtocol)
		}
	}
}

func TestFrameOversizedCloses(t *testing.T) {
	d, a := linked(t)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], DefaultMaxFrame+1)
	inject(d, hdr[:]) // refused on the length alone, before any body
	expectClosed(t, a, ErrProtocol)

	d, a = linked(t)
	if err := d.Send(TypeRecords, make([]byte, DefaultMaxFrame)); err == nil {
		t.Fatal("Send accepted a frame over the limit")
	}
	d.Close()
	a.Close()
}

// TestFrameFlippedBitCloses flips every bit of every data frame type in
// both directions: each one closes the connection instead of delivering.
func TestFrameFlippedBitCloses(t *testing.T) {
	frames := []struct {
		name  string
		toAcc bool
		typ   byte
		body  []byte
	}{
		{"subscribe", true, TypeSubscribe, []byte{0, 0, 0, 0, 0, 0, 0, 7}},
		{"ack", true, TypeAck, []byte{0, 0, 0, 0, 0, 0, 1, 0}},
		{"heartbeat to primary", true, TypeHeartbeat, nil},
		{"heartbeat to replica", false, TypeHeartbeat, nil},
		{"records", false, TypeRecords, EncodeRecords(nil, Records{Floor: 3, PrimaryLast: 9})},
	}
	for _, fr := range frames {
		t.Run(fr.name, func(t *testing.T) {
			d, a := linked(t)
			from, to := d, a
			if !fr.toAcc {
				from, to = a, d
			}
			good := seal(from, 0, fr.typ, fr.body)
			d.Close()
			a.Close()
			for bit := range len(good) * 8 {
				d, a := linked(t)
				from, to = d, a
				if !fr.toAcc {
					from, to = a, d
				}
				f := append([]byte(nil), good...)
				f[bit/8] ^= 1 << (bit % 8)
				inject(from, f)
				expectClosed(t, to, nil)
			}
		})
	}
}

func TestFrameReplayDropReorderClose(t *testing.T) {
	ack := func(n byte) []byte { return []byte{0, 0, 0, 0, 0, 0, 0, n} }
	cases := map[string][]uint64{
		"replayed":  {0, 0},
		"dropped":   {0, 2},
		"reordered": {1, 0},
	}
	delivered := map[string]int{"replayed": 1, "dropped": 1, "reordered": 0}
	for name, ctrs := range cases {
		t.Run(name, func(t *testing.T) {
			d, a := linked(t)
			var b []byte
			for i, c := range ctrs {
				b = append(b, seal(d, c, TypeAck, ack(byte(i)))...)
			}
			inject(d, b)
			for range delivered[name] {
				if _, _, err := a.Recv(); err != nil {
					t.Fatalf("the in-order first frame: %v", err)
				}
			}
			expectClosed(t, a, ErrBadTag)
		})
	}
}

func TestFrameUnknownOrMisdirectedTypeCloses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		toAcc bool
		typ   byte
		body  []byte
	}{
		{"unknown type", true, 0x7f, nil},
		{"handshake type after handshake", true, TypeHello, make([]byte, helloBody)},
		{"records sent to the primary", true, TypeRecords, EncodeRecords(nil, Records{})},
		{"subscribe sent to the replica", false, TypeSubscribe, make([]byte, 8)},
		{"ack with a short body", true, TypeAck, make([]byte, 7)},
		{"heartbeat with a body", false, TypeHeartbeat, []byte{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, a := linked(t)
			from, to := d, a
			if !tc.toAcc {
				from, to = a, d
			}
			inject(from, seal(from, 0, tc.typ, tc.body))
			expectClosed(t, to, ErrProtocol)
		})
	}
}

func TestOpenFrameMatchesSeal(t *testing.T) {
	k := [32]byte{1, 2, 3}
	f := SealFrame(nil, &k, 5, TypeAck, []byte("12345678"))
	typ, body, n, err := OpenFrame(append(f, 0xff), &k, 5, DefaultMaxFrame)
	if err != nil || typ != TypeAck || string(body) != "12345678" || n != len(f) {
		t.Fatalf("OpenFrame: type %#x body %q n %d err %v", typ, body, n, err)
	}
	if _, _, _, err := OpenFrame(f, &k, 6, DefaultMaxFrame); !errors.Is(err, ErrBadTag) {
		t.Fatalf("wrong counter: %v", err)
	}
}
