package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"time"

	"github.com/finelog/finelog/internal/vfs"
)

// Flush seals the active memtable (if it has rows) and writes every sealed
// memtable as a segment, then trims the WAL files they covered. A failure
// (e.g. ENOSPC) leaves the sealed memtable readable and in the WAL; the next
// Flush retries it.
func (s *Store) Flush(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	return s.flush(ctx)
}

// flush is Flush without the closed check: Close uses it after stopping the
// goroutines.
func (s *Store) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if err := s.seal(); err != nil {
		return err
	}
	for {
		s.mu.Lock()
		if len(s.sealed) == 0 {
			s.lastFlush = s.clk.Now()
			s.mu.Unlock()
			if s.marksUnwritten {
				if err := s.persistSegMarks(); err != nil {
					return fmt.Errorf("store: flush: %w", err)
				}
				s.marksUnwritten = false
			}
			return nil
		}
		m := s.sealed[0]
		s.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
		var sg *segment
		var err error
		if m.n > 0 {
			start := s.clk.Now()
			rows, grams := memFlush(m)
			sg, err = s.writeSegment(rows, segOut{estRows: int64(m.n), estBytes: m.bytes, codec: flushCodec,
				grams: grams, writtenMS: s.clk.Now().UnixMilli()})
			s.metrics.wroteSegment("flush", s.clk.Now().Sub(start), sg)
		}
		// A memtable without rows holds marks of batches that only moved a
		// mark, all at the newest segment's last seq: they join the marks
		// as of that seq, and no segment is written.
		if err != nil {
			if sg != nil {
				// The directory sync failed after the rename. The file is
				// left in place, not installed: the memtable stays sealed
				// and its WAL untrimmed, and the retry writes the same seq
				// range under the same name (or recovery loads it and skips
				// those WAL rows), so nothing can overlap it.
				sg.close()
			}
			s.mu.Lock()
			s.wakeStalledLocked()
			s.mu.Unlock()
			s.log.Error("flush failed; rows stay in the WAL and memtable", "err", err)
			s.metrics.failed("flush")
			return fmt.Errorf("store: flush: %w", err)
		}
		s.noteSealedFlush(sg)
		s.mu.Lock()
		if sg != nil {
			s.segs = append(s.segs, sg)
		} else if n := len(m.marks); n > 0 {
			s.foldedMarkID = m.marks[n-1].id
		}
		s.sealed = s.sealed[1:]
		s.segMarks = make(map[string]int64, len(m.producersAtSeal))
		for p, v := range m.producersAtSeal {
			if _, ok := s.producers[p]; ok { // not forgotten since the seal
				s.segMarks[p] = v
			}
		}
		s.wakeStalledLocked() // after the memtable's bytes left the count
		trimTo := s.mem.walNum
		if len(s.sealed) > 0 {
			trimTo = s.sealed[0].walNum
		}
		s.mu.Unlock()
		s.metrics.segmentsChanged()
		// The marks as of the new segment's end go to producers.json
		// before the WAL records that hold them are trimmed; until that
		// write succeeds the WAL stays, and recovery reads the marks from
		// it (producers.json says which seq it is as of).
		if err := s.persistSegMarks(); err != nil {
			s.marksUnwritten = true
			s.log.Error("flush: producer marks not written; the WAL is kept until they are", "err", err)
			return fmt.Errorf("store: flush: %w", err)
		}
		s.marksUnwritten = false
		s.walMu.Lock()
		err = s.wal.trimBefore(trimTo)
		s.walBytes.Store(s.wal.bytes())
		s.walMu.Unlock()
		if err != nil {
			// Harmless for correctness: recovery skips WAL rows a segment
			// already holds. The next flush retries the removal.
			s.log.Warn("trim wal", "err", err)
		}
	}
}

