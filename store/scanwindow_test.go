package store

import (
	"context"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/vfs"
)

// The column-wise window decode must give exactly the rows the row reader
// gives for the same seq window, every field, across row groups and keys.
func TestSeqWindowMatchesRowReader(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	rows := benchRows(9, 3*rowGroupRows+555, 13)
	for i := range rows {
		rows[i].Source = []string{"stdout", "stderr"}[i%2]
		rows[i].Cluster = []string{"", "east", "west"}[i%3]
		rows[i].AttemptID = int32(i % 5)
		if i%97 == 0 {
			rows[i].Data = ""
		}
	}
	mustAppend(t, s, rows)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	sg := s.segs[0]
	ctx := context.Background()
	rapid.Check(t, func(t *rapid.T) {
		lo := rapid.Int64Range(sg.first, sg.last).Draw(t, "lo")
		hi := rapid.Int64Range(lo, min(sg.last, lo+int64(rapid.IntRange(0, 2*rowGroupRows).Draw(t, "width")))).Draw(t, "hi")
		got, ok, err := sg.decodeSeqWindow(ctx, lo, hi)
		if err != nil || !ok {
			t.Fatalf("decodeSeqWindow(%d, %d): ok %v, %v", lo, hi, ok, err)
		}
		q := &query{scope: ScopePrefix, cursor: lo - 1, maxSeq: hi, limit: int(hi - lo + 1)}
		want, err := sg.collect(q, q.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("window %d..%d: %d rows, row reader %d", lo, hi, len(got), len(want))
		}
		for i := range want {
			if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
				t.Fatalf("window %d..%d row %d:\n got %+v\nwant %+v", lo, hi, i, got[i], want[i])
			}
		}
	})
}

// A segment whose rows carry attributes is read by the row reader (ok is
// false), and Scan still returns every row once in seq order.
func TestSeqWindowAttributesFallBack(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	rows := benchRows(3, 2000, 7)
	for i := range rows {
		if i%3 == 0 {
			a, err := AttributesOf(Attribute{"gpu", fmt.Sprint(i % 8)})
			if err != nil {
				t.Fatal(err)
			}
			rows[i].Attributes = a
		}
	}
	mustAppend(t, s, rows)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.segs[0].decodeSeqWindow(context.Background(), 1, 2000); ok || err != nil {
		t.Fatalf("decodeSeqWindow on a segment with attributes: ok %v, %v; want the row-reader fallback", ok, err)
	}
	after := int64(0)
	for after < 2000 {
		got, err := s.Scan(context.Background(), after, 300, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			if r.Seq != after+1 {
				t.Fatalf("Scan after %d: seq %d", after, r.Seq)
			}
			if want := rows[r.Seq-1].Attributes; r.Attributes != want {
				t.Fatalf("seq %d: attributes %q, want %q", r.Seq, r.Attributes, want)
			}
			after = r.Seq
		}
	}
}
