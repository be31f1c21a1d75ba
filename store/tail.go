package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// Record is one entry of the committed record stream: what Tail yields and
// what ApplyReplicated takes. Applying a stream's records in order to an
// empty store reproduces the source's rows with their seqs and its producer
// marks (the dedupe state a promoted standby must keep).
type Record struct {
	// First and Last are the seqs of Rows; Last == First-1 when the record
	// has no rows (it then carries marks, or is a floor jump).
	First, Last int64
	// Rows have Seq == First+i.
	Rows []Row
	// Marks are producer marks durable with seq Last: they apply after Rows
	// and after every earlier record, never before.
	Marks []ProducerMark
	// Floor is the source's retention floor when the record was read: seqs
	// <= Floor are deleted there. A record with First == Floor+1 past the
	// receiver's last seq is a floor jump (ApplyReplicated).
	Floor int64
}

// Limits on one Record from Tail. A record holds at least one row even if
// that row alone is over TailMaxBytes (a row is at most MaxRowBytes).
const (
	TailMaxRows  = 4096
	TailMaxBytes = 4 << 20
	// TailMaxMarks bounds the marks in one record; more at one seq come as
	// further records without rows at that seq.
	TailMaxMarks = 1024
)

// ErrTailAhead: Tail was asked for records after a seq this store has not
// reached: the reader holds rows this store never committed (it followed
// another primary, or this store lost its data dir).
var ErrTailAhead = errors.New("stream position is past this store's last seq")

// RecordStream reads the committed record stream of a store after a seq, in
// seq order, waiting for new records at the end. It holds no more than one
// record's rows and one segment scan window in memory. Not safe for
// concurrent use; Close it when done.
//
// Marks come back at the seq they became durable with while their records
// are still in the WAL (the memtables). Rows already in segments have lost
// their records' boundaries: the marks of that stretch come as the producer
// map as of the newest segment's last seq, once the stream reaches it. A
// standby promoted in the middle of such a stretch therefore has marks that
// lag its rows (a producer may resend rows it already holds: duplicates,
// never lost rows); one promoted at a record boundary has exactly the
// source's marks.
type RecordStream struct {
	s      *Store
	after  int64  // last seq delivered
	markID uint64 // last memtable mark delivered
	// snap is the rest of a segment-end producer map still to deliver, as
	// records without rows at seq after.
	snap    []ProducerMark
	started bool
	cache   scanCache
}

// Tail returns a stream of the records after afterSeq. afterSeq past
// LastSeq is ErrTailAhead; afterSeq below the retention floor starts with a
// floor jump record.
func (s *Store) Tail(afterSeq int64) (*RecordStream, error) {
	if afterSeq < 0 {
		return nil, fmt.Errorf("store: tail after seq %d: seqs start at 1, use 0 for the beginning: %w", afterSeq, ErrInvalidArgument)
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	if last := s.LastSeq(); afterSeq > last {
		return nil, fmt.Errorf("store: tail after seq %d: %w (last seq %d)", afterSeq, ErrTailAhead, last)
	}
	return &RecordStream{s: s, after: afterSeq}, nil
}

// Position is the last seq the stream has delivered.
func (t *RecordStream) Position() int64 { return t.after }

// Close releases the stream's segment window.
func (t *RecordStream) Close() { t.cache.drop() }

// Next returns the next record, waiting for one while the stream is at the
// store's end. It fails with ctx's error, or ErrClosed once the store
// closes.
func (t *RecordStream) Next(ctx context.Context) (Record, error) {
	rec, _, err := t.next(ctx, true)
	return rec, err
}

// TryNext is Next without the wait: at the store's end it returns ok
// false. The simulation steps the replica port with it, so what a Records
// frame holds does not depend on when a goroutine got to run.
func (t *RecordStream) TryNext(ctx context.Context) (rec Record, ok bool, err error) {
	return t.next(ctx, false)
}

func (t *RecordStream) next(ctx context.Context, wait bool) (Record, bool, error) {
	s := t.s
	for {
		if err := ctx.Err(); err != nil {
			return Record{}, false, err
		}
		if len(t.snap) > 0 {
			n := min(len(t.snap), TailMaxMarks)
			rec := Record{First: t.after + 1, Last: t.after, Marks: t.snap[:n:n], Floor: s.floorNow()}
			t.snap = t.snap[n:]
			return rec, true, nil
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Record{}, false, ErrClosed
		}
		floor := s.floor
		segEnd := floor
		if n := len(s.segs); n > 0 {
			segEnd = max(segEnd, s.segs[n-1].last)
		}
		if t.after == segEnd && len(s.segMarks) > 0 && (!t.started || s.foldedMarkID > t.markID) {
			// The reader may have the rows up to segEnd from an earlier
			// stream that ended before the marks that follow them, or
			// marks at segEnd were flushed before this stream read them.
			t.started = true
			t.markID = max(t.markID, s.foldedMarkID)
			t.snap = sortedMarks(s.segMarks)
			s.mu.Unlock()
			continue
		}
		t.started = true
		if t.after < floor {
			// Rows up to the floor are gone: jump over them.
			t.after = floor
			rec := Record{First: floor + 1, Last: floor, Floor: floor}
			if segEnd == floor {
				t.snap = sortedMarks(s.segMarks)
			}
			s.mu.Unlock()
			return rec, true, nil
		}
		if t.after < segEnd {
			rec, err := t.fromSegments(ctx, segEnd, floor)
			if err != nil {
				return Record{}, false, err
			}
			return rec, true, nil
		}
		rec, ok := t.fromMemtables(floor)
		if ok {
			return rec, true, nil
		}
		wake := s.tailCh
		s.mu.Unlock()
		if !wait {
			return Record{}, false, nil
		}
		select {
		case <-wake:
		case <-s.stopCh:
			return Record{}, false, ErrClosed
		case <-ctx.Done():
			return Record{}, false, ctx.Err()
		}
	}
}

func (s *Store) floorNow() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.floor
}