// seal moves a non-empty active memtable to the sealed list and starts a new
// WAL file for the next one, so the sealed memtable covers whole WAL files.
func (s *Store) seal() error {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	s.mu.Lock()
	// A memtable of marks alone is sealed too: batches that only move a
	// mark must not pile up in memory (and stall ingest) for want of rows.
	empty := s.mem.n == 0 && len(s.mem.marks) == 0
	s.mu.Unlock()
	if empty {
		return nil
	}
	if err := s.wal.rotate(); err != nil {
		return fmt.Errorf("store: seal memtable: %w", mapNoSpace(err))
	}
	s.walBytes.Store(s.wal.bytes())
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mem
	m.producersAtSeal = make(map[string]int64, len(s.producers))
	for p, v := range s.producers {
		m.producersAtSeal[p] = v
	}
	s.sealed = append(s.sealed, m)
	s.mem = newMemtable(m.last()+1, s.wal.curNum, s.opts.MemtableBytes)
	return nil
}

// Compact merges runs of adjacent segments smaller than half the target size
// (see pickCompaction: a run that reaches the final tier, else at least
// minMergeRun of them, size-tiered) into one segment of at most about
// TargetSegmentBytes, so a store keeps few large segments. The merged
// segment is made durable before the inputs are removed; a crash in between
// leaves both, and Open deletes the inputs (their seq range lies inside the
// merged one).
func (s *Store) Compact(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	return s.compact(ctx, false)
}

// compact runs merges until none is picked; with onlyDue (ingest is still
// flushing) only while compactionDue holds, so a busy store merges fresh
// flushes into the final tier, or pays its debt, and nothing in between
// that would be merged again.
func (s *Store) compact(ctx context.Context, onlyDue bool) error {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	for {
		if onlyDue && !s.compactionDue() {
			return nil
		}
		run := s.pickCompaction()
		if len(run) < 2 {
			return nil
		}
		release, local := s.holdLocal(run)
		if err := ctx.Err(); err != nil || !local {
			// An input was evicted to the bucket since the pick (or the
			// context ended): the next Compact picks again.
			release()
			for _, sg := range run {
				sg.release()
			}
			return err
		}
		err := s.merge(run)
		release()
		if err != nil {
			return err
		}
	}
}

// maxMergeFanIn bounds a merge's inputs: each holds a decoded page per
// column and a copy of its data page (~0.6 MiB), and a store that flushed
// many small segments under heavy ingest must not merge them all in one go.
// It is large enough for the flushes of the daemon's 32 MiB memtable (~5 MiB
// segments) to reach the final tier (half of 256 MiB) in one merge, which
// writes each row twice (flush, final) instead of three or four times.
const maxMergeFanIn = 32

// minMergeRun: a merge takes at least this many segments, so each row is
// rewritten about log4(target/flush size) times rather than once per flush.
const minMergeRun = 4

// pickCompaction chooses a run of adjacent small segments. A run that
// reaches the final tier by itself comes first (pickFinalMergeLocked): its
// rows are then written once more, for good. Otherwise it picks size-tiered:
// walking from the newest, an older segment joins only while it is no larger
// than twice the run so far, so a big merged segment is not rewritten for
// every small one that follows it.
func (s *Store) pickCompaction() []*segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := s.pickFinalMergeLocked()
	if len(best) > 0 {
		return acquireSeqOrder(best)
	}
	var run []*segment
	var bytes int64
	flush := func() {
		if len(run) >= minMergeRun && len(best) == 0 {
			best = run
		}
		run, bytes = nil, 0
	}
	for i := len(s.segs) - 1; i >= 0 && len(best) == 0; i-- {
		sg := s.segs[i]
		if s.finalTierLocked(sg) || s.remoteSeg(sg) {
			flush()
			continue
		}
		if len(run) > 0 && (sg.size > 2*bytes || bytes+sg.size > s.opts.TargetSegmentBytes || len(run) >= maxMergeFanIn) {
			flush()
		}
		run = append(run, sg)
		bytes += sg.size
	}
	flush()
	if len(best) == 0 {
		return nil
	}
	return acquireSeqOrder(best)
}

// finalTierLocked reports whether compaction leaves sg alone for good: a
// merge wrote it for the final tier, or it is at least half the target
// (a segment from before the footer said so, or a flush that large).
func (s *Store) finalTierLocked(sg *segment) bool {
	return sg.final || sg.size >= s.opts.TargetSegmentBytes/2
}

// acquireSeqOrder turns a picked run (newest first) into merge inputs: seq
// order, each held for the merge.
func acquireSeqOrder(run []*segment) []*segment {
	for i, j := 0, len(run)-1; i < j; i, j = i+1, j-1 {
		run[i], run[j] = run[j], run[i]
	}
	for _, sg := range run {
		sg.acquire()
	}
	return run
}

