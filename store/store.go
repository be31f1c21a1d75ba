package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	pins      map[string]int64
	changed   chan struct{}
	floor     int64 // seqs <= floor were deleted by retention
	// garbage: segment files no longer in segs (below meta.json's floor, or
	// inside a merged segment's range) whose removal failed; Retain retries
	// them, and recovery would delete them too.
	// Guarded by compactMu (set during recovery before any goroutine runs).
	garbage   []string
	lastSeq   atomic.Int64
	walBytes  atomic.Int64
	lastFlush time.Time

	// commitBuf is the committer's reusable group buffer (under walMu).
	commitBuf []byte

	scan scanCache
	// appenders counts Append calls between enqueue and reply: how many
	// batches a group commit could hold right now.
	appenders atomic.Int64
	// flushed is closed (and replaced) whenever a flush installs a segment
	// or fails: what a stalled committer waits for.
	flushed chan struct{}
}

type commitReq struct {
	batch   Batch
	payload []byte // pre-encoded rows for non-producer batches
	bytes   int64
	done    chan commitResult
}

type commitResult struct {
	ack Ack
	err error
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
	s := &Store{
		opts:        opts,
		fs:          opts.FS,
		clk:         opts.Clock,
		dir:         opts.Dir,
		log:         opts.Logger,
		commitCh:    make(chan *commitReq, 4096),
		stopCh:      make(chan struct{}),
		flushKick:   make(chan struct{}, 1),
		flushedKick: make(chan struct{}, 1),
		producers:   map[string]int64{},
		pins:        map[string]int64{},
		changed:     make(chan struct{}),
		flushed:     make(chan struct{}),
	}
	for _, name := range opts.Pins {
		s.pins[name] = 0
	}
	if err := s.recover(); err != nil {
		for _, sg := range s.segs {
			sg.close()
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

// storeMeta is meta.json: what retention must not forget when it deletes
// every segment that held it.
type storeMeta struct {
	// FloorSeq: every seq <= FloorSeq was deleted by retention, so a store
	// whose segments and WAL are all gone still continues numbering after it.
	FloorSeq  int64            `json:"floor_seq"`
	Producers map[string]int64 `json:"producers,omitempty"`
}

const metaName = "meta.json"

func (s *Store) recover() error {
	if err := s.fs.MkdirAll(s.dir); err != nil {
		return fmt.Errorf("store: create dir %s: %w", s.dir, mapNoSpace(err))
	}
	names, err := s.fs.List(s.dir)
	if err != nil {
		return fmt.Errorf("store: list %s: %w", s.dir, err)
	}
	// Leftover temporaries are segments or meta files a crash interrupted
	// before rename: never visible, safe to delete.
	for _, n := range names {
		if strings.HasSuffix(n, ".tmp") {
			s.fs.Remove(path.Join(s.dir, n))
		}
	}
	if data, err := vfs.ReadFile(s.fs, path.Join(s.dir, metaName)); err == nil {
		var m storeMeta
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("store: %s is corrupt (%v); it records the retention floor and producer marks, restore it or remove it to reset them", path.Join(s.dir, metaName), err)
		}
		s.floor = m.FloorSeq
		for p, v := range m.Producers {
			s.producers[p] = max(s.producers[p], v)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: read %s: %w", metaName, err)
	}
	segs, err := s.loadSegments(names, s.floor)
	if err != nil {
		return err
	}
	s.segs = segs
	base := s.floor
	for _, sg := range segs {
		base = max(base, sg.last)
		for p, v := range sg.producers {
			s.producers[p] = max(s.producers[p], v)
		}
	}
	rep, err := replayWAL(s.fs, s.dir, names, base)
	if err != nil {
		return fmt.Errorf("store: recover %s: %w", s.dir, err)
	}
	for _, msg := range rep.torn {
		s.log.Info("wal recovery: " + msg + " (a write the crash interrupted; it was never acknowledged)")
	}
	s.wal = wal{fs: s.fs, dir: s.dir, next: rep.maxNum + 1, files: rep.files}
	var firstWAL uint64
	if len(rep.files) > 0 {
		firstWAL = rep.files[0].num
	}
	s.mem = newMemtable(base+1, firstWAL, s.opts.MemtableBytes)
	for _, rec := range rep.records {
		s.mem.add(rec.Rows)
		for _, m := range rec.Marks {
			s.producers[m.Producer] = max(s.producers[m.Producer], m.Seq)
		}
	}
	s.lastSeq.Store(s.mem.last())
	if s.mem.last() < base {
		s.lastSeq.Store(base)
	}
	// A fresh file: the newest old file may end in a torn record, and
	// appending after it would turn a harmless torn tail into corruption.
	if err := s.wal.rotate(); err != nil {
		return fmt.Errorf("store: %w", mapNoSpace(err))
	}
	if len(rep.files) == 0 {
		s.mem.walNum = s.wal.curNum
	}
	s.log.Info("store opened", "dir", s.dir, "segments", len(segs), "wal_records", len(rep.records), "last_seq", s.lastSeq.Load())
	return nil
}

// ---- append ---------------------------------------------------------------

// Append validates and durably writes one batch; it returns after the WAL
// record is fdatasync'ed (possibly together with other writers' batches).
func (s *Store) Append(ctx context.Context, b Batch) (Ack, error) {
	size, err := validateBatch(&b)
	if err != nil {
		return Ack{}, err
	}
	if len(b.Rows) == 0 && b.Producer == "" {
		return Ack{}, nil
	}
	req := &commitReq{batch: b, bytes: size, done: make(chan commitResult, 1)}
	if b.Producer == "" {
		// Encode outside the committer so concurrent writers share the CPU
		// work; the committer only fills in the header.
		req.payload = appendWALRecord(make([]byte, 0, size+walHeaderSize+16), 1, int64(len(b.Rows)), nil, b.Rows)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Ack{}, ErrClosed
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()
	s.appenders.Add(1)
	defer s.appenders.Add(-1)
	select {
	case s.commitCh <- req:
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.ack, r.err
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	}
}

func validateBatch(b *Batch) (int64, error) {
	var total int64
	prev := int64(0)
	for i := range b.Rows {
		r := &b.Rows[i]
		switch {
		case r.Key == "":
			return 0, fmt.Errorf("row %d: key is empty: %w", i, ErrInvalidArgument)
		case len(r.Key) > MaxKeyBytes:
			return 0, fmt.Errorf("row %d: key is %d bytes, limit is %d (MaxKeyBytes): %w", i, len(r.Key), MaxKeyBytes, ErrInvalidArgument)
		case !utf8.ValidString(r.Key):
			return 0, fmt.Errorf("row %d: key %q is not valid UTF-8: %w", i, r.Key, ErrInvalidArgument)
		}
		n := rowBytes(r)
		if n > MaxRowBytes {
			return 0, fmt.Errorf("row %d (key %q): row is %d bytes, limit is %d (MaxRowBytes): %w", i, r.Key, n, MaxRowBytes, ErrInvalidArgument)
		}
		total += n
		if b.Producer != "" {
			if r.Seq <= prev {
				return 0, fmt.Errorf("row %d: producer %q seq %d is not above the previous row's %d; producer seqs must strictly increase: %w", i, b.Producer, r.Seq, prev, ErrInvalidArgument)
			}
			prev = r.Seq
		}
	}
	if total > MaxBatchBytes {
		return 0, fmt.Errorf("batch is %d bytes, limit is %d (MaxBatchBytes): split it: %w", total, MaxBatchBytes, ErrInvalidArgument)
	}
	if b.Producer != "" && len(b.Producer) > MaxKeyBytes {
		return 0, fmt.Errorf("producer name is %d bytes, limit is %d: %w", len(b.Producer), MaxKeyBytes, ErrInvalidArgument)
	}
	return total, nil
}

const maxGroupBytes = 32 << 20

// maxKeptCommitBuf: the committer keeps its group buffer between commits up
// to this capacity.
const maxKeptCommitBuf = 8 << 20

// maxCommitSpins bounds how often the committer yields waiting for more
// concurrent Appends to join a group.
const maxCommitSpins = 20

func (s *Store) commitLoop() {
	defer s.loops.Done()
	var group []*commitReq
	for {
		select {
		case req := <-s.commitCh:
			group = append(group[:0], req)
			bytes := req.bytes
			// Writers acked by the previous commit are usually a few
			// instructions away from enqueueing their next batch; yielding
			// briefly lets them join this group instead of forming a tiny
			// one of their own (a bounded spin, no clock: the simulation's
			// virtual time is unaffected).
			for spins := 0; ; spins++ {
			drain:
				for bytes < maxGroupBytes {
					select {
					case r := <-s.commitCh:
						group = append(group, r)
						bytes += r.bytes
					default:
						break drain
					}
				}
				if spins >= maxCommitSpins || bytes >= maxGroupBytes || int64(len(group)) >= s.appenders.Load() {
					break
				}
				runtime.Gosched()
			}
			stall := s.commit(group)
			clear(group)
			if stall {
				start := s.clk.Now()
				s.stallForFlush()
				s.metrics.stalled(s.clk.Now().Sub(start))
			}
		case <-s.stopCh:
			// Close waited for every in-flight Append, so the channel is
			// empty; nothing is left to fail.
			return
		}
	}
}

// commit writes a group of batches as consecutive records in one write and
// one fdatasync, then publishes them to the memtable and acks them.
// It reports whether memtables are over their bound (the caller stalls,
// outside walMu, which sealing needs).
func (s *Store) commit(group []*commitReq) (stall bool) {
	s.walMu.Lock()
	defer s.walMu.Unlock()

	next := s.lastSeq.Load() + 1
	// One buffer, sized for the whole group up front and reused across
	// commits: growing a fresh buffer by doubling cost a large allocation,
	// its zeroing and page faults, and a re-copy per doubling, all on the
	// single committer between two fdatasyncs (~2.7 ms of a ~10 ms cycle at
	// batch=1000, writers=4 in BenchmarkAppendDurable).
	need := 0
	for _, req := range group {
		if req.batch.Producer == "" {
			need += len(req.payload)
		} else {
			need += int(req.bytes) + walHeaderSize + len(req.batch.Producer) + 64
		}
	}
	if cap(s.commitBuf) < need {
		s.commitBuf = make([]byte, 0, need+need/4)
	}
	buf := s.commitBuf[:0]
	defer func() {
		// Keep a typical group's buffer; let a rare huge one go.
		if cap(buf) > maxKeptCommitBuf {
			s.commitBuf = nil
		} else {
			s.commitBuf = buf[:0]
		}
	}()
	acks := make([]Ack, len(group))
	errs := make([]error, len(group)) // per batch: refused without writing
	pubRows := make([][]Row, len(group))
	overlay := map[string]int64{} // producer marks as of earlier batches in this group
	var marks []ProducerMark
	for i, req := range group {
		b := &req.batch
		if b.Producer == "" {
			first, last := next, next+int64(len(b.Rows))-1
			start := len(buf)
			buf = append(buf, req.payload...)
			patchWALHeader(buf[start:], first, last)
			acks[i] = Ack{First: first, Last: last}
			pubRows[i] = b.Rows
			next = last + 1
			continue
		}
		mark, known := overlay[b.Producer]
		if !known {
			s.mu.Lock()
			mark, known = s.producers[b.Producer]
			s.mu.Unlock()
		}
		if known && b.FirstSeq > mark+1 {
			errs[i] = fmt.Errorf("store: %w: producer %q batch covers seqs from %d but only up to %d are applied; retry it after the earlier batches",
				ErrProducerGap, b.Producer, b.FirstSeq, mark)
			continue
		}
		var keep []Row
		for _, r := range b.Rows {
			if r.Seq > mark {
				keep = append(keep, r)
			}
		}
		newMark := mark
		if len(b.Rows) > 0 {
			newMark = max(newMark, b.Rows[len(b.Rows)-1].Seq)
		}
		newMark = max(newMark, b.LastSeq)
		overlay[b.Producer] = newMark
		if len(keep) == 0 && newMark == mark {
			acks[i] = Ack{ProducerApplied: mark} // pure duplicate: nothing to write
			continue
		}
		first, last := next, next+int64(len(keep))-1
		marks = append(marks[:0], ProducerMark{Producer: b.Producer, Seq: newMark})
		buf = appendWALRecord(buf, first, last, marks, keep)
		acks[i] = Ack{ProducerApplied: newMark}
		if len(keep) > 0 {
			acks[i].First, acks[i].Last = first, last
		}
		pubRows[i] = keep
		next = last + 1
	}

	if len(buf) > 0 {
		start := s.clk.Now()
		err := s.wal.write(buf)
		s.metrics.observeFsync(s.clk.Now().Sub(start))
		if err != nil {
			err = classifyWriteErr(err)
			s.log.Error("wal append failed; batches not acknowledged", "err", err, "batches", len(group))
			s.metrics.failed("wal_append")
			for _, req := range group {
				req.done <- commitResult{err: err}
			}
			return false
		}
	}

	// Publish: seqs must be assigned to the rows before they become visible.
	s.mu.Lock()
	var rowsN, bytesN int64
	for i, req := range group {
		rows := pubRows[i]
		if len(rows) > 0 {
			s.mem.add(rows) // assigns acks[i].First.. (seqs are dense)
			rowsN += int64(len(rows))
			bytesN += req.bytes
		}
		if p := req.batch.Producer; p != "" && errs[i] == nil {
			s.producers[p] = max(s.producers[p], acks[i].ProducerApplied)
		}
	}
	if next-1 != s.lastSeq.Load() {
		s.lastSeq.Store(next - 1)
		close(s.changed)
		s.changed = make(chan struct{})
	}
	memBytes := s.mem.bytes
	held := memBytes
	for _, m := range s.sealed {
		held += m.bytes
	}
	s.mu.Unlock()
	s.metrics.appended(len(group), rowsN, bytesN)
	for i, req := range group {
		req.done <- commitResult{ack: acks[i], err: errs[i]}
	}
	if memBytes >= s.opts.MemtableBytes {
		select {
		case s.flushKick <- struct{}{}:
		default:
		}
	}
	if s.opts.Background && held >= maxHeldMemtables*s.opts.MemtableBytes {
		stall = true
	}
	return stall
}

// maxHeldMemtables bounds memory when ingest outruns flushing: once the
// memtables hold this many MemtableBytes, the committer (and so every
// Append) waits for the background flush. Without Background the caller
// drives Flush and nothing waits.
const maxHeldMemtables = 3

func (s *Store) stallForFlush() {
	for {
		s.mu.Lock()
		held := s.mem.bytes
		for _, m := range s.sealed {
			held += m.bytes
		}
		flushed := s.flushed
		closed := s.closed
		s.mu.Unlock()
		if held < maxHeldMemtables*s.opts.MemtableBytes || closed {
			return
		}
		select {
		case s.flushKick <- struct{}{}:
		default:
		}
		select {
		case <-flushed:
		case <-s.stopCh:
			return
		}
	}
}

func classifyWriteErr(err error) error {
	if errors.Is(err, vfs.ErrNoSpace) {
		return fmt.Errorf("store: append not written: %w (%w)", ErrNoSpace, err)
	}
	return fmt.Errorf("store: append not written: %w", err)
}

func mapNoSpace(err error) error {
	if errors.Is(err, vfs.ErrNoSpace) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// ---- small accessors -------------------------------------------------------

// LastSeq is the highest acked seq (0 for an empty store).
func (s *Store) LastSeq() int64 { return s.lastSeq.Load() }

// Changed returns a channel that is closed at the next append that assigns
// new seqs (for long-poll and the relay). Call it again after it fires.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// ProducerApplied returns an idempotent producer's durable high-water mark.
func (s *Store) ProducerApplied(producer string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.producers[producer]
	return v, ok
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
	st.WALBytes = s.walBytes.Load()
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
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// patchWALHeader sets the seq range of an encoded record and recomputes its
// checksum (rows are encoded before their seqs are known).
func patchWALHeader(rec []byte, first, last int64) {
	binary.LittleEndian.PutUint64(rec[8:], uint64(first))
	binary.LittleEndian.PutUint64(rec[16:], uint64(last))
	binary.LittleEndian.PutUint32(rec[0:], crc32.Checksum(rec[4:], castagnoli))
}
