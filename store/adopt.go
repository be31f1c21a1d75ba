package store

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/finelog/finelog/internal/vfs"
)

// A following store can take its primary's sealed segment files instead of
// encoding the same rows itself (docs/replica.md, "Segment shipping"): the
// file is received under a temporary name, checked, made durable and then
// swapped into the segment set like a flush's (memtable rows up to its last
// seq dropped, the WAL trimmed) or a merge's (the local segments it covers
// removed). It is adopted only when that leaves every seq exactly once:
// every local segment lies inside the shipped range or outside it, the
// store holds every seq of the range, and every seq before the range is in
// a segment (the store first writes its memtable rows before the range as
// a segment of its own when they are not). Otherwise the file is dropped
// and the store keeps its own rows.

// MaxShippedSegmentBytes bounds a shipped segment file.
const MaxShippedSegmentBytes = 16 << 30

// minSegmentFile is the smallest parquet file: magic, footer length, magic.
const minSegmentFile = 12

// ShippedSegment describes a primary's segment file on its way here.
type ShippedSegment struct {
	First, Last int64
	// Replaces are the seq ranges of the merge inputs the segment replaces
	// on the primary (nil for a flush). Informational: the store removes
	// whatever local segments lie inside [First, Last].
	Replaces [][2]int64
	Size     int64
}

// Adoption outcomes (AdoptResult.Reason).
const (
	AdoptedSegment     = "adopted"
	AdoptNotFollowing  = "not_following"  // promoted, or not a follower
	AdoptNotHeld       = "not_held"       // the store does not hold every seq of the range yet
	AdoptBelowFloor    = "below_floor"    // the range starts at or below the retention floor
	AdoptOverlap       = "overlap"        // a local segment straddles an end of the range
	AdoptAlreadyHeld   = "already_held"   // a local segment has exactly this range
	AdoptSkippedChecks = "skipped_checks" // adopted by the ShipUnchecked canary
)

// AdoptResult says what became of a shipped segment.
type AdoptResult struct {
	Adopted bool
	// Reason is AdoptedSegment or why the file was dropped.
	Reason string
	// GapRows is how many memtable rows before the range the store wrote
	// as a segment of its own first, to line its segments up with the
	// primary's.
	GapRows int64
}

// IncomingSegment is a shipped segment file being received. Write its
// bytes in order, then Adopt (or Abort).
type IncomingSegment struct {
	s    *Store
	seg  ShippedSegment
	tmp  string
	f    vfs.File
	n    int64
	done bool
	// SkipChecks is the ShipUnchecked canary (peer.Defects): adopt without
	// the overlap and held checks. Never set in production.
	SkipChecks bool
}

// ReceiveSegment starts receiving a shipped segment file.
func (s *Store) ReceiveSegment(seg ShippedSegment) (*IncomingSegment, error) {
	if seg.First < 1 || seg.Last < seg.First {
		return nil, fmt.Errorf("store: shipped segment seqs [%d,%d]: first must be >= 1 and last >= first: %w", seg.First, seg.Last, ErrInvalidArgument)
	}
	if seg.Size < minSegmentFile || seg.Size > MaxShippedSegmentBytes {
		return nil, fmt.Errorf("store: shipped segment [%d,%d] of %d bytes: the size must be %d..%d (MaxShippedSegmentBytes): %w", seg.First, seg.Last, seg.Size, minSegmentFile, int64(MaxShippedSegmentBytes), ErrInvalidArgument)
	}
	for _, r := range seg.Replaces {
		if r[0] < seg.First || r[1] > seg.Last || r[1] < r[0] {
			return nil, fmt.Errorf("store: shipped segment [%d,%d] replaces [%d,%d], which is not inside it: %w", seg.First, seg.Last, r[0], r[1], ErrInvalidArgument)
		}
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	tmp := path.Join(s.dir, fmt.Sprintf("seg-shipped-%d.tmp", s.tmpSeq.Add(1)))
	f, err := s.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("store: create shipped segment %s: %w", tmp, mapNoSpace(err))
	}
	return &IncomingSegment{s: s, seg: seg, tmp: tmp, f: f}, nil
}

