package peer

import (
	"context"
	"reflect"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

func seqRows(first, n int) []store.Row {
	rs := rows(n, "m")
	for i := range rs {
		rs[i].Seq = int64(first + i)
	}
	return rs
}

func TestMergeRecordsKeepsRowsAndFinalMarks(t *testing.T) {
	recs := []store.Record{
		{First: 1, Last: 2, Rows: seqRows(1, 2)},
		{First: 3, Last: 2, Marks: []store.ProducerMark{{Producer: "p", Seq: 5}}},
		{First: 3, Last: 4, Rows: seqRows(3, 2), Marks: []store.ProducerMark{{Producer: "p", Seq: 7}, {Producer: "a", Seq: 1}}},
		{First: 5, Last: 5, Rows: seqRows(5, 1)},
	}
	got := mergeRecords(recs)
	if len(got) != 1 || got[0].First != 1 || got[0].Last != 5 || len(got[0].Rows) != 5 {
		t.Fatalf("merged into %+v", got)
	}
	if want := []store.ProducerMark{{Producer: "a", Seq: 1}, {Producer: "p", Seq: 7}}; !reflect.DeepEqual(got[0].Marks, want) {
		t.Fatalf("marks %v, want %v", got[0].Marks, want)
	}
	if recs[0].Last != 2 || len(recs[0].Rows) != 2 {
		t.Fatal("mergeRecords changed its input")
	}

	// Applying the merged records leaves a store in the same state as
	// applying the originals one by one.
	ctx := context.Background()
	a, b := openStore(t, vfs.NewMemFS(), "a"), openStore(t, vfs.NewMemFS(), "b")
	defer a.Close()
	defer b.Close()
	for _, r := range recs {
		if err := a.ApplyReplicated(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range got {
		if err := b.ApplyReplicated(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(scanAll(t, a), scanAll(t, b)) {
		t.Fatal("rows differ")
	}
	for _, p := range []string{"a", "p"} {
		va, _ := a.ProducerApplied(p)
		vb, _ := b.ProducerApplied(p)
		if va != vb {
			t.Fatalf("producer %s: %d one by one, %d merged", p, va, vb)
		}
	}
}

func TestMergeRecordsKeepsFloorJumpsAndLimits(t *testing.T) {
	jump := store.Record{First: 101, Last: 100, Floor: 100}
	got := mergeRecords([]store.Record{jump, {First: 101, Last: 101, Rows: seqRows(101, 1), Floor: 100}})
	if len(got) != 2 || !isFloorJump(&got[0]) {
		t.Fatalf("a floor jump was merged: %+v", got)
	}
	big := make([]store.Record, 0, 10)
	for i := range 10 {
		rs := seqRows(1+i, 1)
		rs[0].Data = string(make([]byte, store.MaxRowBytes-2048))
		big = append(big, store.Record{First: int64(1 + i), Last: int64(1 + i), Rows: rs})
	}
	merged := mergeRecords(big)
	if len(merged) < 2 {
		t.Fatalf("10 MiB of rows merged into %d record(s)", len(merged))
	}
	for _, m := range merged {
		if n := rowsBytes(m.Rows); n > mergeMaxBytes {
			t.Fatalf("merged record of %d bytes, limit %d", n, mergeMaxBytes)
		}
	}
	var marks []store.Record
	for i := range 3 {
		var ms []store.ProducerMark
		for j := range 600 {
			ms = append(ms, store.ProducerMark{Producer: string(rune('a'+i)) + string(rune('a'+j%26)) + string(rune('a'+j/26)), Seq: 1})
		}
		marks = append(marks, store.Record{First: 1, Last: 0, Marks: ms})
	}
	mm := mergeRecords(marks)
	if len(mm) < 2 {
		t.Fatalf("1800 marks merged into %d record(s)", len(mm))
	}
	for _, m := range mm {
		if len(m.Marks) > store.TailMaxMarks {
			t.Fatalf("merged record with %d marks, limit %d", len(m.Marks), store.TailMaxMarks)
		}
	}
}
