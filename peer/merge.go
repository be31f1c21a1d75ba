package peer

import (
	"sort"

	"github.com/finelog/finelog/store"
)

// Bounds on one merged record: what store.ApplyReplicated accepts.
const (
	mergeMaxBytes = store.MaxBatchBytes / 2
	mergeMaxMarks = store.TailMaxMarks
)

// mergeRecords joins consecutive records into as few as the store limits
// allow, so a replica that fell behind by many small records applies them
// with one fdatasync instead of one each. A mark moves from the end of its
// record to the end of the merged one: later, never earlier, so the
// replica's marks may lag its rows inside the merged record's write (it is
// one atomic WAL record) but never run ahead of them, and the final marks
// are the primary's. A floor jump stays a record of its own.
func mergeRecords(recs []store.Record) []store.Record {
	var out []store.Record
	var bytes int
	for _, r := range recs {
		n := len(out)
		if n > 0 && canJoin(&out[n-1], &r, bytes) {
			cur := &out[n-1]
			cur.Rows = append(cur.Rows, r.Rows...)
			cur.Last = r.Last
			cur.Marks = joinMarks(cur.Marks, r.Marks)
			cur.Floor = r.Floor
			bytes += rowsBytes(r.Rows)
			continue
		}
		r.Rows = append([]store.Row(nil), r.Rows...)
		r.Marks = append([]store.ProducerMark(nil), r.Marks...)
		out = append(out, r)
		bytes = rowsBytes(r.Rows)
	}
	return out
}

func canJoin(cur, next *store.Record, bytes int) bool {
	if isFloorJump(cur) || isFloorJump(next) || next.First != cur.Last+1 {
		return false
	}
	if bytes+rowsBytes(next.Rows) > mergeMaxBytes {
		return false
	}
	return len(cur.Marks)+len(next.Marks) <= mergeMaxMarks
}

// isFloorJump: a record without rows at the primary's floor (the receiver
// may be behind it; ApplyReplicated treats it specially).
func isFloorJump(r *store.Record) bool { return len(r.Rows) == 0 && r.First == r.Floor+1 }

// joinMarks keeps the highest mark per producer, in name order.
func joinMarks(a, b []store.ProducerMark) []store.ProducerMark {
	if len(b) == 0 {
		return a
	}
	m := make(map[string]int64, len(a)+len(b))
	for _, x := range a {
		m[x.Producer] = max(m[x.Producer], x.Seq)
	}
	for _, x := range b {
		m[x.Producer] = max(m[x.Producer], x.Seq)
	}
	out := make([]store.ProducerMark, 0, len(m))
	for p, v := range m {
		out = append(out, store.ProducerMark{Producer: p, Seq: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Producer < out[j].Producer })
	return out
}

func rowsBytes(rows []store.Row) int {
	n := 0
	for i := range rows {
		r := &rows[i]
		n += len(r.Key) + len(r.Source) + len(r.Data) + len(r.Cluster) + 32
	}
	return n
}
