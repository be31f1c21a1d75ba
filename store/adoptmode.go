package store

// While a follower adopts its primary's shipped segments it would only
// duplicate the primary's work by flushing and compacting on its own
// schedule: the primary's segments arrive for the same rows. It still
// flushes as a fallback, so a slow link, a catch-up from far behind or a
// primary that ships nothing cannot make its memtables grow without bound,
// and compacts once the small segments such flushes leave pile up.

// adoptFallbackFactor: a follower that adopts shipped segments flushes on
// its own once its memtables hold this many MemtableBytes, or its last
// flush or adoption is this many FlushIntervals ago. It is the committer's
// stall point (maxHeldMemtables): under steady ingest a primary's segment
// arrives when the follower holds its rows plus those that came while the
// primary wrote and shipped it, up to 2 MemtableBytes and more on a busy
// machine, and a fallback flush just before the file arrives would make
// the follower drop it (it would overlap). Past the stall point the
// follower could not take records anyway.
const adoptFallbackFactor = maxHeldMemtables

// SetAdoptShipped says whether the primary ships its sealed segments to
// this follower (peer.ReplicaLink sets it when it subscribes). It changes
// only the background loop's schedule: a store that is not following, or
// after StopFollowing, flushes and compacts as always.
func (s *Store) SetAdoptShipped(on bool) { s.adoptShipped.Store(on) }

func (s *Store) adoptingShipped() bool { return s.adoptShipped.Load() && s.following.Load() }

// leaveFlushToPrimary reports whether a due background flush should wait
// for the primary's segment instead.
func (s *Store) leaveFlushToPrimary() bool {
	if !s.adoptingShipped() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.mem.bytes
	for _, m := range s.sealed {
		held += m.bytes
	}
	return len(s.sealed) == 0 && held < adoptFallbackFactor*s.opts.MemtableBytes &&
		s.clk.Now().Sub(s.lastFlush) < adoptFallbackFactor*s.opts.FlushInterval
}

// leaveCompactionToPrimary reports whether background compaction should
// wait for the primary's merged segments instead.
func (s *Store) leaveCompactionToPrimary() bool {
	return s.adoptingShipped() && s.smallSegments() < compactionDebt
}
