package peer

import (
	"net"
	"testing"
)

// BenchmarkHandshake is one full Hello/Challenge/Finish over an in-memory
// pipe, both ends, key derivation included.
func BenchmarkHandshake(b *testing.B) {
	psk := testPSK(b, 'k')
	a := newAcceptor(b, acceptorCfg(b, psk))
	dc := dialerCfg(psk, 2)
	for b.Loop() {
		dn, an := net.Pipe()
		done := make(chan error, 1)
		go func() {
			c, err := a.Accept(an)
			if err == nil {
				c.Close()
			}
			done <- err
		}()
		c, err := Handshake(dn, dc)
		if err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkFrameTag is the per-frame MAC cost on 1 MiB Records frames.
func BenchmarkFrameTag(b *testing.B) {
	k := [32]byte{1}
	body := make([]byte, 1<<20)
	b.Run("seal", func(b *testing.B) {
		var buf []byte
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			buf = SealFrame(buf[:0], &k, 1, TypeRecords, body)
		}
	})
	b.Run("open", func(b *testing.B) {
		f := SealFrame(nil, &k, 1, TypeRecords, body)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, _, _, err := OpenFrame(f, &k, 1, DefaultMaxFrame); err != nil {
				b.Fatal(err)
			}
		}
	})
}
