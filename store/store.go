package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// Store is an open log store. All methods are safe for concurrent use.
type Store struct {
	opts    Options
	fs      vfs.FS
	clk     clock.Clock
	dir     string
	log     *slog.Logger
	metrics *metrics
	// lock is the data dir's LOCK, held from before recovery reads anything
	// until Close (or Abandon, which models the process dying).
	lock io.Closer

	commitCh  chan *commitReq
	stopCh    chan struct{} // closed by Close: stops background loops
	loops     sync.WaitGroup
	inflight  sync.WaitGroup // Append calls between the closed check and their reply
	flushKick chan struct{}
	// flushedKick tells maintainLoop a flush made a segment.
	flushedKick chan struct{}

	// walMu serialises WAL writes with sealing: a commit holds it across
	// write, fdatasync and publish so that a memtable and the WAL files it is
	// sealed with always agree.
	walMu sync.Mutex
	wal   wal

	// flushMu serialises Flush and Retain (the segment set changes only
	// under flushMu or compactMu, plus mu for the swap).
	flushMu sync.Mutex
	// marksUnwritten: a flush installed a segment but could not write
	// producers.json after it; the next Flush writes it even without new
	// rows (an object tier uploads that segment only with its marks).
	// Guarded by flushMu.
	marksUnwritten bool
	// compactMu serialises Compact and Retain, the two that remove segments
	// (and share garbage). Compaction does not take flushMu: a merge can run
	// for seconds and must not hold up flushes, or a full memtable stalls
	// ingest (the committer waits for the flush past 3x MemtableBytes).
	// Flushed segments only append newer seqs, which a merge never covers.
	// Lock order: compactMu before flushMu.
	compactMu sync.Mutex
	tmpSeq    atomic.Uint64

	// mu guards everything below. Held only for short, non-I/O sections.
	mu        sync.Mutex
	closed    bool
	mem       *memtable
	sealed    []*memtable // oldest first; being written as segments
	segs      []*segment  // seq order, disjoint
	producers map[string]int64
	// producerSeen is when each producer last sent a batch (store clock,
	// ms): Retain forgets producers idle past RetentionAge.
	producerSeen map[string]int64
	pins         map[string]int64
	changed      chan struct{}
	floor        int64 // seqs <= floor were deleted by retention (or a primary's, ApplyFloor)
	// segMarks are the producer marks as of the newest segment's last seq
	// (or the floor when there is none): what a Tail that reads rows from
	// segments, where marks have no position, delivers when it reaches
	// that seq.
	segMarks map[string]int64
	// markSeq numbers marks in commit order (markAt.id).
	markSeq uint64
	// foldedMarkID is the newest mark a flush folded into segMarks from a
	// memtable without rows: a RecordStream past it in seq order but not in
	// marks gets segMarks again.
	foldedMarkID uint64
	// tailCh is closed (and replaced) whenever rows or marks are published:
	// what a waiting RecordStream wakes on. Changed fires only for new seqs,
	// and a mark can come without rows.
	tailCh chan struct{}
	// garbage: segment files no longer in segs (below meta.json's floor, or
	// inside a merged segment's range) whose removal failed; Retain retries
	// them, and recovery would delete them too.
	// Guarded by compactMu (set during recovery before any goroutine runs).
	garbage []string
	lastSeq atomic.Int64
	// following: the store copies a primary (Options.Following until
	// StopFollowing); Retain then deletes nothing of its own accord.
	following atomic.Bool
	// adoptShipped: while following, the primary ships its sealed
	// segments (adopt.go), so the store flushes and compacts only as a
	// fallback.
	adoptShipped atomic.Bool
	walBytes     atomic.Int64
	lastFlush    time.Time

	// arrivals are the producer batches inside Append (producerorder.go).
	arrivals arrivals

	// commitBuf is the committer's reusable group buffer (under walMu).
	commitBuf []byte

	scan scanCache
	// appenders counts Append calls between enqueue and reply: how many
	// batches a group commit could hold right now.
	appenders atomic.Int64
	// flushed is closed (and replaced) whenever a flush installs a segment
	// or fails: what a stalled committer waits for.
	flushed chan struct{}

	// sealedLog is the recent segments flushes and merges made durable,
	// for a primary's replica port (sealedlog.go).
	sealedMu  sync.Mutex
	sealedLog sealedLog
}

