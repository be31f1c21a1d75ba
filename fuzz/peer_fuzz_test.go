package fuzz

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/finelog/finelog/peer"
	"github.com/finelog/finelog/store"
)

// fuzzFrameKey is the direction key the seed corpus was sealed with.
var fuzzFrameKey = [32]byte{'f', 'i', 'n', 'e', 'l', 'o', 'g'}

// FuzzPeerFrame feeds arbitrary bytes to the tagged-frame decoder as a
// stream of frames with counters 0, 1, 2, ...: it never panics, a frame is
// delivered only when its tag verifies under the right counter (so it
// re-seals to exactly the bytes read), and a Records body that decodes
// survives a re-encode unchanged, as does a Segment body (byte for byte:
// its encoding has one form). The input also goes to the Records
// decoder directly: behind a valid tag the fuzzer would rarely reach it.
func FuzzPeerFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(peer.SealFrame(nil, &fuzzFrameKey, 0, peer.TypeHeartbeat, nil))
	f.Add(peer.SealFrame(nil, &fuzzFrameKey, 0, peer.TypeAck, []byte{0, 0, 0, 0, 0, 0, 0, 42}))
	attrs, _ := store.MakeAttributes(map[string]string{"env": "prod"})
	f.Add(peer.EncodeRecords(nil, peer.Records{PrimaryLast: 8, Records: []store.Record{{First: 7, Last: 8, Rows: []store.Row{
		{Seq: 7, Key: "/k", Data: "a", Attributes: attrs}, {Seq: 8, Key: "/k", Data: "b"}}}}}))
	seg := peer.EncodeSegmentChunk(nil, peer.SegmentChunk{First: 1, Last: 40, Size: 9, Hash: [32]byte{7}, Replaces: [][2]int64{{1, 20}, {21, 40}}, Offset: 4, Data: []byte("abcde")})
	f.Add(seg)
	f.Add(peer.SealFrame(nil, &fuzzFrameKey, 0, peer.TypeSegment, seg))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRecords(t, b)
		checkSegment(t, b)
		for ctr := uint64(0); len(b) > 0; ctr++ {
			typ, body, n, err := peer.OpenFrame(b, &fuzzFrameKey, ctr, 1<<20)
			if err != nil {
				if !errors.Is(err, peer.ErrProtocol) && !errors.Is(err, peer.ErrBadTag) {
					t.Fatalf("unclassified error: %v", err)
				}
				return
			}
			if n < 4+1+peer.TagBytes || n > len(b) {
				t.Fatalf("frame size %d of %d bytes", n, len(b))
			}
			if again := peer.SealFrame(nil, &fuzzFrameKey, ctr, typ, body); !bytes.Equal(again, b[:n]) {
				t.Fatalf("frame %d delivered but does not re-seal to the bytes read", ctr)
			}
			switch typ {
			case peer.TypeRecords:
				checkRecords(t, body)
			case peer.TypeSegment:
				checkSegment(t, body)
			}
			b = b[n:]
		}
	})
}

func checkRecords(t *testing.T, body []byte) {
	recs, err := peer.DecodeRecords(body)
	if err != nil {
		if !errors.Is(err, peer.ErrProtocol) {
			t.Fatalf("records: unclassified error: %v", err)
		}
		return
	}
	again, err := peer.DecodeRecords(peer.EncodeRecords(nil, recs))
	if err != nil {
		t.Fatalf("records decoded, but their re-encoding does not: %v", err)
	}
	if !reflect.DeepEqual(again, recs) {
		t.Fatalf("records change in a re-encode:\n%+v\n%+v", recs, again)
	}
}

func checkSegment(t *testing.T, body []byte) {
	c, err := peer.DecodeSegmentChunk(body)
	if err != nil {
		if !errors.Is(err, peer.ErrProtocol) {
			t.Fatalf("segment: unclassified error: %v", err)
		}
		return
	}
	if c.Offset+int64(len(c.Data)) > c.Size || len(c.Data) == 0 || c.Last < c.First {
		t.Fatalf("segment chunk decoded out of its own bounds: first %d last %d size %d offset %d data %d", c.First, c.Last, c.Size, c.Offset, len(c.Data))
	}
	if again := peer.EncodeSegmentChunk(nil, c); !bytes.Equal(again, body) {
		t.Fatalf("segment chunk does not re-encode to the bytes it was decoded from")
	}
}