// fromSegments reads the next rows, all at or below segEnd, from segments.
// Called with s.mu held; returns with it released.
func (t *RecordStream) fromSegments(ctx context.Context, segEnd, floor int64) (Record, error) {
	s := t.s
	var segs []*segment
	for _, sg := range s.segs {
		if sg.last > t.after {
			sg.acquire()
			segs = append(segs, sg)
		}
	}
	end := min(t.after+TailMaxRows, segEnd)
	var snap []ProducerMark
	folded := s.foldedMarkID
	if end == segEnd {
		snap = sortedMarks(s.segMarks)
	}
	s.mu.Unlock()
	defer func() {
		for _, sg := range segs {
			sg.release()
		}
	}()
	var rows []Row
	var bytes int64
	after := t.after
segments:
	for _, sg := range segs {
		if after >= end {
			break
		}
		if sg.first > after+1 {
			return Record{}, fmt.Errorf("store: tail: segment %s starts at seq %d, expected %d", sg.name, sg.first, after+1)
		}
		got, err := s.scanSegment(ctx, &t.cache, sg, after, int(end-after))
		if err != nil {
			return Record{}, fmt.Errorf("store: tail: %w", err)
		}
		for i := range got {
			if len(rows) > 0 && bytes+rowBytes(&got[i]) > TailMaxBytes {
				break segments
			}
			rows = append(rows, got[i])
			bytes += rowBytes(&got[i])
			after = got[i].Seq
		}
	}
	if len(rows) == 0 {
		return Record{}, fmt.Errorf("store: tail: no segment rows after seq %d up to %d", t.after, segEnd)
	}
	if after != segEnd {
		snap = nil
	}
	rec := Record{First: t.after + 1, Last: after, Rows: rows, Floor: floor}
	t.after = after
	t.snap = snap
	if snap != nil {
		t.markID = max(t.markID, folded)
	}
	return rec, nil
}

// fromMemtables returns the next record from the memtables, or false when
// there is none yet. Called with s.mu held; it keeps it held when it returns
// false (the caller then waits) and releases it otherwise.
func (t *RecordStream) fromMemtables(floor int64) (Record, bool) {
	s := t.s
	mems := make([]*memtable, 0, len(s.sealed)+1)
	mems = append(mems, s.sealed...)
	mems = append(mems, s.mem)
	// Marks not yet delivered, in commit order (their positions never
	// decrease).
	// Only the first TailMaxMarks matter to this record.
	var pending []markAt
	for _, m := range mems {
		if len(pending) >= TailMaxMarks {
			break
		}
		i := sort.Search(len(m.marks), func(i int) bool { return m.marks[i].id > t.markID })
		pending = append(pending, m.marks[i:min(len(m.marks), i+TailMaxMarks-len(pending))]...)
	}
	if len(pending) > 0 && pending[0].pos <= t.after {
		// Marks of records without rows after the rows already delivered.
		n := 0
		for n < len(pending) && n < TailMaxMarks && pending[n].pos <= t.after {
			n++
		}
		s.mu.Unlock()
		t.markID = pending[n-1].id
		return Record{First: t.after + 1, Last: t.after, Marks: plainMarks(pending[:n]), Floor: floor}, true
	}
	var views []rowsView
	for _, m := range mems {
		if m.n > 0 && m.last() > t.after {
			views = append(views, m.view())
		}
	}
	if len(views) == 0 {
		return Record{}, false
	}
	s.mu.Unlock()
	last := views[len(views)-1].first + int64(views[len(views)-1].n) - 1
	end := min(t.after+TailMaxRows, last)
	if len(pending) > 0 {
		end = min(end, pending[0].pos)
	}
	rows := make([]Row, 0, end-t.after)
	var bytes int64
views:
	for _, v := range views {
		for i := max(0, int(t.after+1-v.first)); i < v.n && v.seqAt(i) <= end; i++ {
			r := v.at(i)
			if len(rows) > 0 && bytes+rowBytes(&r) > TailMaxBytes {
				break views
			}
			rows = append(rows, r)
			bytes += rowBytes(&r)
		}
	}
	end = rows[len(rows)-1].Seq
	rec := Record{First: t.after + 1, Last: end, Rows: rows, Floor: floor}
	n := 0
	for n < len(pending) && n < TailMaxMarks && pending[n].pos == end {
		n++
	}
	if n > 0 {
		rec.Marks = plainMarks(pending[:n])
		t.markID = pending[n-1].id
	}
	t.after = end
	return rec, true
}

func plainMarks(ms []markAt) []ProducerMark {
	out := make([]ProducerMark, len(ms))
	for i, m := range ms {
		out[i] = m.ProducerMark
	}
	return out
}

// sortedMarks is a producer map as marks in name order (a stable stream for
// the same store state).
func sortedMarks(m map[string]int64) []ProducerMark {
	out := make([]ProducerMark, 0, len(m))
	for p, v := range m {
		out = append(out, ProducerMark{Producer: p, Seq: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Producer < out[j].Producer })
	return out
}
