package peer

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"testing"

	"lukechampine.com/blake3"
)

// TestSpecDialerInteroperates drives the real Acceptor with a dialer
// written straight from docs/replica.md (raw BLAKE3 calls, no helpers from
// this package), so the implementation cannot drift from the spec without
// this test noticing.
func TestSpecDialerInteroperates(t *testing.T) {
	psk := bytes.Repeat([]byte("0123456789abcdef"), 2)
	p, _ := NewPSK(psk, "test")
	sum := func(s string) []byte { h := blake3.Sum256([]byte(s)); return h[:16] }
	cluster, dialer := sum("east"), sum("replica-1")
	a := newAcceptor(t, AcceptorConfig{Cluster: NameID("east"), Node: NameID("primary-1"), PSK: p, Rand: bytes.NewReader(bytes.Repeat([]byte{0xaa}, 32))})
	dn, an := net.Pipe()
	defer dn.Close()
	res := acceptInBackground(a, an)

	nonceD := bytes.Repeat([]byte{0x11}, 32)
	hello := []byte{0, 0, 0, 66, 0x01, 1}
	hello = append(append(append(hello, cluster...), dialer...), nonceD...)
	go dn.Write(hello)
	var ch [4 + 1 + 81]byte
	if _, err := io.ReadFull(dn, ch[:]); err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint32(ch[:]) != 82 || ch[4] != 0x02 || ch[5] != 0 {
		t.Fatalf("challenge header %x", ch[:6])
	}
	acceptorID, nonceA, macA := ch[6:22], ch[22:54], ch[54:86]
	if !bytes.Equal(acceptorID, sum("primary-1")) || !bytes.Equal(nonceA, bytes.Repeat([]byte{0xaa}, 32)) {
		t.Fatalf("acceptor id %x nonce %x", acceptorID, nonceA)
	}
	var macKey [32]byte
	blake3.DeriveKey(macKey[:], "finelog replica-auth v1 psk->mac-key", psk)
	tr := []byte("finelog replica-auth v1")
	for _, part := range [][]byte{cluster, dialer, acceptorID, nonceD, nonceA} {
		tr = append(tr, part...)
	}
	keyed := func(k []byte, size int, parts ...[]byte) []byte {
		h := blake3.New(size, k)
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	if want := keyed(macKey[:], 32, tr, []byte{0x02}); !bytes.Equal(macA, want) {
		t.Fatalf("mac_a %x, spec says %x", macA, want)
	}
	finish := append([]byte{0, 0, 0, 33, 0x03}, keyed(macKey[:], 32, tr, []byte{0x01})...)
	go dn.Write(finish)
	r := <-res
	if r.err != nil {
		t.Fatalf("acceptor refused the spec dialer: %v", r.err)
	}
	defer r.c.Close()

	material := append(append(append([]byte(nil), macKey[:]...), nonceD...), nonceA...)
	var kda, kad [32]byte
	blake3.DeriveKey(kda[:], "finelog replica-auth v1 dialer->acceptor", material)
	blake3.DeriveKey(kad[:], "finelog replica-auth v1 acceptor->dialer", material)
	// Two Acks, counters 0 and 1, then read a Heartbeat back.
	for ctr, seq := range []uint64{7, 9} {
		var c, body [8]byte
		binary.BigEndian.PutUint64(c[:], uint64(ctr))
		binary.BigEndian.PutUint64(body[:], seq)
		f := append([]byte{0, 0, 0, 1 + 8 + 16, 0x12}, body[:]...)
		f = append(f, keyed(kda[:], 16, c[:], []byte{0x12}, body[:])...)
		go dn.Write(f)
		typ, got, err := r.c.Recv()
		if err != nil || typ != TypeAck || Seq(got) != int64(seq) {
			t.Fatalf("frame %d: type %#x seq %d err %v", ctr, typ, Seq(got), err)
		}
	}
	go r.c.Send(TypeHeartbeat, nil)
	var hb [4 + 1 + 16]byte
	if _, err := io.ReadFull(dn, hb[:]); err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0, 0, 0, 17, 0x13}, keyed(kad[:], 16, make([]byte, 8), []byte{0x13})...)
	if !bytes.Equal(hb[:], want) {
		t.Fatalf("heartbeat %x, spec says %x", hb, want)
	}
	t.Logf("vector: mac_a=%s mac_d=%s k_da=%s k_ad=%s heartbeat=%s",
		hex.EncodeToString(macA), hex.EncodeToString(finish[5:]), hex.EncodeToString(kda[:]), hex.EncodeToString(kad[:]), hex.EncodeToString(hb[:]))
}
