package peer

import (
	"crypto/subtle"
	"encoding/binary"

	"lukechampine.com/blake3"
)

// ID is a 16-byte cluster or node identifier on the wire.
type ID [16]byte

// NameID is the first 16 bytes of BLAKE3(name): how a cluster name or a
// node name (--node-name) becomes cluster_id or a node id.
func NameID(name string) ID {
	sum := blake3.Sum256([]byte(name))
	var id ID
	copy(id[:], sum[:16])
	return id
}

// Key-derivation contexts and the transcript's domain tag, exactly as the
// protocol spells them (docs/replica.md).
const (
	ctxMACKey      = "finelog replica-auth v1 psk->mac-key"
	ctxDialerToAcc = "finelog replica-auth v1 dialer->acceptor"
	ctxAccToDialer = "finelog replica-auth v1 acceptor->dialer"
	transcriptTag  = "finelog replica-auth v1"
)

// Direction labels appended to the transcript: they make mac_a and mac_d
// differ, so the acceptor's MAC offered back as the dialer's (reflection)
// fails.
const (
	labelDialer   byte = 0x01
	labelAcceptor byte = 0x02
)

// key is derived key material. Structs hold it by pointer (*key), so a
// struct printed with fmt shows an address, not the bytes.
type key [32]byte

func ptr(k key) *key { return &k }

// macKey derives the handshake MAC key from the PSK.
func macKey(p PSK) key {
	var k key
	blake3.DeriveKey(k[:], ctxMACKey, p.bytes())
	return k
}

// transcript binds the domain tag, the cluster, both ids and both nonces.
func transcript(cluster, dialer, acceptor ID, nonceD, nonceA *[32]byte) []byte {
	t := make([]byte, 0, len(transcriptTag)+3*16+2*32+1)
	t = append(t, transcriptTag...)
	t = append(t, cluster[:]...)
	t = append(t, dialer[:]...)
	t = append(t, acceptor[:]...)
	t = append(t, nonceD[:]...)
	t = append(t, nonceA[:]...)
	return t
}

// handshakeMAC is BLAKE3.Keyed(mac_key, transcript | label).
func handshakeMAC(k *key, transcript []byte, label byte) [32]byte {
	h := blake3.New(32, k[:])
	h.Write(transcript)
	h.Write([]byte{label})
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// macEqual compares MACs in constant time.
func macEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// sessionKeys derives the per-direction frame keys from mac_key and both
// nonces: k_da (dialer to acceptor) and k_ad (acceptor to dialer).
func sessionKeys(mk *key, nonceD, nonceA *[32]byte) (kda, kad key) {
	material := make([]byte, 0, 96)
	material = append(material, mk[:]...)
	material = append(material, nonceD[:]...)
	material = append(material, nonceA[:]...)
	blake3.DeriveKey(kda[:], ctxDialerToAcc, material)
	blake3.DeriveKey(kad[:], ctxAccToDialer, material)
	return kda, kad
}

// TagBytes is the length of a frame tag.
const TagBytes = 16

// frameTag is BLAKE3.Keyed(k, counter:u64 | type | body)[:16].
func frameTag(k *key, counter uint64, typ byte, body []byte) [TagBytes]byte {
	var hdr [9]byte
	binary.BigEndian.PutUint64(hdr[:8], counter)
	hdr[8] = typ
	h := blake3.New(TagBytes, k[:])
	h.Write(hdr[:])
	h.Write(body)
	var out [TagBytes]byte
	h.Sum(out[:0])
	return out
}