// Segment is what is being received.
func (in *IncomingSegment) Segment() ShippedSegment { return in.seg }

// Received is how many bytes were written so far.
func (in *IncomingSegment) Received() int64 { return in.n }

// Write appends p, which must start at off (the bytes received so far).
func (in *IncomingSegment) Write(off int64, p []byte) error {
	if in.done {
		return fmt.Errorf("store: shipped segment [%d,%d]: write after adopt or abort", in.seg.First, in.seg.Last)
	}
	if off != in.n {
		return fmt.Errorf("store: shipped segment [%d,%d]: chunk at offset %d, expected %d: %w", in.seg.First, in.seg.Last, off, in.n, ErrInvalidArgument)
	}
	if in.n+int64(len(p)) > in.seg.Size {
		return fmt.Errorf("store: shipped segment [%d,%d]: %d bytes past its size %d: %w", in.seg.First, in.seg.Last, in.n+int64(len(p)), in.seg.Size, ErrInvalidArgument)
	}
	if _, err := in.f.Write(p); err != nil {
		return fmt.Errorf("store: write shipped segment %s: %w", in.tmp, mapNoSpace(err))
	}
	in.n += int64(len(p))
	return nil
}

// Abort drops the file. Safe after Adopt.
func (in *IncomingSegment) Abort() {
	if in.f != nil {
		in.f.Close()
		in.f = nil
	}
	if !in.done {
		in.done = true
		in.s.fs.Remove(in.tmp)
	}
}

// Adopt makes the received file durable and, when that is safe, swaps it
// into the segment set (see the package comment above). A file the store
// cannot use is dropped with a reason and no error; an error means the
// file itself is bad (size, footer) or the disk failed, and the store
// keeps its own rows either way.
func (in *IncomingSegment) Adopt(ctx context.Context) (AdoptResult, error) {
	s, seg := in.s, in.seg
	defer in.Abort()
	if in.done {
		return AdoptResult{}, fmt.Errorf("store: shipped segment [%d,%d]: adopt after abort", seg.First, seg.Last)
	}
	if in.n != seg.Size {
		return AdoptResult{}, fmt.Errorf("store: shipped segment [%d,%d]: %d bytes received, %d announced: %w", seg.First, seg.Last, in.n, seg.Size, ErrInvalidArgument)
	}
	if err := in.check(); err != nil {
		return AdoptResult{}, err
	}
	if err := in.f.Sync(); err != nil {
		return AdoptResult{}, fmt.Errorf("store: sync shipped segment %s: %w", in.tmp, mapNoSpace(err))
	}
	if err := in.f.Close(); err != nil {
		in.f = nil
		return AdoptResult{}, fmt.Errorf("store: close shipped segment %s: %w", in.tmp, err)
	}
	in.f = nil

	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if s.isClosed() {
		// Close flushes under flushMu after marking the store closed:
		// past that point nothing may change the segment set.
		return AdoptResult{}, ErrClosed
	}
	if !s.following.Load() {
		return AdoptResult{Reason: AdoptNotFollowing}, nil
	}
	s.mu.Lock()
	gapFrom, reason := s.adoptPlanLocked(seg.First, seg.Last)
	s.mu.Unlock()
	res := AdoptResult{Reason: reason}
	if reason != "" {
		if !in.SkipChecks || (reason != AdoptNotHeld && reason != AdoptOverlap) {
			return res, nil
		}
		res.Reason, gapFrom = AdoptSkippedChecks, 0
	}
	if err := ctx.Err(); err != nil {
		return AdoptResult{}, err
	}
	if gapFrom > 0 {
		n, err := s.flushGap(gapFrom, seg.First-1)
		if err != nil {
			return AdoptResult{}, err
		}
		res.GapRows = n
	}
	name := segName(seg.First, seg.Last)
	if err := s.fs.Rename(in.tmp, path.Join(s.dir, name)); err != nil {
		return AdoptResult{}, fmt.Errorf("store: rename shipped segment %s: %w", name, mapNoSpace(err))
	}
	in.done = true
	// As for a merge (W4 in docs/sim.md): a failed directory sync after the
	// rename still installs the segment, so the list matches the directory
	// and a later sync cannot make it durable beside segments that cut
	// across it; whichever of it and what it covers a crash keeps, recovery
	// resolves (rows inside a segment's range are skipped or deleted).
	syncErr := s.fs.SyncDir(s.dir)
	sg, err := s.openSegment(name)
	if err != nil {
		// It was checked before the rename: only the disk can fail here.
		// Not installed, the file must go: a later flush of this store's
		// own could cut across its range, and two segments that overlap
		// without one containing the other make the store refuse to open.
		// If the removal fails too, recovery loads it (rows inside it are
		// skipped in the WAL) as long as nothing was flushed meanwhile.
		if rerr := s.removeFiles([]string{name}); rerr != nil {
			s.log.Error("adopt: cannot remove a shipped segment that failed to open; it is retried by the next Retain", "segment", name, "err", rerr)
		}
		return AdoptResult{}, fmt.Errorf("store: open adopted segment: %w", err)
	}
	if err := s.cover(sg); err != nil {
		return AdoptResult{}, err
	}
	if syncErr != nil {
		return AdoptResult{}, fmt.Errorf("store: sync dir after adopting segment %s: %w", name, mapNoSpace(syncErr))
	}
	if res.Reason == "" {
		res.Reason = AdoptedSegment
	}
	res.Adopted = true
	s.log.Debug("adopted the primary's segment", "segment", name, "gap_rows", res.GapRows)
	return res, nil
}

