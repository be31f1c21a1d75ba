package store

import (
	"context"
	"sort"
	"testing"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/vfs"
)

// readRuns (one reader per row group, seeking forward) must yield exactly
// what reading each run on its own yields, across row-group boundaries and
// with groups pruned.
func TestReadRunsMatchesReadRows(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	rows := benchRows(5, 3*rowGroupRows+777, 7)
	mustAppend(t, s, rows)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	sg := s.segs[0]
	if len(sg.rgs) < 4 {
		t.Fatalf("segment has %d row groups, want several", len(sg.rgs))
	}
	n := sg.rows
	rapid.Check(t, func(t *rapid.T) {
		cuts := rapid.SliceOfNDistinct(rapid.Int64Range(0, n), 2, 16, rapid.ID).Draw(t, "cuts")
		sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
		var runs []rowRun
		for i := 0; i+1 < len(cuts); i += 2 {
			runs = append(runs, rowRun{cuts[i], cuts[i+1]})
		}
		pruned := rapid.IntRange(-1, len(sg.rgs)-1).Draw(t, "pruned group")
		skip := func(g *rgInfo) bool { return pruned >= 0 && g == &sg.rgs[pruned] }
		var want, got []int64
		for _, r := range runs {
			if err := sg.readRows(r.a, r.b, skip, "", nil, func(rr *rawRow) bool { want = append(want, rr.seq); return true }); err != nil {
				t.Fatal(err)
			}
		}
		if err := sg.readRuns(append([]rowRun(nil), runs...), skip, "", nil, func(rr *rawRow) bool { got = append(got, rr.seq); return true }); err != nil {
			t.Fatal(err)
		}
		if !equalSeqs(got, want) {
			t.Fatalf("runs %v (group %d pruned): readRuns gave %d rows, per-run reads %d", runs, pruned, len(got), len(want))
		}
	})
}
