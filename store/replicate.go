package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"

	"github.com/finelog/finelog/internal/vfs"
)

// Errors ApplyReplicated classifies a record's place in the seq order with.
var (
	// ErrReplicaGap: the record starts past LastSeq+1 and is not a floor
	// jump: records in between are missing. Nothing was written; resume the
	// stream from LastSeq.
	ErrReplicaGap = errors.New("replicated record leaves a gap after the last applied seq")
	// ErrReplicaOverlap: the record starts at or below LastSeq: this store
	// already holds those seqs. Nothing was written.
	ErrReplicaOverlap = errors.New("replicated record overlaps seqs already applied")
)

// ApplyReplicated durably writes a record received from a primary's Tail,
// with the primary's seqs and producer marks: it returns after the WAL
// record is fdatasync'ed, group-committed with other writes like Append.
// The record must start at LastSeq+1 (ErrReplicaGap, ErrReplicaOverlap
// otherwise), except a floor jump: a record with First == Floor+1 beyond
// LastSeq+1 means the primary's retention deleted everything up to Floor,
// so this store drops what it holds up to there (its rows are all below the
// primary's floor) and continues at Floor+1.
//
// Marks are taken as they are: they are the primary's (already
// validated and bounded there), and a standby must keep them exactly to
// dedupe the producer's retries once promoted. Rows and marks are never
// renumbered, filtered or deduped. A store that follows a primary must not
// take Appends: they would take the seqs the primary's next records need.
func (s *Store) ApplyReplicated(ctx context.Context, rec Record) error {
	size, err := validateRecord(&rec)
	if err != nil {
		return err
	}
	if rec.First-1 > s.LastSeq() && rec.Floor == rec.First-1 {
		if err := s.jumpFloor(ctx, rec.Floor); err != nil {
			return err
		}
	}
	req := &commitReq{repl: &rec, bytes: size, done: make(chan commitResult, 1)}
	release, err := s.enqueue(ctx, req)
	defer release()
	if err != nil {
		return err
	}
	select {
	case r := <-req.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// validateRecord checks what a record must satisfy to be written as one WAL
// record, and returns its rows' bytes.
func validateRecord(rec *Record) (int64, error) {
	if rec.First < 1 || rec.Last < rec.First-1 {
		return 0, fmt.Errorf("replicated record seqs [%d,%d]: first must be >= 1 and last >= first-1: %w", rec.First, rec.Last, ErrInvalidArgument)
	}
	if n := rec.Last - rec.First + 1; n != int64(len(rec.Rows)) {
		return 0, fmt.Errorf("replicated record seqs [%d,%d] need %d rows, it has %d: %w", rec.First, rec.Last, n, len(rec.Rows), ErrInvalidArgument)
	}
	if rec.Floor < 0 {
		return 0, fmt.Errorf("replicated record floor %d is negative: %w", rec.Floor, ErrInvalidArgument)
	}
	for i := range rec.Rows {
		if want := rec.First + int64(i); rec.Rows[i].Seq != want {
			return 0, fmt.Errorf("replicated record row %d has seq %d, expected %d: %w", i, rec.Rows[i].Seq, want, ErrInvalidArgument)
		}
	}
	size, err := validateBatch(&Batch{Rows: rec.Rows})
	if err != nil {
		return 0, fmt.Errorf("replicated record [%d,%d]: %w", rec.First, rec.Last, err)
	}
	if len(rec.Marks) > TailMaxMarks {
		return 0, fmt.Errorf("replicated record has %d producer marks, limit is %d (TailMaxMarks): %w", len(rec.Marks), TailMaxMarks, ErrInvalidArgument)
	}
	for i, m := range rec.Marks {
		if m.Producer == "" || len(m.Producer) > MaxKeyBytes || m.Seq < 0 {
			return 0, fmt.Errorf("replicated record mark %d: producer %q (%d bytes, limit %d) seq %d: %w", i, m.Producer, len(m.Producer), MaxKeyBytes, m.Seq, ErrInvalidArgument)
		}
		size += int64(len(m.Producer)) + 16
	}
	return size, nil
}

// replicaSeqErr says why rec cannot be written when the next seq is next.
func replicaSeqErr(rec *Record, next int64) error {
	switch {
	case rec.First > next:
		return fmt.Errorf("store: %w: record starts at seq %d, this store's last seq is %d", ErrReplicaGap, rec.First, next-1)
	case rec.First < next:
		return fmt.Errorf("store: %w: record covers seqs %d..%d, this store's last seq is %d", ErrReplicaOverlap, rec.First, rec.Last, next-1)
	}
	return nil
}

// jumpFloor makes floor this store's retention floor and its last seq: the
// primary deleted everything up to floor, which is past all this store
// holds. The memtables are flushed first so the WAL holds no rows, then
// producers.json and meta.json record the marks and the floor (durable
// before any segment goes, as in Retain), then the segments, all below the
// floor, are deleted.
func (s *Store) jumpFloor(ctx context.Context, floor int64) error {
	if err := s.Flush(ctx); err != nil {
		return fmt.Errorf("store: floor jump to seq %d: %w", floor, err)
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.walMu.Lock()
	defer s.walMu.Unlock()
	s.mu.Lock()
	if s.lastSeq.Load() >= floor {
		s.mu.Unlock()
		return nil // another jump (or the records) got there first
	}
	if s.mem.n > 0 || len(s.sealed) > 0 {
		s.mu.Unlock()
		return fmt.Errorf("store: floor jump to seq %d: rows were appended during the jump; a store that follows a primary must not take appends", floor)
	}
	marks := make(map[string]int64, len(s.producers))
	seen := make(map[string]int64, len(s.producers))
	for p, v := range s.producers {
		marks[p], seen[p] = v, s.producerSeen[p]
	}
	s.mu.Unlock()
	// Every mark this store has is as of its last seq, so as of the floor.
	if err := s.writeProducers(floor, marks, seen); err != nil {
		return fmt.Errorf("store: floor jump to seq %d: %w", floor, err)
	}
	data, _ := json.Marshal(storeMeta{FloorSeq: floor})
	if err := vfs.WriteFileAtomic(s.fs, path.Join(s.dir, metaName), data); err != nil {
		return fmt.Errorf("store: floor jump to seq %d: write %s: %w", floor, metaName, mapNoSpace(err))
	}
	s.mu.Lock()
	victims := s.segs
	s.segs = nil
	s.floor = floor
	s.segMarks = marks
	s.mem.first = floor + 1
	s.lastSeq.Store(floor)
	close(s.changed)
	s.changed = make(chan struct{})
	close(s.tailCh) // a stream of this store (a chained standby) must jump too
	s.tailCh = make(chan struct{})
	s.mu.Unlock()
	s.scan.drop()
	names := make([]string, 0, len(victims))
	for _, sg := range victims {
		names = append(names, sg.name)
	}
	err := s.removeFiles(names)
	for _, sg := range victims {
		sg.release()
	}
	s.metrics.segmentsChanged()
	if err != nil {
		return fmt.Errorf("store: floor jump to seq %d: %w", floor, err)
	}
	return nil
}
