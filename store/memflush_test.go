package store

import (
	"bytes"
	"testing"
)

// memFlush's bitmaps, built in memtable order, must equal what the segment
// writer would build from the rows in segment order: a substring read skips
// a row group on them, so a missing bit would hide a matching row.
func TestMemFlushGramsMatchSegmentOrder(t *testing.T) {
	m := newMemtable(1, 1, 32<<20)
	m.add(benchRows(3, 3*rowGroupRows+123, 50)) // interleaved keys, 4 groups
	m.add([]Row{{Key: "/empty", Data: ""}, {Key: "/short", Data: "ab"}})
	next, grams := memFlush(m)
	var rows []Row
	for {
		r, err := next()
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			break
		}
		rows = append(rows, *r)
	}
	if len(rows) != m.n {
		t.Fatalf("iterator yielded %d rows, memtable has %d", len(rows), m.n)
	}
	for i := 1; i < len(rows); i++ {
		if a, b := rows[i-1], rows[i]; a.Key > b.Key || (a.Key == b.Key && a.Seq >= b.Seq) {
			t.Fatalf("rows %d,%d out of (key, seq) order: %s/%d then %s/%d", i-1, i, a.Key, a.Seq, b.Key, b.Seq)
		}
	}
	want := (len(rows) + rowGroupRows - 1) / rowGroupRows
	if len(grams) != want {
		t.Fatalf("%d bitmaps, want %d", len(grams), want)
	}
	for g := range grams {
		var exp [trigramBits / 8]byte
		for _, r := range rows[g*rowGroupRows : min((g+1)*rowGroupRows, len(rows))] {
			addTrigrams(&exp, r.Data)
		}
		if !bytes.Equal(grams[g], exp[:]) {
			t.Fatalf("row group %d: bitmap differs from the one built in segment order", g)
		}
	}
}
