package store

import (
	"context"
	"fmt"
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
	rows := benchRows(5, 3*rowGroupRows+555, keys)
	for i := range rows {
		rows[i].Source = []string{"stdout", "stderr"}[i%2]
		rows[i].Cluster = []string{"", "east", "west"}[i%3]
		rows[i].AttemptID = int32(i % 5)
		if i%89 == 0 {
			rows[i].Data = ""
		}
		// The first row group has no attributes, later ones some rows
		// with one to three pairs.
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
