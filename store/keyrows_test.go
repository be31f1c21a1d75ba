package store

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/vfs"
)

// A tail of one key read from a segment (decoded column by column) returns
// exactly the newest rows of that key that pass the query's filters, every
// field, whatever the limit, cursor and filters: across row groups, with
// and without attributes, and the same rows the row reader returns.
func TestTailFromSegmentMatchesRows(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	keys := 3
	rows := variedRows(t, 5, 2*rowGroupRows+555, keys, 89)
	mustAppend(t, s, rows)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.MemtableRows != 0 || st.Segments != 1 {
		t.Fatalf("want every row in one segment: %+v", st)
	}
	var names []string
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.Key] {
			seen[r.Key] = true
			names = append(names, r.Key)
		}
	}
	ctx := context.Background()
	rapid.Check(t, func(t *rapid.T) {
		q := Query{
			Source:   rapid.SampledFrom(names).Draw(t, "key"),
			Scope:    ScopeExact,
			Tail:     true,
			MaxLines: rapid.IntRange(1, MaxMaxLines).Draw(t, "limit"),
		}
		if rapid.Bool().Draw(t, "cursor") {
			q.Cursor = rapid.Int64Range(0, int64(len(rows))).Draw(t, "cursorSeq")
		}
		if rapid.Bool().Draw(t, "since") {
			q.SinceMS = rows[rapid.IntRange(0, len(rows)-1).Draw(t, "sinceRow")].EpochMS
		}
		q.MinLevel = rapid.SampledFrom([]string{"", "INFO", "WARNING", "ERROR"}).Draw(t, "minLevel")
		q.Cluster = rapid.SampledFrom([]string{"", "east", "west"}).Draw(t, "cluster")
		if rapid.IntRange(0, 3).Draw(t, "attrs") == 0 {
			a, err := AttributesOf(Attribute{"trace", fmt.Sprint(rapid.IntRange(0, 6).Draw(t, "trace"))})
			if err != nil {
				t.Fatal(err)
			}
			q.Attributes = a
		}
		min := ParseMinLevel(q.MinLevel)
		var want []Row
		for i, r := range rows {
			r.Seq = int64(i + 1)
			if r.Key != q.Source || r.Seq <= q.Cursor || (q.SinceMS > 0 && r.EpochMS <= q.SinceMS) ||
				(min != 0 && r.Level != LevelUnknown && r.Level < min) ||
				(q.Cluster != "" && r.Cluster != q.Cluster) || !r.Attributes.contains(q.Attributes) {
				continue
			}
			want = append(want, r)
		}
		if len(want) > q.MaxLines {
			want = want[len(want)-q.MaxLines:]
		}
		got, err := s.Fetch(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		// A regex that matches every line makes the read take the row
		// reader instead.
		q.Regex = "(?s)"
		byRow, err := s.Fetch(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for name, res := range map[string]Result{"columns": got, "row reader": byRow} {
			if len(res.Rows) != len(want) {
				t.Fatalf("%s: %d rows, want %d", name, len(res.Rows), len(want))
			}
			for i := range want {
				if fmt.Sprint(res.Rows[i]) != fmt.Sprint(want[i]) {
					t.Fatalf("%s row %d:\n got %+v\nwant %+v", name, i, res.Rows[i], want[i])
				}
			}
		}
	})
}

// A filtered tail whose few matches lie far apart in a long key range holds
// only those rows afterwards, not the decoded pages they were found in.
func TestFilteredTailHoldsOnlyItsRows(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 60k-row segment")
	}
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	rows := benchRows(11, 60_000, 1)
	for i := range rows {
		rows[i].Level = LevelInfo
		if i%10_000 == 0 {
			rows[i].Level = LevelError
		}
	}
	for i := 0; i < len(rows); i += 10_000 {
		mustAppend(t, s, rows[i:i+10_000])
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	q := Query{Source: rows[0].Key, Scope: ScopeExact, Tail: true, MaxLines: 10, MinLevel: "ERROR"}
	res, err := s.Fetch(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 6 {
		t.Fatalf("%d rows, want the 6 ERROR rows", len(res.Rows))
	}
	for i, r := range res.Rows {
		if want := int64(i*10_000 + 1); r.Seq != want || r.Data != rows[want-1].Data {
			t.Fatalf("row %d: seq %d %q, want seq %d %q", i, r.Seq, r.Data, want, rows[want-1].Data)
		}
	}
	// What the answer holds: the heap with it, less the heap once it is
	// dropped. Two collections each: the first only moves pooled page
	// buffers (sync.Pool) to the pool's victim cache.
	var holding, dropped runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&holding)
	runtime.KeepAlive(res)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&dropped)
	if held := int64(holding.HeapAlloc) - int64(dropped.HeapAlloc); held > 256<<10 {
		t.Errorf("the 6-row answer holds %d KiB of heap", held>>10)
	}
}
