package objstore

import (
	"bytes"
	"testing"
)

// TestOpenStubChecked: a stub round-trips, serves only reads one range
// holds, and a stub with any byte flipped is refused.
func TestOpenStubChecked(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100)
	e := Entry{Object: "segments/a.parquet", SHA256: "ab", Size: int64(len(data))}
	s, err := cutStub(bytes.NewReader(data), e, [][2]int64{{0, 4}, {900, 100}})
	if err != nil {
		t.Fatal(err)
	}
	enc := s.encode()
	got, err := decodeStub(enc)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 50)
	if !got.readAt(p, 950) || !bytes.Equal(p, data[950:1000]) {
		t.Fatalf("read inside a range: %q", p)
	}
	if got.readAt(p, 880) {
		t.Fatal("served a read that starts outside every range")
	}
	if got.object != e.Object || got.size != e.Size {
		t.Fatalf("decoded %+v", got)
	}
	for i := range enc {
		bad := bytes.Clone(enc)
		bad[i] ^= 1
		if _, err := decodeStub(bad); err == nil {
			t.Fatalf("stub with byte %d flipped accepted", i)
		}
	}
	if _, err := cutStub(bytes.NewReader(data), e, [][2]int64{{990, 20}}); err == nil {
		t.Fatal("range past the end accepted")
	}
}
