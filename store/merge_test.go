package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/vfs"
)

// segmentRowsByReader reads every row of sg through parquet's row reader,
// the path merges used before they read column by column.
func segmentRowsByReader(t testing.TB, sg *segment) []Row {
	t.Helper()
	var rows []Row
	var cp rowCopier
	if err := sg.readRows(0, sg.rows, nil, "", nil, func(rr *rawRow) bool {
		r := cp.row(rr)
		rows = append(rows, r)
		return true
	}); err != nil {
		t.Fatalf("read %s: %v", sg.name, err)
	}
	return rows
}

// mergeByReader is the merge's definition: every input row, ordered by
// (key, seq).
func mergeByReader(t testing.TB, run []*segment) []Row {
	var all []Row
	for _, sg := range run {
		all = append(all, segmentRowsByReader(t, sg)...)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].Key != all[j].Key {
			return all[i].Key < all[j].Key
		}
		return all[i].Seq < all[j].Seq
	})
	return all
}

// drainMerge runs the key-run merge over run; switchAt[i] >= 0 moves input
// i to the row-reader path when the merge has emitted that many rows (as a
// page layout the column cursors do not read would).
func drainMerge(t testing.TB, run []*segment, switchAt []int) []Row {
	t.Helper()
	m, err := newMergeIter(run)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	var out []Row
	for {
		for i, at := range switchAt {
			c := m.ins[i]
			if at == len(out) && !c.rowPath && c.gi >= 0 && c.row < c.sg.rows {
				if err := c.toRowPath(); err != nil {
					t.Fatal(err)
				}
			}
		}
		r, err := m.next()
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			return out
		}
		out = append(out, *r)
	}
}

func compareRows(t testing.TB, got, want []Row) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("merge returned %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// flushedSegments appends each batch list as its own flushed segment.
func flushedSegments(t testing.TB, s *Store, segs [][]Row) []*segment {
	t.Helper()
	for _, rows := range segs {
		mustAppend(t, s, rows)
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*segment(nil), s.segs...)
}

// TestMergeMatchesRowReader: the key-run, column-wise merge yields exactly
// the rows, every field, that reading every input with the row reader and
// sorting by (key, seq) yields, also when inputs fall back to the row
// reader part way through.
func TestMergeMatchesRowReader(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := mustOpen(t, memOpts(vfs.NewMemFS()))
		defer s.Close()
		keys := []string{"/a", "/a/b", "/b", "/c", "/z/" + strings.Repeat("k", 40)}
		nSegs := rapid.IntRange(1, 5).Draw(rt, "segments")
		var batches [][]Row
		for i := 0; i < nSegs; i++ {
			n := rapid.IntRange(1, 60).Draw(rt, "rows")
			var rows []Row
			for j := 0; j < n; j++ {
				r := Row{
					Key:       rapid.SampledFrom(keys).Draw(rt, "key"),
					Source:    rapid.SampledFrom([]string{"stdout", "stderr", ""}).Draw(rt, "source"),
					Data:      rapid.StringN(0, 30, -1).Draw(rt, "data"),
					EpochMS:   rapid.Int64Range(-5, 1<<40).Draw(rt, "epoch"),
					AttemptID: rapid.Int32Range(0, 3).Draw(rt, "attempt"),
					Level:     rapid.Int32Range(0, 4).Draw(rt, "level"),
					Cluster:   rapid.SampledFrom([]string{"", "eu", "us-east"}).Draw(rt, "cluster"),
				}
				if rapid.Bool().Draw(rt, "has attrs") {
					a, err := MakeAttributes(map[string]string{"trace_id": rapid.StringN(0, 8, -1).Draw(rt, "trace"), "zone": "z1"})
					if err != nil {
						rt.Fatal(err)
					}
					r.Attributes = a
				}
				rows = append(rows, r)
			}
			batches = append(batches, rows)
		}
		run := flushedSegments(t, s, batches)
		want := mergeByReader(t, run)
		total := len(want)
		switchAt := make([]int, len(run))
		for i := range switchAt {
			switchAt[i] = rapid.IntRange(-1, total).Draw(rt, "switch at")
		}
		compareRows(t, drainMerge(t, run, switchAt), want)
	})
}

// TestMergeAcrossRowGroups: inputs of several row groups and data pages,
// with keys whose runs cross row group boundaries, merge to the reference
// order, on the column path and with a fallback in the middle of a group.
func TestMergeAcrossRowGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~70k rows")
	}
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	var batches [][]Row
	for seg := 0; seg < 2; seg++ {
		var rows []Row
		for i := 0; i < 35000; i++ {
			k := fmt.Sprintf("/job-%d", (i*7+seg)%5)
			rows = append(rows, Row{Key: k, Source: "stdout", Data: fmt.Sprintf("%s seg %d row %d %x", k, seg, i, i*2654435761), EpochMS: int64(i), Level: int32(i % 5)})
		}
		batches = append(batches, rows)
	}
	run := flushedSegments(t, s, batches)
	if len(run[0].rgs) < 3 {
		t.Fatalf("want several row groups per input, got %d", len(run[0].rgs))
	}
	want := mergeByReader(t, run)
	compareRows(t, drainMerge(t, run, []int{-1, -1}), want)
	compareRows(t, drainMerge(t, run, []int{20000, 52000}), want)
}

// TestMergeRefusesOverlappingInputs: the key-run merge relies on inputs in
// seq order; a run that is not is an error, not a misordered segment.
func TestMergeRefusesOverlappingInputs(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	run := flushedSegments(t, s, [][]Row{mkRows("/a", 3, 0), mkRows("/a", 3, 3)})
	if _, err := newMergeIter([]*segment{run[1], run[0]}); err == nil || !strings.Contains(err.Error(), "seq order") {
		t.Fatalf("newMergeIter of inputs out of seq order: err %v, want a seq order error", err)
	}
}