// pickFinalMergeLocked finds a run of adjacent small segments that
// together reach the final tier (at least half the target): fresh flushes,
// or what the size tiers leave stranded (fewer than minMergeRun, or an
// older one more than twice the newer ones). Merging them writes each row
// once more, into a segment no rule picks again and that gets the better
// codec; left alone they keep the flush codec for good (a settled daemon
// held 119 MiB + 45 MiB at ~34.5 B/line, one 164 MiB segment of the same
// rows ~28). The run extends as far as the fan-in and the target allow, so
// it leaves no small remainder behind; the final-tier bound is what keeps
// this from rewriting a big segment for every small flush that follows it.
// Newest first; caller holds mu.
func (s *Store) pickFinalMergeLocked() []*segment {
	small := s.opts.TargetSegmentBytes / 2
	for i := len(s.segs) - 1; i > 0; i-- {
		var bytes int64
		j := i
		for ; j >= 0 && i-j < maxMergeFanIn; j-- {
			sg := s.segs[j]
			if s.finalTierLocked(sg) || s.remoteSeg(sg) || bytes+sg.size > s.opts.TargetSegmentBytes {
				break
			}
			bytes += sg.size
		}
		if j++; bytes >= small && j < i {
			run := make([]*segment, 0, i-j+1)
			for k := i; k >= j; k-- {
				run = append(run, s.segs[k])
			}
			return run
		}
	}
	return nil
}

func (s *Store) merge(run []*segment) error {
	defer func() {
		for _, sg := range run {
			sg.release()
		}
	}()
	var rows, size, written int64
	for _, sg := range run {
		rows += sg.rows
		size += sg.size
		written = max(written, sg.written)
	}
	// A merged segment under half the target will itself be merged again:
	// it gets the fast level, and only a final one the better level.
	codec, final := flushCodec, size >= s.opts.TargetSegmentBytes/2
	if final {
		codec = compactCodec
	}
	it, ierr := newMergeIter(run)
	if ierr != nil {
		return fmt.Errorf("store: compact: %w", ierr)
	}
	defer it.close()
	start := s.clk.Now()
	merged, err := s.writeSegment(it.next, segOut{estRows: rows, estBytes: size * 4, codec: codec, writtenMS: written, final: final})
	s.metrics.wroteSegment("merge", s.clk.Now().Sub(start), merged)
	var syncErr *dirSyncError
	if err != nil && (merged == nil || !errors.As(err, &syncErr)) {
		return fmt.Errorf("store: compact: %w", err)
	}
	// A failed directory sync after the rename still installs the merged
	// segment (W4): left on disk but unused, a later SyncDir would make it
	// durable beside segments retention and later merges then cut across,
	// and the store would refuse to open ("segments ... overlap"). Installed,
	// the list matches the directory; whichever of merged file and inputs a
	// crash keeps, recovery resolves it (inputs inside the merged range are
	// deleted), because the inputs' removal becomes durable only with a
	// directory sync that also persists the merged name.
	s.mu.Lock()
	var segs []*segment
	inserted := false
	for _, sg := range s.segs {
		if sg.first >= merged.first && sg.last <= merged.last {
			if !inserted {
				segs = append(segs, merged)
				inserted = true
			}
			sg.release() // the list's reference
			continue
		}
		segs = append(segs, sg)
	}
	s.segs = segs
	s.mu.Unlock()
	s.metrics.segmentsChanged()
	if err == nil {
		s.noteSealed(merged, run)
	}
	// An input that cannot be removed lies inside the merged segment's
	// range: recovery would delete it, and Retain retries it meanwhile.
	names := make([]string, len(run))
	for i, sg := range run {
		names[i] = sg.name
	}
	if rerr := s.removeFiles(names); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	return nil
}

