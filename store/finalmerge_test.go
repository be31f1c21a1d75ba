package store

import (
	"context"
	"fmt"
	"math/rand"
	"path"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// TestPickFinalMerge: segments the size tiers strand (too few, or an older
// one too big for the newer ones to join) are merged once they reach the
// final tier together, and never otherwise.
func TestPickFinalMerge(t *testing.T) {
	const target = 1000
	for _, c := range []struct {
		sizes []int64 // oldest first
		want  []int   // indexes picked, oldest first; nil: nothing
	}{
		{[]int64{460, 100}, []int{0, 1}},                                      // the settled daemon's shape
		{[]int64{460, 20}, nil},                                               // together below the final tier: no rewrite of 460 for 20
		{[]int64{600, 300}, nil},                                              // 600 is final already
		{[]int64{600, 300, 250}, []int{1, 2}},                                 // the stranded pair after a final one
		{[]int64{450, 450, 450}, []int{1, 2}},                                 // newest first, within the target
		{[]int64{300}, nil},                                                   // one segment: nothing to merge
		{[]int64{499, 499, 10}, []int{1, 2}},                                  // 10 alone is not enough; with 499 it is
		{[]int64{200, 200, 200, 200, 100}, []int{0, 1, 2, 3, 4}},              // the tiered rule, as before
		{[]int64{480, 30, 600, 20}, []int{0, 1}},                              // a final segment splits runs
		{[]int64{490, 490, 30}, []int{1, 2}},                                  // total bound: 490+490+30 > target
		{[]int64{100, 100, 100, 100, 100}, []int{0, 1, 2, 3, 4}},              // tiered
		{[]int64{520, 480, 40, 600}, []int{1, 2}},                             // 480+40 = 520 >= 500
		{[]int64{100, 100, 100, 100, 100, 100}, []int{0, 1, 2, 3, 4, 5}},      // as far as the target allows: no 100 left behind
		{[]int64{300, 100, 100, 100, 100, 100}, []int{0, 1, 2, 3, 4, 5}},      // the older 300 fits too (800 <= 1000)
		{[]int64{490, 100, 100, 100, 100, 100, 100}, []int{1, 2, 3, 4, 5, 6}}, // the target stops it: 490 more would make 1090
	} {
		t.Run(fmt.Sprint(c.sizes), func(t *testing.T) {
			s := &Store{opts: Options{TargetSegmentBytes: target}}
			for i, sz := range c.sizes {
				sg := &segment{name: fmt.Sprint(i), first: int64(i*10 + 1), last: int64(i*10 + 10), size: sz}
				sg.refs.Store(1)
				s.segs = append(s.segs, sg)
			}
			run := s.pickCompaction()
			var got []int
			for _, sg := range run {
				var i int
				fmt.Sscan(sg.name, &i)
				got = append(got, i)
				sg.release()
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("picked %v, want %v", got, c.want)
			}
		})
	}
}

// remoteNames is a TieredFS whose named segments are remote-only.
type remoteNames struct {
	vfs.FS
	remote map[string]bool
}

func (r remoteNames) Remote(p string) bool { return r.remote[path.Base(p)] }
func (r remoteNames) HoldLocal([]string) (func(), bool) {
	return func() {}, true
}

// TestPickFinalMergeSkipsRemote: a segment evicted to the object tier is
// never a final-merge input (a merge does not download its inputs).
func TestPickFinalMergeSkipsRemote(t *testing.T) {
	for _, c := range []struct {
		remote string
		want   string
	}{
		{"", "[0 1]"},
		{"0", "[]"},
		{"1", "[]"},
	} {
		s := &Store{opts: Options{TargetSegmentBytes: 1000}, fs: remoteNames{remote: map[string]bool{c.remote: true}}}
		for i, sz := range []int64{460, 100} {
			sg := &segment{name: fmt.Sprint(i), first: int64(i*10 + 1), last: int64(i*10 + 10), size: sz}
			sg.refs.Store(1)
			s.segs = append(s.segs, sg)
		}
		got := []int{}
		for _, sg := range s.pickCompaction() {
			var i int
			fmt.Sscan(sg.name, &i)
			got = append(got, i)
			sg.release()
		}
		if fmt.Sprint(got) != c.want {
			t.Errorf("remote %q: picked %v, want %s", c.remote, got, c.want)
		}
	}
}

// TestSettledSegmentsReachFinalTier: two flushed segments that the tiers
// leave alone, an older one near half the target and a newer small one,
// are merged by Compact into one whose rows all read back.
func TestSettledSegmentsReachFinalTier(t *testing.T) {
	o := memOpts(vfs.NewMemFS())
	s := mustOpen(t, o)
	defer s.Close()
	ctx := context.Background()
	mustAppend(t, s, mkRows("/k", 2000, 0))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	big := s.Stats().SegmentBytes
	mustAppend(t, s, mkRows("/k", 500, 2000))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The target puts the older segment just under the final tier, and
	// both together within it.
	s.opts.TargetSegmentBytes = 2*big + 2
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 1 {
		t.Fatalf("%d segments after Compact, want the stranded pair merged into 1", st.Segments)
	}
	if rows := fetchAll(t, s, Query{Source: "/k", Scope: ScopeExact}); len(rows) != 2500 {
		t.Fatalf("%d rows after the merge, want 2500", len(rows))
	}
}

// TestCompactWhileBusyMergesOnlyWhatIsDue: while ingest keeps flushing,
// background compaction leaves fresh flushes alone until together they make
// a final-tier merge (or reach compactionDebt), then merges that run for
// good, and no size-tiered merge of fewer that would be merged again.
func TestCompactWhileBusyMergesOnlyWhatIsDue(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(1))
	opts := memOpts(vfs.NewMemFS())
	s := mustOpen(t, opts)
	defer func() { s.Close() }()
	seq := 0
	flush := func(n int) {
		t.Helper()
		rows := make([]Row, n)
		for i := range rows {
			// Incompressible data: segment sizes add up when merged.
			rows[i] = Row{Key: fmt.Sprintf("/k%d", i%3), Data: fmt.Sprintf("%d %x%x%x%x%x%x%x%x", seq, rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64())}
			seq++
		}
		mustAppend(t, s, rows)
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	segments := func() int { return s.Stats().Segments }

	flush(1000)
	s.mu.Lock()
	seg := s.segs[0].size
	s.mu.Unlock()
	s.Close()
	// Three flushes of 1000 rows make the final tier. The half flush of
	// slack covers the later flushes' longer seqs and lines.
	opts.TargetSegmentBytes = 6*seg + seg/2
	s = mustOpen(t, opts)
	for i := 0; i < 5; i++ {
		flush(1000)
	}
	if err := s.compact(ctx, true); err != nil {
		t.Fatal(err)
	}
	if n := segments(); n != 1 {
		t.Fatalf("%d segments after a busy compaction of 6 flushes that fit the target, want 1", n)
	}
	// Four small flushes: a size-tiered run, short of the final tier.
	for i := 0; i < 4; i++ {
		flush(250)
	}
	if err := s.compact(ctx, true); err != nil {
		t.Fatal(err)
	}
	if n := segments(); n != 5 {
		t.Fatalf("busy compaction merged flushes short of the final tier: %d segments, want 5", n)
	}
	for i := 0; i < 4; i++ {
		flush(1000) // now they reach it
	}
	if err := s.compact(ctx, true); err != nil {
		t.Fatal(err)
	}
	if n := segments(); n != 2 {
		t.Fatalf("busy compaction of flushes that reach the final tier: %d segments, want 2", n)
	}
	for i := 0; i < 4; i++ {
		flush(250)
	}
	if err := s.compact(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := segments(); n != 3 {
		t.Fatalf("quiet compaction: %d segments, want the four small flushes merged (3)", n)
	}
	if rows := fetchAll(t, s, Query{Source: "/k", Scope: ScopePrefix}); len(rows) != seq {
		t.Fatalf("%d rows after compaction, want %d", len(rows), seq)
	}
}

// TestFinalSegmentNotPickedAgain: a segment a final-tier merge wrote stays
// out of every later pick even when the better codec made it smaller than
// half the target, and the footer keeps that across a reopen.
func TestFinalSegmentNotPickedAgain(t *testing.T) {
	s := &Store{opts: Options{TargetSegmentBytes: 1000}}
	for i, sz := range []int64{400, 100, 100} {
		sg := &segment{name: fmt.Sprint(i), first: int64(i*10 + 1), last: int64(i*10 + 10), size: sz, final: i == 0}
		sg.refs.Store(1)
		s.segs = append(s.segs, sg)
	}
	if run := s.pickCompaction(); len(run) != 0 {
		t.Fatalf("picked %d segments, want none: the 400 is final and 200 does not reach the final tier", len(run))
	}
	s.segs[0].final = false
	if run := s.pickCompaction(); len(run) != 3 {
		t.Fatalf("without the final mark picked %d segments, want all 3 (600 reaches the final tier)", len(run))
	}

	ctx := context.Background()
	opts := memOpts(vfs.NewMemFS())
	st := mustOpen(t, opts)
	for i := 0; i < 3; i++ {
		mustAppend(t, st, mkRows("/k", 300, i*300))
		if err := st.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, sg := range st.segs {
		total += sg.size
	}
	st.Close()
	opts.TargetSegmentBytes = total // the three reach half of it
	st = mustOpen(t, opts)
	if err := st.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(st.segs); n != 1 || !st.segs[0].final {
		t.Fatalf("after a final-tier merge: %d segments, final %v; want 1, final", n, n == 1 && st.segs[0].final)
	}
	st.Close()
	st = mustOpen(t, opts)
	defer st.Close()
	if !st.segs[0].final {
		t.Fatal("the final mark did not survive a reopen")
	}
}
