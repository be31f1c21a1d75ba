package store

// The trigram index: every row group of a segment carries a bitmap of the
// trigrams (hashed to trigramBits bits, one hash: a bloom filter) of its
// rows' data, so a substring read skips every row group missing one of the
// substring's trigrams.

// trigramBits is the bitmap size per row group (8 KiB).
const trigramBits = 1 << 16

func trigramHash(a, b, c byte) uint32 {
	return (uint32(a)<<16 | uint32(b)<<8 | uint32(c)) * 0x9E3779B1 >> 16
}

func addTrigrams(bits *[trigramBits / 8]byte, s string) {
	if len(s) < 3 {
		return
	}
	v := uint32(s[0])<<8 | uint32(s[1])
	for i := 2; i < len(s); i++ {
		v = (v<<8 | uint32(s[i])) & 0xffffff
		h := (v * 0x9E3779B1) >> 16 // == trigramHash; the array type drops bounds checks
		bits[h>>3] |= 1 << (h & 7)
	}
}

// mayContain reports whether every trigram of sub is set: false means no row
// of the group contains sub.
func mayContain(bits []byte, sub string) bool {
	if len(bits) == 0 {
		return true
	}
	for i := 0; i+3 <= len(sub); i++ {
		h := trigramHash(sub[i], sub[i+1], sub[i+2])
		if bits[h>>3]&(1<<(h&7)) == 0 {
			return false
		}
	}
	return true
}