// Retain deletes whole segments, oldest first, that are past RetentionAge
// (their newest row was received longer ago, by the store's clock) or while
// segments exceed RetentionBytes. Rows
// only in the WAL or memtable are never deleted. Pins (SetPin) hold back
// segments with unforwarded rows until pinned bytes exceed PinMaxBytes; past
// that the segment goes anyway and OnPinnedLoss reports the lost range.
// A following store (Options.Following) only retries garbage removal: its
// floor comes from its primary (ApplyFloor).
func (s *Store) Retain(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	gcErr := s.removeGarbage()
	if s.opts.RetentionAge <= 0 && s.opts.RetentionBytes <= 0 || s.following.Load() {
		return gcErr
	}
	if s.expireProducers() {
		if err := s.persistSegMarks(); err != nil {
			return fmt.Errorf("store: retention: forget idle producers: %w", err)
		}
	}
	now := s.clk.Now()
	s.mu.Lock()
	var total int64
	for _, sg := range s.segs {
		total += sg.size
	}
	pins := make(map[string]int64, len(s.pins))
	for p, v := range s.pins {
		pins[p] = v
	}
	var victims []*segment
	type loss struct {
		pin         string
		first, last int64
	}
	var losses []loss
	for _, sg := range s.segs {
		aged := s.opts.RetentionAge > 0 && sg.written < now.Add(-s.opts.RetentionAge).UnixMilli()
		over := s.opts.RetentionBytes > 0 && total > s.opts.RetentionBytes
		if !aged && !over {
			break
		}
		var pinnedBy []string
		for p, v := range pins {
			if sg.last > v {
				pinnedBy = append(pinnedBy, p)
			}
		}
		if len(pinnedBy) > 0 {
			// Bytes held for pins: every segment from this one on that
			// still has unforwarded rows.
			var pinnedBytes int64
			for _, o := range s.segs {
				if o.first >= sg.first {
					pinnedBytes += o.size
				}
			}
			if s.opts.PinMaxBytes == 0 || pinnedBytes <= s.opts.PinMaxBytes {
				break
			}
			sort.Strings(pinnedBy)
			for _, p := range pinnedBy {
				losses = append(losses, loss{p, max(sg.first, pins[p]+1), sg.last})
			}
		}
		victims = append(victims, sg)
		total -= sg.size
	}
	if len(victims) == 0 {
		s.mu.Unlock()
		return gcErr
	}
	meta := storeMeta{FloorSeq: victims[len(victims)-1].last}
	s.mu.Unlock()
	// Pinned losses are reported before the floor is written: once
	// meta.json's rename has happened the rows are as good as gone (a failed
	// directory sync may still make it durable later, and a crash then lets
	// recovery delete them), so reporting after a successful write would
	// miss that window (W5 in docs/sim.md). If the write fails and the rows
	// survive, the next Retain reports the range again: a loss is reported
	// at least once, never silently.
	for _, l := range losses {
		s.log.Warn("retention deleting pinned rows: pin exceeded PinMaxBytes", "pin", l.pin, "first_seq", l.first, "last_seq", l.last, "pin_max_bytes", s.opts.PinMaxBytes)
		if s.opts.OnPinnedLoss != nil {
			s.opts.OnPinnedLoss(l.pin, l.first, l.last)
		}
	}
	// The floor goes to meta.json before any segment that holds it is
	// deleted, so numbering survives an empty store (producer marks are in
	// producers.json, which does not depend on any segment).
	data, _ := json.Marshal(meta)
	if err := vfs.WriteFileAtomic(s.fs, path.Join(s.dir, metaName), data); err != nil {
		return fmt.Errorf("store: retention: write %s: %w", metaName, mapNoSpace(err))
	}
	s.mu.Lock()
	s.floor = meta.FloorSeq
	s.segs = s.segs[len(victims):]
	s.mu.Unlock()
	// The segments are already gone from the list and below the durable
	// floor: a file that cannot be removed now is garbage that the next
	// Retain (or, after a restart, recovery) removes; it is never read or
	// merged again.
	var names []string
	for _, sg := range victims {
		names = append(names, sg.name)
	}
	err := s.removeFiles(names)
	if err != nil {
		err = fmt.Errorf("store: retention: %w", err)
	}
	for _, sg := range victims {
		sg.release()
	}
	s.metrics.segmentsChanged()
	s.metrics.retained(victims)
	if err == nil {
		err = gcErr
	}
	return err
}

// removeGarbage retries the removal of segment files an earlier Retain could
// not remove. Caller holds compactMu.
func (s *Store) removeGarbage() error {
	if len(s.garbage) == 0 {
		return nil
	}
	names := s.garbage
	s.garbage = nil
	if err := s.removeFiles(names); err != nil {
		return fmt.Errorf("store: retention: %w", err)
	}
	return nil
}

