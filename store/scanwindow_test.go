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
	rows := variedRows(t, 9, 3*rowGroupRows+555, 13, 97)
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

// Scan returns rows with attributes from a segment, each with its own.
func TestScanWindowAttributes(t *testing.T) {
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

// Successive Scans, each starting after the last row the previous one
// returned, with random maxRows and maxBytes, return every row (of the
// stretch they cover) exactly once
// in seq order with its content: across segments, scan windows and the
// memtable.
func TestScanCallsCoverEveryRowOnce(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	ctx := context.Background()
	var rows []Row
	for part := 0; part < 3; part++ {
		batch := benchRows(int64(part), rowGroupRows+1234, 11)
		mustAppend(t, s, batch)
		rows = append(rows, batch...)
		if part < 2 {
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(s.segs) < 2 {
		t.Fatalf("%d segments, want several", len(s.segs))
	}
	rapid.Check(t, func(t *rapid.T) {
		after := rapid.Int64Range(0, int64(len(rows))).Draw(t, "after")
		for calls := 0; calls < 20 && after < int64(len(rows)); calls++ {
			maxRows := rapid.IntRange(1, 3000).Draw(t, "maxRows")
			maxBytes := rapid.IntRange(0, 200_000).Draw(t, "maxBytes")
			got, err := s.Scan(ctx, after, maxRows, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || len(got) > maxRows {
				t.Fatalf("Scan(%d, %d, %d) returned %d rows", after, maxRows, maxBytes, len(got))
			}
			for _, r := range got {
				w := rows[after]
				if r.Seq != after+1 || r.Key != w.Key || r.Data != w.Data || r.EpochMS != w.EpochMS || r.Level != w.Level || r.Source != w.Source {
					t.Fatalf("Scan(after %d): got %+v, want seq %d %+v", after, r, after+1, w)
				}
				after = r.Seq
			}
		}
	})
}

// variedRows is benchRows with every field varied: sources, clusters and
// attempt ids cycle, every emptyEvery-th row has no data, and past the
// first row group (whose pages then hold no attributes) most rows carry
// one to three attribute pairs.
func variedRows(t testing.TB, seed int64, n, keys, emptyEvery int) []Row {
	t.Helper()
	rows := benchRows(seed, n, keys)
	for i := range rows {
		rows[i].Source = []string{"stdout", "stderr"}[i%2]
		rows[i].Cluster = []string{"", "east", "west"}[i%3]
		rows[i].AttemptID = int32(i % 5)
		if i%emptyEvery == 0 {
			rows[i].Data = ""
		}
		if i > rowGroupRows+100 && i%4 != 0 {
			var pairs []Attribute
			for p := 0; p <= i%3; p++ {
				pairs = append(pairs, Attribute{[]string{"trace", "gpu", "a"}[p], fmt.Sprint(i % (7 + p))})
			}
			a, err := AttributesOf(pairs...)
			if err != nil {
				t.Fatal(err)
			}
			rows[i].Attributes = a
		}
	}
	return rows
}
