package store

import (
	"testing"

	"pgregory.net/rapid"
)

// addTrigramsSlow is the definition addTrigrams must match bit for bit:
// segments on disk carry bitmaps built with trigramHash.
func addTrigramsSlow(bits *[trigramBits / 8]byte, s string) {
	for i := 0; i+3 <= len(s); i++ {
		h := trigramHash(s[i], s[i+1], s[i+2])
		bits[h>>3] |= 1 << (h & 7)
	}
}

func TestAddTrigramsMatchesDefinition(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var got, want [trigramBits / 8]byte
		for _, s := range rapid.SliceOfN(rapid.String(), 1, 4).Draw(t, "lines") {
			addTrigrams(&got, s)
			addTrigramsSlow(&want, s)
		}
		// Arbitrary bytes, every length around the 8-byte loads' edges.
		for _, b := range rapid.SliceOfN(rapid.SliceOfN(rapid.Byte(), 0, 40), 1, 4).Draw(t, "byte lines") {
			addTrigrams(&got, string(b))
			addTrigramsSlow(&want, string(b))
		}
		if got != want {
			t.Fatal("addTrigrams set different bits than trigramHash defines")
		}
	})
}

func BenchmarkAddTrigrams(b *testing.B) {
	rows := benchRows(1, 1000, 10)
	var bits [trigramBits / 8]byte
	n := 0
	for _, r := range rows {
		n += len(r.Data)
	}
	b.SetBytes(int64(n))
	for b.Loop() {
		for i := range rows {
			addTrigrams(&bits, rows[i].Data)
		}
	}
}