// check reads the received file's footer: a parquet segment whose seq
// range and row count are the announced ones.
func (in *IncomingSegment) check() (err error) {
	defer func() {
		// The file came over the network: a footer the parquet reader
		// chokes on is a bad file, not a crash of this process.
		if r := recover(); r != nil {
			err = fmt.Errorf("store: shipped segment [%d,%d] is not a readable segment: %v: %w", in.seg.First, in.seg.Last, r, ErrInvalidArgument)
		}
	}()
	sg, err := loadSegment(in.f, in.n)
	if err != nil {
		return fmt.Errorf("store: shipped segment [%d,%d] is not a readable segment: %w: %w", in.seg.First, in.seg.Last, err, ErrInvalidArgument)
	}
	if sg.first != in.seg.First || sg.last != in.seg.Last || sg.rows != in.seg.Last-in.seg.First+1 {
		return fmt.Errorf("store: shipped segment announced as [%d,%d] holds seqs [%d,%d] in %d rows: %w", in.seg.First, in.seg.Last, sg.first, sg.last, sg.rows, ErrInvalidArgument)
	}
	return nil
}

// adoptPlanLocked decides whether a segment of [first, last] can join the
// segment set: "" when it can, else why not. gapFrom > 0 means the seqs
// gapFrom..first-1 are only in memtables and must become a segment first.
// Caller holds mu (and compactMu and flushMu, so the answer holds).
func (s *Store) adoptPlanLocked(first, last int64) (gapFrom int64, reason string) {
	if first <= s.floor {
		return 0, AdoptBelowFloor
	}
	if last > s.lastSeq.Load() {
		return 0, AdoptNotHeld
	}
	segEnd := s.floor
	for _, o := range s.segs {
		segEnd = max(segEnd, o.last)
		if o.first == first && o.last == last {
			return 0, AdoptAlreadyHeld
		}
		inside := o.first >= first && o.last <= last
		if !inside && o.last >= first && o.first <= last {
			return 0, AdoptOverlap
		}
	}
	if segEnd < first-1 {
		return segEnd + 1, ""
	}
	return 0, ""
}

