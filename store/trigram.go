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
	// Eight bytes are loaded at once and six trigrams cut from them: the
	// byte-at-a-time rolling value was a serial chain of three operations
	// per byte, and the bitmap updates of independent trigrams overlap.
	i := 0
	for ; i+8 <= len(s); i += 6 {
		w := uint64(s[i])<<56 | uint64(s[i+1])<<48 | uint64(s[i+2])<<40 | uint64(s[i+3])<<32 |
			uint64(s[i+4])<<24 | uint64(s[i+5])<<16 | uint64(s[i+6])<<8 | uint64(s[i+7])
		// == trigramHash of the trigrams at i..i+5; the array type drops
		// bounds checks.
		h0 := (uint32(w>>40) & 0xffffff * 0x9E3779B1) >> 16
		h1 := (uint32(w>>32) & 0xffffff * 0x9E3779B1) >> 16
		h2 := (uint32(w>>24) & 0xffffff * 0x9E3779B1) >> 16
		h3 := (uint32(w>>16) & 0xffffff * 0x9E3779B1) >> 16
		h4 := (uint32(w>>8) & 0xffffff * 0x9E3779B1) >> 16
		h5 := (uint32(w) & 0xffffff * 0x9E3779B1) >> 16
		bits[h0>>3] |= 1 << (h0 & 7)
		bits[h1>>3] |= 1 << (h1 & 7)
		bits[h2>>3] |= 1 << (h2 & 7)
		bits[h3>>3] |= 1 << (h3 & 7)
		bits[h4>>3] |= 1 << (h4 & 7)
		bits[h5>>3] |= 1 << (h5 & 7)
	}
	for ; i+3 <= len(s); i++ {
		h := trigramHash(s[i], s[i+1], s[i+2])
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