// Open opens (creating if needed) the store in opts.Dir and recovers it:
// segments are loaded, the WAL is replayed into the memtable, and a fresh WAL
// file is started.
func Open(opts Options) (*Store, error) {
	if opts.FS == nil {
		return nil, fmt.Errorf("store: Options.FS is required: %w", ErrInvalidArgument)
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("store: Options.Dir is required: %w", ErrInvalidArgument)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.MemtableBytes <= 0 {
		opts.MemtableBytes = 32 << 20
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Minute
	}
	if opts.TargetSegmentBytes <= 0 {
		opts.TargetSegmentBytes = 256 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ProducerOrderWait == 0 && opts.Background {
		opts.ProducerOrderWait = DefaultProducerOrderWait
	}
	s := &Store{
		opts:         opts,
		fs:           opts.FS,
		clk:          opts.Clock,
		dir:          opts.Dir,
		log:          opts.Logger,
		commitCh:     make(chan *commitReq, 4096),
		stopCh:       make(chan struct{}),
		flushKick:    make(chan struct{}, 1),
		flushedKick:  make(chan struct{}, 1),
		producers:    map[string]int64{},
		producerSeen: map[string]int64{},
		segMarks:     map[string]int64{},
		tailCh:       make(chan struct{}),
		pins:         map[string]int64{},
		changed:      make(chan struct{}),
		flushed:      make(chan struct{}),
	}
	for _, name := range opts.Pins {
		s.pins[name] = 0
	}
	s.following.Store(opts.Following)
	if err := s.recover(); err != nil {
		for _, sg := range s.segs {
			sg.close()
		}
		s.wal.close()
		if s.lock != nil {
			s.lock.Close()
		}
		return nil, err
	}
	s.metrics = newMetrics(opts.Registerer, s)
	s.lastFlush = s.clk.Now()
	s.loops.Add(1)
	go s.commitLoop()
	if opts.Background {
		s.loops.Add(1)
		go s.backgroundLoop()
	}
	return s, nil
}

// LastSeq is the highest acked seq (0 for an empty store).
func (s *Store) LastSeq() int64 { return s.lastSeq.Load() }

// Changed returns a channel that is closed at the next append that assigns
// new seqs (for long-poll and the relay). Call it again after it fires.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// SetPin asks retention to keep rows with seq > seq for name (up to
// Options.PinMaxBytes). seq < 0 removes the pin.
func (s *Store) SetPin(name string, seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq < 0 {
		delete(s.pins, name)
		return
	}
	s.pins[name] = seq
}

// Stats reports a point-in-time summary.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{LastSeq: s.lastSeq.Load()}
	for _, m := range s.sealed {
		st.MemtableRows += m.n
		st.MemtableBytes += m.bytes
	}
	st.MemtableRows += s.mem.n
	st.MemtableBytes += s.mem.bytes
	st.Segments = len(s.segs)
	for _, sg := range s.segs {
		st.SegmentBytes += sg.size
		st.SegmentRows += sg.rows
	}
	switch {
	case len(s.segs) > 0:
		st.FirstSeq = s.segs[0].first
	case len(s.sealed) > 0 && s.sealed[0].n > 0:
		st.FirstSeq = s.sealed[0].first
	case s.mem.n > 0:
		st.FirstSeq = s.mem.first
	}
	if st.FirstSeq != 0 && st.FirstSeq <= s.floor {
		// A segment straddling the floor (ApplyFloor) still holds rows at
		// or below it, which reads skip.
		st.FirstSeq = s.floor + 1
	}
	st.WALBytes = s.walBytes.Load()
	st.Producers = len(s.producers)
	return st
}

// Close stops accepting appends, waits for in-flight ones, flushes the
// memtable to a segment and stops every goroutine. The returned error is the
// flush's; the store is closed either way.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	close(s.stopCh)
	s.loops.Wait()
	err := s.flush(context.Background())
	s.walMu.Lock()
	if cerr := s.wal.close(); err == nil && cerr != nil {
		err = cerr
	}
	s.walMu.Unlock()
	s.scan.drop()
	s.mu.Lock()
	segs := s.segs
	s.segs = nil
	s.mu.Unlock()
	for _, sg := range segs {
		sg.release()
	}
	s.metrics.unregister()
	if cerr := s.lock.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: release %s: %w", lockName, cerr)
	}
	return err
}

// Abandon stops every goroutine without any further I/O, as if the process
// died: for crash simulations, which then crash the FS and reopen.
func (s *Store) Abandon() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	close(s.stopCh)
	s.loops.Wait()
	s.scan.drop()
	s.mu.Lock()
	segs := s.segs
	s.segs = nil
	s.mu.Unlock()
	for _, sg := range segs {
		sg.release()
	}
	s.metrics.unregister()
	// A dead process's flock is gone; so is this one.
	s.lock.Close()
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
