package store

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
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

// segRowDeltaData is the segment schema as written before the data column
// was PLAIN: parquet-go's default for strings, DELTA_LENGTH_BYTE_ARRAY.
type segRowDeltaData struct {
	Key        string            `parquet:"key,dict"`
	Seq        int64             `parquet:"seq,delta"`
	EpochMS    int64             `parquet:"epoch_ms,delta"`
	Level      int32             `parquet:"level"`
	AttemptID  int32             `parquet:"attempt_id"`
	Source     string            `parquet:"source,dict"`
	Cluster    string            `parquet:"cluster,dict"`
	Data       string            `parquet:"data"`
	Attributes map[string]string `parquet:"attributes"`
}

// segRowPlainData is the segment schema as written before the data column
// was DELTA_BYTE_ARRAY.
type segRowPlainData struct {
	Key        string            `parquet:"key,dict"`
	Seq        int64             `parquet:"seq,delta"`
	EpochMS    int64             `parquet:"epoch_ms,delta"`
	Level      int32             `parquet:"level"`
	AttemptID  int32             `parquet:"attempt_id"`
	Source     string            `parquet:"source,dict"`
	Cluster    string            `parquet:"cluster,dict"`
	Data       string            `parquet:"data,plain"`
	Attributes map[string]string `parquet:"attributes"`
}

// rewriteSegment rewrites segment name on fs in schema T, keeping finelog's
// footer, as a segment written by an older version would be.
func rewriteSegment[T any](t *testing.T, fs vfs.FS, name string) {
	t.Helper()
	p := path.Join("/data", name)
	b, err := vfs.ReadFile(fs, p)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := parquet.Read[T](bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := parquet.NewGenericWriter[T](&out, parquet.MaxRowsPerRowGroup(rowGroupRows))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"finelog.segment", "finelog.keys", "finelog.rowgroups"} {
		v, _ := pf.Lookup(k)
		w.SetKeyValueMetadata(k, v)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(fs, p, out.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// TestMergeOlderSegmentLayouts: segments written before the data column
// was PLAIN, while it was PLAIN, and before rows had attributes, merge with
// a current one to the reference rows, and Compact of them keeps every row.
func TestMergeOlderSegmentLayouts(t *testing.T) {
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	var batches [][]Row
	for i := 0; i < 4; i++ {
		rows := append(mkRows("/a", 40, i*100), mkRows("/b", 30, i*100+50)...)
		rows[3].Attributes = mustAttrs(t, map[string]string{"env": "prod"})
		if i == 1 {
			rows[3].Attributes = "" // the no-attributes schema cannot hold it
		}
		batches = append(batches, rows)
	}
	run := flushedSegments(t, s, batches)
	names := []string{run[0].name, run[1].name, run[2].name}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rewriteSegment[segRowDeltaData](t, fs, names[0])
	rewriteSegment[segRowV1](t, fs, names[1])
	rewriteSegment[segRowPlainData](t, fs, names[2])
	s = mustOpen(t, memOpts(fs))
	defer s.Close()
	for i, want := range []string{"[DELTA_LENGTH_BYTE_ARRAY]", "[DELTA_LENGTH_BYTE_ARRAY]", "[PLAIN]", "[DELTA_BYTE_ARRAY]"} {
		if enc := s.segs[i].pf.Metadata().RowGroups[0].Columns[s.segs[i].col.data].MetaData.Encoding; fmt.Sprint(enc) != want {
			t.Fatalf("segment %d's data encoding %v, want %s", i, enc, want)
		}
	}
	run = append([]*segment(nil), s.segs...)
	want := mergeByReader(t, run)
	compareRows(t, drainMerge(t, run, []int{-1, -1, -1}), want)
	var total int64
	for _, sg := range run {
		total += sg.size
	}
	s.opts.TargetSegmentBytes = total // the four make a final-tier merge
	if err := s.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 1 {
		t.Fatalf("%d segments after Compact, want the four merged", st.Segments)
	}
	got := fetchAll(t, s, Query{Source: "/", Scope: ScopePrefix})
	bySeq := func(rows []Row) {
		sort.Slice(rows, func(i, j int) bool { return rows[i].Seq < rows[j].Seq })
	}
	bySeq(got)
	bySeq(want)
	compareRows(t, got, want)
}
