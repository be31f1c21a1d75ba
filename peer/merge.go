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
	for i := 0; i < len(recs); {
		// The run recs[i:j] joins into one record.
		j, bytes := i+1, rowsBytes(recs[i].Rows)
		for j < len(recs) && canJoin(&recs[j-1], &recs[j], bytes, marksIn(recs[i:j])) {
			bytes += rowsBytes(recs[j].Rows)
			j++
		}
		if j == i+1 {
			// Alone: the record goes to the store as decoded, without a
			// copy of its rows.
			out = append(out, recs[i])
			i = j
			continue
		}
		n := 0
		for _, r := range recs[i:j] {
			n += len(r.Rows)
		}
		cur := recs[i]
		cur.Rows = make([]store.Row, 0, n)
		cur.Marks = nil
		for _, r := range recs[i:j] {
			cur.Rows = append(cur.Rows, r.Rows...)
			cur.Marks = joinMarks(cur.Marks, r.Marks)
			cur.Last, cur.Floor = r.Last, r.Floor
		}
		out = append(out, cur)
		i = j
	}
	return out
}

// marksIn bounds the marks of run joined: at most the sum of each one's.
func marksIn(run []store.Record) int {
	n := 0
	for i := range run {
		n += len(run[i].Marks)
	}
	return n
}

// canJoin: next may join the run that ends with prev, which holds bytes of
// rows and at most marks marks.
func canJoin(prev, next *store.Record, bytes, marks int) bool {
	if isFloorJump(prev) || isFloorJump(next) || next.First != prev.Last+1 {
		return false
	}
	if bytes+rowsBytes(next.Rows) > mergeMaxBytes {
		return false
	}
	return marks+len(next.Marks) <= mergeMaxMarks
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
