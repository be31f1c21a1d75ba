package store

import (
	"context"
	"encoding/json"
	"fmt"
	"path"

	"github.com/finelog/finelog/internal/vfs"
)

// ApplyFloor makes floor this store's retention floor, as a primary's
// retention moved it: seqs <= floor are deleted. It returns once the floor
// is durable (meta.json), after which segments wholly at or below it are
// removed. A floor at or below the current one changes nothing (floors only
// rise). A floor past LastSeq deletes everything this store holds and
// continues numbering at floor+1, like a floor jump in ApplyReplicated.
//
// The primary's floor is where its own segments ended, which is rarely
// where this store's flushes cut: the segment that straddles it stays on
// disk, and reads (Fetch, Scan, Tail) skip its rows at or below the floor,
// so what the store serves is exactly what the primary serves. Like
// ApplyReplicated it is for a store that follows a primary and takes no
// Appends; calls must not overlap it or each other.
func (s *Store) ApplyFloor(ctx context.Context, floor int64) error {
	if floor < 0 {
		return fmt.Errorf("store: apply floor %d: a floor is a seq, 0 or more: %w", floor, ErrInvalidArgument)
	}
	if s.isClosed() {
		return ErrClosed
	}
	if floor <= s.floorNow() {
		return nil
	}
	if floor > s.LastSeq() {
		return s.jumpFloor(ctx, floor)
	}
	// Rows at or below the floor must not be left only in the WAL: they
	// are in segments once flushed, and recovery then opens with the
	// floor inside (or past) a segment and the WAL holding newer rows only.
	if s.segEnd() < floor {
		if err := s.Flush(ctx); err != nil {
			return fmt.Errorf("store: apply floor %d: %w", floor, err)
		}
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if floor <= s.floorNow() {
		return nil
	}
	// Durable before any segment goes, as in Retain: a crash in between
	// leaves segments below the floor, which recovery deletes.
	data, _ := json.Marshal(storeMeta{FloorSeq: floor})
	if err := vfs.WriteFileAtomic(s.fs, path.Join(s.dir, metaName), data); err != nil {
		return fmt.Errorf("store: apply floor %d: write %s: %w", floor, metaName, mapNoSpace(err))
	}
	s.mu.Lock()
	s.floor = floor
	n := 0
	for n < len(s.segs) && s.segs[n].last <= floor {
		n++
	}
	victims := s.segs[:n:n]
	s.segs = s.segs[n:]
	close(s.tailCh) // a stream of this store behind the floor must jump
	s.tailCh = make(chan struct{})
	s.mu.Unlock()
	if n == 0 {
		return nil
	}
	s.scan.drop()
	names := make([]string, 0, n)
	for _, sg := range victims {
		names = append(names, sg.name)
	}
	err := s.removeFiles(names)
	for _, sg := range victims {
		sg.release()
	}
	s.metrics.segmentsChanged()
	s.metrics.retained(victims)
	if err != nil {
		return fmt.Errorf("store: apply floor %d: %w", floor, err)
	}
	return nil
}

// Floor is the retention floor: seqs at or below it are deleted.
func (s *Store) Floor() int64 { return s.floorNow() }

// StopFollowing ends Options.Following (a promoted standby): Retain applies
// RetentionAge and RetentionBytes from now on.
func (s *Store) StopFollowing() { s.following.Store(false) }

// segEnd is the newest segment's last seq (the floor when there is none).
func (s *Store) segEnd() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := s.floor
	if n := len(s.segs); n > 0 {
		end = max(end, s.segs[n-1].last)
	}
	return end
}