// flushGap writes the memtable rows from..to as a segment of this store's
// own and installs it (cover), so a shipped segment starting at to+1 can
// follow it. Caller holds compactMu and flushMu.
func (s *Store) flushGap(from, to int64) (int64, error) {
	gm := newMemtable(from, 0, s.opts.MemtableBytes)
	s.mu.Lock()
	views := make([]rowsView, 0, len(s.sealed)+1)
	for _, m := range append(append([]*memtable(nil), s.sealed...), s.mem) {
		if m.n > 0 && m.last() >= from && m.first <= to {
			views = append(views, m.view())
		}
	}
	s.mu.Unlock()
	var rows []Row
	for _, v := range views {
		for i := max(0, int(from-v.first)); i < v.n && v.seqAt(i) <= to; i++ {
			rows = append(rows, v.at(i))
			if len(rows) == memChunk {
				gm.add(rows)
				rows = rows[:0]
			}
		}
	}
	gm.add(rows)
	if gm.last() != to {
		return 0, fmt.Errorf("store: adopt: memtables hold seqs %d..%d of the %d..%d before the shipped segment", from, gm.last(), from, to)
	}
	start := s.clk.Now()
	next, grams := memFlush(gm)
	sg, err := s.writeSegment(next, segOut{estRows: int64(gm.n), estBytes: gm.bytes, codec: flushCodec, grams: grams, writtenMS: s.clk.Now().UnixMilli()})
	s.metrics.wroteSegment("flush", s.clk.Now().Sub(start), sg)
	var syncErr *dirSyncError
	if err != nil && (sg == nil || !errors.As(err, &syncErr)) {
		return 0, fmt.Errorf("store: adopt: write the rows before the shipped segment: %w", err)
	}
	if cerr := s.cover(sg); cerr != nil {
		return 0, cerr
	}
	if err != nil {
		return 0, fmt.Errorf("store: adopt: write the rows before the shipped segment: %w", err)
	}
	return int64(gm.n), nil
}