// removeFiles removes segment files no longer in the list (retained or merged)
// and syncs the directory; a file that cannot be removed is kept in s.garbage
// for a retry. Caller holds compactMu.
func (s *Store) removeFiles(names []string) error {
	var firstErr error
	for _, n := range names {
		err := s.fs.Remove(path.Join(s.dir, n))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.garbage = append(s.garbage, n)
			if firstErr == nil {
				firstErr = fmt.Errorf("remove segment %s (no longer read; the removal is retried by the next Retain): %w", n, err)
			}
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("sync dir %s: %w", s.dir, err)
	}
	return firstErr
}

// wakeStalledLocked wakes a committer waiting in stallForFlush; it re-checks
// the memtable bytes itself. Caller holds mu.
func (s *Store) wakeStalledLocked() {
	close(s.flushed)
	s.flushed = make(chan struct{})
}

// compactionDebt: how many small segments heavy ingest may leave behind
// before background compaction runs even while flushes keep coming, when
// they do not yet make a final-tier merge. Below maxMergeFanIn, so the
// flushes of the daemon's memtable reach the final tier (~26 of them) before
// the debt forces a merge that would be merged again.
const compactionDebt = 28

// compactionDue reports whether compaction should run while ingest keeps
// flushing: a final-tier merge is ready, or the small segments reached
// compactionDebt.
func (s *Store) compactionDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.smallSegmentsLocked() >= compactionDebt || len(s.pickFinalMergeLocked()) > 0
}

// smallSegments counts the segments compaction may still merge.
func (s *Store) smallSegments() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.smallSegmentsLocked()
}

func (s *Store) smallSegmentsLocked() int {
	n := 0
	for _, sg := range s.segs {
		if !s.finalTierLocked(sg) {
			n++
		}
	}
	return n
}

// backgroundLoop runs the maintenance steps when Options.Background is set.
// Flushing has a goroutine of its own: a full memtable must become a segment
// promptly or ingest stalls, so it never waits behind a merge. Compaction
// and retention (which exclude each other) run in maintainLoop.
func (s *Store) backgroundLoop() {
	defer s.loops.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.loops.Add(2)
	go func() {
		defer s.loops.Done()
		<-s.stopCh
		cancel()
	}()
	go s.maintainLoop(ctx)
	tick := min(s.opts.FlushInterval, 10*time.Second)
	for {
		t := s.clk.NewTimer(tick)
		select {
		case <-s.stopCh:
			t.Stop()
			return
		case <-s.flushKick:
			t.Stop()
		case <-t.C():
		}
		s.mu.Lock()
		due := s.mem.bytes >= s.opts.MemtableBytes || len(s.sealed) > 0 || (s.mem.n > 0 && s.clk.Now().Sub(s.lastFlush) >= s.opts.FlushInterval)
		s.mu.Unlock()
		if !due || s.leaveFlushToPrimary() {
			continue
		}
		if err := s.Flush(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("background flush", "err", err)
		}
		select {
		case s.flushedKick <- struct{}{}:
		default:
		}
	}
}

// maintainLoop compacts and applies retention. Compaction rewrites data
// ingest already paid for, and on a small machine it competes with ingest
// for CPU: while flushes keep coming (a flush happened since the last tick)
// it waits for a quiet tick, unless a final-tier merge is ready or the small
// segments it owes have piled up past compactionDebt.
func (s *Store) maintainLoop(ctx context.Context) {
	defer s.loops.Done()
	tick := min(s.opts.FlushInterval, 10*time.Second)
	busy := false
	for {
		t := s.clk.NewTimer(tick)
		select {
		case <-s.stopCh:
			t.Stop()
			return
		case <-s.flushedKick:
			t.Stop()
			busy = true
		case <-t.C():
			busy = false
		}
		if !s.isClosed() && !s.leaveCompactionToPrimary() {
			if err := s.compact(ctx, busy); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
				s.log.Error("background compaction", "err", err)
				s.metrics.failed("compact")
			}
		}
		if err := s.Retain(ctx); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("background retention", "err", err)
			s.metrics.failed("retain")
		}
	}
}