// cover installs sg, durable under its name, in the segment set: the local
// segments inside its range leave the list (and the disk), and when it is
// the newest segment the memtable rows and marks up to its last seq leave
// the memtables (their marks join the marks as of the segment), then
// producers.json is written and the WAL trimmed, as after a flush. Caller
// holds compactMu and flushMu and has checked that no segment straddles
// sg's range.
func (s *Store) cover(sg *segment) error {
	s.walMu.Lock()
	s.mu.Lock()
	rotated, newWAL := false, uint64(0)
	if s.mem.first <= sg.last || (len(s.mem.marks) > 0 && s.mem.marks[0].pos <= sg.last) {
		s.mu.Unlock()
		// No commit runs while walMu is held. A failed rotation only keeps
		// the WAL longer: the current file then goes with a later trim.
		if err := s.wal.rotate(); err == nil {
			rotated, newWAL = true, s.wal.curNum
			s.walBytes.Store(s.wal.bytes())
		}
		s.mu.Lock()
	}
	var inside []*segment
	segs := make([]*segment, 0, len(s.segs)+1)
	placed := false
	for _, o := range s.segs {
		if o.first >= sg.first && o.last <= sg.last {
			inside = append(inside, o)
			continue
		}
		if !placed && o.first > sg.last {
			segs = append(segs, sg)
			placed = true
		}
		segs = append(segs, o)
	}
	if !placed {
		segs = append(segs, sg)
	}
	s.segs = segs
	newest := segs[len(segs)-1] == sg
	trimTo := uint64(0)
	if newest {
		marks := make(map[string]int64, len(s.segMarks))
		for p, v := range s.segMarks {
			marks[p] = v
		}
		var folded uint64
		fold := func(m *memtable) {
			for _, mk := range m.marks {
				if mk.pos > sg.last {
					break // positions never decrease
				}
				if _, ok := s.producers[mk.Producer]; ok {
					marks[mk.Producer] = max(marks[mk.Producer], mk.Seq)
				}
				folded = max(folded, mk.id)
			}
		}
		var kept []*memtable
		for _, m := range s.sealed {
			fold(m)
			if t := m.after(sg.last, s.opts.MemtableBytes); t != nil {
				kept = append(kept, t)
			}
		}
		fold(s.mem)
		old := s.mem
		t := old.after(sg.last, s.opts.MemtableBytes)
		if t == nil {
			t = old.emptyAfter(sg.last, s.opts.MemtableBytes)
		}
		if t != old && rotated {
			// The WAL file old was written to still holds rows up to
			// sg.last: from now on records go to a new one, so the next
			// adoption past this one's rows can trim the old file.
			switch {
			case t.n == 0 && len(t.marks) == 0:
				t.walNum = newWAL
			case old.splitWAL != 0 && old.splitFirst <= t.first && (len(t.marks) == 0 || t.marks[0].pos >= old.splitFirst):
				t.walNum = old.splitWAL
			}
			t.splitFirst, t.splitWAL = s.lastSeq.Load()+1, newWAL
		}
		s.mem = t
		s.sealed = kept
		s.segMarks = marks
		s.foldedMarkID = max(s.foldedMarkID, folded)
		s.lastFlush = s.clk.Now()
		s.wakeStalledLocked()
		trimTo = s.mem.walNum
		if len(s.sealed) > 0 {
			trimTo = s.sealed[0].walNum
		}
	}
	s.mu.Unlock()
	s.walMu.Unlock()
	s.metrics.segmentsChanged()
	var err error
	if newest {
		// As in flush: the marks as of the segment's end are durable
		// before the WAL records that hold them go.
		if err = s.persistSegMarks(); err != nil {
			s.marksUnwritten = true
			err = fmt.Errorf("store: adopt: %w", err)
		} else {
			s.marksUnwritten = false
			s.walMu.Lock()
			terr := s.wal.trimBefore(trimTo)
			s.walBytes.Store(s.wal.bytes())
			s.walMu.Unlock()
			if terr != nil {
				s.log.Warn("trim wal", "err", terr)
			}
		}
	}
	names := make([]string, len(inside))
	for i, o := range inside {
		names[i] = o.name
	}
	if len(names) > 0 {
		// An input that cannot be removed lies inside sg's range: recovery
		// deletes it, and Retain retries it meanwhile.
		if rerr := s.removeFiles(names); rerr != nil && err == nil {
			err = fmt.Errorf("store: adopt: %w", rerr)
		}
	}
	for _, o := range inside {
		o.release()
	}
	return err
}

// after returns the part of m after seq last: nil when nothing of it (no
// row, no mark) is past last, m itself when all of it is, else a new
// memtable holding its later rows and marks, which reads the same WAL
// files. Caller holds mu.
func (m *memtable) after(last int64, bound int64) *memtable {
	rowsAfter := m.n > 0 && m.last() > last
	marksAfter := len(m.marks) > 0 && m.marks[len(m.marks)-1].pos > last
	if !rowsAfter && !marksAfter {
		return nil
	}
	if m.first > last && (len(m.marks) == 0 || m.marks[0].pos > last) {
		return m
	}
	t := m.emptyAfter(last, bound)
	t.splitFirst, t.splitWAL = m.splitFirst, m.splitWAL
	v := m.view()
	var rows []Row
	for i := max(0, int(last+1-v.first)); i < v.n; i++ {
		rows = append(rows, v.at(i))
		if len(rows) == memChunk {
			t.add(rows)
			rows = rows[:0]
		}
	}
	t.add(rows)
	for _, mk := range m.marks {
		if mk.pos > last {
			t.addMark(mk.id, mk.pos, mk.ProducerMark)
		}
	}
	return t
}

// emptyAfter is an empty memtable continuing m after seq last (or after
// m's own rows when they go further), on m's WAL files.
func (m *memtable) emptyAfter(last int64, bound int64) *memtable {
	t := newMemtable(max(last+1, m.first), m.walNum, bound)
	t.producersAtSeal = m.producersAtSeal
	return t
}
