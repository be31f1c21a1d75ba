package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"time"
	"unicode/utf8"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// The write path: Append validates and queues a batch; one committer
// goroutine takes every queued batch, assigns seqs, writes them as
// consecutive WAL records with one write and one fdatasync, publishes them
// to the memtable and acks each caller.

// commitReq is one queued batch and the channel its caller waits on.
type commitReq struct {
	batch Batch
	// repl, when set, is a record received from a primary (ApplyReplicated):
	// written with its own seqs and marks, never renumbered or deduped.
	repl    *Record
	payload []byte // pre-encoded rows for non-producer batches
	bytes   int64
	done    chan commitResult
}

type commitResult struct {
	ack Ack
	err error
}

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
	if b.Producer == "" {
		// Encode outside the committer so concurrent writers share the CPU
		// work; the committer only fills in the header.
		req := &commitReq{batch: b, bytes: size, done: make(chan commitResult, 1)}
		req.payload = appendWALRecord(make([]byte, 0, size+walHeaderSize+16), 1, int64(len(b.Rows)), nil, b.Rows)
		return s.commitOne(ctx, req)
	}
	// A batch that overtook an earlier one of its producer still inside
	// Append waits for it instead of being refused (producerorder.go).
	defer s.arrivals.arrive(b.Producer, b.FirstSeq)()
	budget := maxOrderWaits
	var deadline clock.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	for {
		ack, err := s.commitOne(ctx, &commitReq{batch: b, bytes: size, done: make(chan commitResult, 1)})
		if err == nil || !s.awaitEarlier(ctx, &b, err, &budget, &deadline) {
			return ack, err
		}
	}
}

// commitOne hands req to the committer and waits for its result.
func (s *Store) commitOne(ctx context.Context, req *commitReq) (Ack, error) {
	release, err := s.enqueue(ctx, req)
	defer release()
	if err != nil {
		return Ack{}, err
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
		if err := r.Attributes.Check(); err != nil {
			return 0, fmt.Errorf("row %d (key %q): %w", i, r.Key, err)
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
	if b.Producer != "" && len(b.Producer) > MaxProducerBytes {
		return 0, fmt.Errorf("producer name is %d bytes, limit is %d (MaxProducerBytes): %w", len(b.Producer), MaxProducerBytes, ErrInvalidArgument)
	}
	return total, nil
}

// maxGroupBytes bounds what the committer takes into one group, and what it
// writes ahead of the fdatasync in flight.
const maxGroupBytes = 32 << 20

// maxKeptCommitBuf: the committer keeps its group buffer between commits up
// to this capacity.
const maxKeptCommitBuf = 8 << 20

// maxCommitSpins bounds how often the committer yields waiting for more
// concurrent Appends to join a group.
const maxCommitSpins = 20

// pipelineMinBytes decides, when an fdatasync returns and batches written
// during it are waiting, whether their sync starts at once (before the
// returned group is published and acked) or after the writers just acked
// have had a chance to join. A sync of little data costs about the same
// whatever it holds, so delaying it to gather rows wins; a sync of a lot of
// data costs its bytes, so keeping the disk busy wins.
const pipelineMinBytes = 256 << 10

// walWriteBehind off makes the committer wait for each fdatasync before it
// takes the next batches, as before writes overlapped syncs. Only a
// benchmark turns it off, to measure in one process what overlapping gains.
var walWriteBehind = true

// committer is the state of the commit goroutine: batches move from
// commitCh to written (seqs assigned, records written to the WAL file) to
// syncing (covered by the fdatasync in flight) to published (in the
// memtable, acked). A group is acked only after an fdatasync that started
// after its write returned; groups are published in the order they were
// written, so seqs stay dense and visible only once durable.
type committer struct {
	s *Store
	// held: the committer holds s.walMu, which it does exactly while some
	// group is written but not yet published.
	held bool
	// next is the seq of the next row written.
	next int64
	// overlay is the producer marks of written, unpublished batches: what
	// dedupe must see on top of s.producers.
	overlay groupMarks
	written []*commitGroup
	// writtenBytes is what written holds in the WAL.
	writtenBytes int64
	syncing      []*commitGroup
	inSync       bool
	sync         walSync
	syncStart    time.Time
	syncDone     chan error
	// stall: memtables are over their bound; once the pipeline is empty the
	// committer waits for a flush (outside walMu, which sealing needs).
	stall bool
	batch []*commitReq // reused by gather
}

// commitGroup is the batches written with one write.
type commitGroup struct {
	reqs     []*commitReq
	acks     []Ack
	errs     []error // per batch: refused without writing
	pubRows  [][]Row
	recMarks [][]ProducerMark // the marks written in batch i's record, durable with seq recLast[i]
	recLast  []int64
	marked   []overlayMark
	bytes    int64 // written to the WAL
	last     int64 // the highest seq assigned so far, as of this group
}

// overlayMark is a producer mark a group put into the committer's overlay.
type overlayMark struct {
	producer string
	mark     int64
	fresh    bool // the producer was new to the store
}

func (s *Store) commitLoop() {
	defer s.loops.Done()
	if s.wal.kick != nil {
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.prewriteLoop(s.wal.kick, s.stopCh)
		}()
	}
	c := &committer{s: s, syncDone: make(chan error, 1)}
	for {
		in := s.commitCh
		if c.draining() || (c.inSync && !walWriteBehind) {
			in = nil
		}
		var synced <-chan error
		var stop <-chan struct{}
		if c.inSync {
			synced = c.syncDone
		} else if c.idle() {
			// Close waited for every in-flight Append, and nothing is
			// written and unpublished: nothing is left to fail.
			stop = s.stopCh
		}
		select {
		case req := <-in:
			c.take(req)
		case err := <-synced:
			c.synced(err)
		case <-stop:
			return
		}
		if c.idle() && c.held {
			c.held = false
			s.walMu.Unlock()
			if c.stall {
				c.stall = false
				start := s.clk.Now()
				s.stallForFlush()
				s.metrics.stalled(s.clk.Now().Sub(start))
			}
		}
	}
}

func (c *committer) idle() bool { return !c.inSync && len(c.written) == 0 }

// draining: take no new batches until what is written is published (a seal
// or trim waits for walMu, memtables are full, enough is written ahead, or
// the WAL is to move to a recycled file).
func (c *committer) draining() bool {
	return c.held && (c.stall || c.writtenBytes >= maxGroupBytes || c.s.walMu.wanted() || c.s.wal.switchWanted())
}

// take writes req and whatever else is queued as one group, and starts its
// fdatasync unless one is running (the group then waits in written).
func (c *committer) take(req *commitReq) {
	s := c.s
	if !c.held {
		s.walMu.Lock()
		c.held = true
		c.next = s.lastSeq.Load() + 1
		c.overlay = groupMarks{}
		if s.wal.switchWanted() {
			// Nothing is in flight: move to the pool file, whose syncs are
			// cheaper (walpool.go). The memtable may span both files.
			if err := s.wal.rotate(); err != nil {
				s.log.Warn("wal: switching to a recycled file failed; appending to the current one", "err", err)
			}
			s.walBytes.Store(s.wal.bytes())
		}
	}
	g := c.write(c.gather(req))
	if g == nil || c.inSync {
		return
	}
	if len(c.written) > 0 {
		c.startSync()
	}
}

// gather collects queued batches for one group, starting with first (nil:
// none yet). With no fdatasync running it yields a few times for writers
// that are about to enqueue: writers acked by the previous commit are
// usually a few instructions away from their next batch, and a group of
// their own would cost a sync each (a bounded spin, no clock: the
// simulation's virtual time is unaffected). With a sync running there is
// nothing to wait for: what arrives meanwhile is written at once.
func (c *committer) gather(first *commitReq) []*commitReq {
	group := c.batch[:0]
	var bytes int64
	if first != nil {
		group = append(group, first)
		bytes = first.bytes
	}
	waiting := 0
	for _, g := range c.written {
		waiting += len(g.reqs)
	}
	for spins := 0; ; spins++ {
	drain:
		for bytes < maxGroupBytes {
			select {
			case r := <-c.s.commitCh:
				group = append(group, r)
				bytes += r.bytes
			default:
				break drain
			}
		}
		if c.inSync || spins >= maxCommitSpins || bytes >= maxGroupBytes || int64(len(group)+waiting) >= c.s.appenders.Load() {
			break
		}
		runtime.Gosched()
	}
	c.batch = group
	return group
}

// startSync starts the fdatasync that covers every written group.
func (c *committer) startSync() {
	c.syncing, c.written = c.written, nil
	c.writtenBytes = 0
	c.inSync = true
	c.syncStart = c.s.clk.Now()
	c.sync = c.s.wal.startSync(c.syncDone)
}

// synced handles the end of the running fdatasync: on success its groups
// are published and acked, on failure they and everything written after
// them fail.
func (c *committer) synced(err error) {
	s := c.s
	c.inSync = false
	done := c.syncing
	c.syncing = nil
	err = s.wal.syncedTo(c.sync, err)
	s.metrics.observeFsync(s.clk.Now().Sub(c.syncStart))
	if err != nil {
		c.fail(append(done, c.written...), err)
		return
	}
	if len(c.written) > 0 && (c.writtenBytes >= pipelineMinBytes || c.draining()) {
		c.startSync()
	}
	c.publish(done)
	if len(c.written) > 0 && !c.inSync {
		if !c.draining() {
			if more := c.gather(nil); len(more) > 0 {
				if c.write(more) == nil {
					return
				}
			}
		}
		c.startSync()
	}
}

// write assigns seqs to a group, encodes it and writes it to the WAL file
// without syncing. A group with nothing to write (duplicates, refusals)
// joins the groups it must not be acked before. It returns nil when the
// write failed (the group and every unpublished one have failed).
func (c *committer) write(reqs []*commitReq) *commitGroup {
	s := c.s
	g := &commitGroup{
		reqs:     append([]*commitReq(nil), reqs...),
		acks:     make([]Ack, len(reqs)),
		errs:     make([]error, len(reqs)),
		pubRows:  make([][]Row, len(reqs)),
		recMarks: make([][]ProducerMark, len(reqs)),
		recLast:  make([]int64, len(reqs)),
	}
	clear(reqs)
	if err := s.wal.ready(); err != nil {
		// No file to write to: only after a failure, so nothing is in flight.
		c.fail([]*commitGroup{g}, err)
		return nil
	}
	// Records say how far past the synced part of the file they start
	// (walrecord.go, back).
	base := s.wal.end() - s.wal.synced
	buf := c.encode(g, base)
	g.last = c.next - 1
	if len(buf) == 0 {
		switch {
		case len(c.written) > 0:
			c.written = append(c.written, g)
		case c.inSync:
			c.syncing = append(c.syncing, g)
		default:
			c.publish([]*commitGroup{g})
		}
		return g
	}
	err := s.wal.append(buf)
	if cap(buf) > maxKeptCommitBuf {
		// Keep a typical group's buffer; let a rare huge one go.
		s.commitBuf = nil
	} else {
		s.commitBuf = buf[:0]
	}
	if err != nil {
		c.failWrite(g, err)
		return nil
	}
	g.bytes = int64(len(buf))
	c.written = append(c.written, g)
	c.writtenBytes += g.bytes
	return g
}

// encode assigns seqs and producer marks to g's batches and encodes their
// records into the committer's buffer, the first starting base bytes past
// the synced part of the WAL file.
func (c *committer) encode(g *commitGroup, base int64) []byte {
	s := c.s
	// One buffer, sized for the whole group up front and reused across
	// commits: growing a fresh buffer by doubling cost a large allocation,
	// its zeroing and page faults, and a re-copy per doubling, all on the
	// single committer between two fdatasyncs (~2.7 ms of a ~10 ms cycle at
	// batch=1000, writers=4 in BenchmarkAppendDurable).
	need := 0
	for _, req := range g.reqs {
		if req.repl != nil {
			need += int(req.bytes) + walHeaderSize + 72
			for _, m := range req.repl.Marks {
				need += len(m.Producer) + 20
			}
		} else if req.batch.Producer == "" {
			need += len(req.payload)
		} else {
			need += int(req.bytes) + walHeaderSize + len(req.batch.Producer) + 72
		}
	}
	if cap(s.commitBuf) < need {
		s.commitBuf = make([]byte, 0, need+need/4)
	}
	buf := s.commitBuf[:0]
	back := func() uint32 { return uint32(base + int64(len(buf))) }
	num := s.wal.curNum
	var marks []ProducerMark
	for i, req := range g.reqs {
		if rec := req.repl; rec != nil {
			if err := replicaSeqErr(rec, c.next); err != nil {
				g.errs[i] = err
				continue
			}
			if len(rec.Rows) == 0 && len(rec.Marks) == 0 {
				continue
			}
			buf = encodeWALRecord(buf, rec.First, rec.Last, back(), num, rec.Marks, rec.Rows)
			g.pubRows[i] = rec.Rows
			g.recMarks[i], g.recLast[i] = rec.Marks, rec.Last
			c.next = rec.Last + 1
			continue
		}
		b := &req.batch
		if b.Producer == "" {
			first, last := c.next, c.next+int64(len(b.Rows))-1
			start, at := len(buf), back()
			buf = append(buf, req.payload...)
			patchWALHeader(buf[start:], first, last, at, num)
			g.acks[i] = Ack{First: first, Last: last}
			g.pubRows[i] = b.Rows
			c.next = last + 1
			continue
		}
		fresh := c.overlay.fresh
		keep, mark, newMark, err := s.dedupe(b, &c.overlay)
		if err != nil {
			g.errs[i] = err
			continue
		}
		g.marked = append(g.marked, overlayMark{producer: b.Producer, mark: newMark, fresh: c.overlay.fresh > fresh})
		if len(keep) == 0 && newMark == mark {
			g.acks[i] = Ack{ProducerApplied: mark} // pure duplicate: nothing to write
			continue
		}
		first, last := c.next, c.next+int64(len(keep))-1
		marks = append(marks[:0], ProducerMark{Producer: b.Producer, Seq: newMark})
		buf = encodeWALRecord(buf, first, last, back(), num, marks, keep)
		g.recMarks[i], g.recLast[i] = []ProducerMark{marks[0]}, last
		g.acks[i] = Ack{ProducerApplied: newMark}
		if len(keep) > 0 {
			g.acks[i].First, g.acks[i].Last = first, last
		}
		g.pubRows[i] = keep
		c.next = last + 1
	}
	return buf
}

// failWrite handles a failed write of g: the running fdatasync (of bytes
// before g's) is waited for and its groups published if it succeeds; g and
// every other written group fail, and the file is abandoned.
func (c *committer) failWrite(g *commitGroup, err error) {
	s := c.s
	if c.inSync {
		serr := <-c.syncDone
		c.inSync = false
		done := c.syncing
		c.syncing = nil
		serr = s.wal.syncedTo(c.sync, serr)
		s.metrics.observeFsync(s.clk.Now().Sub(c.syncStart))
		if serr != nil {
			c.fail(append(append(done, c.written...), g), serr)
			return
		}
		c.publish(done)
	}
	s.wal.abandon()
	c.fail(append(c.written, g), err)
}

// fail answers every batch of groups (none of them synced) with err. Their
// seqs are given out again, so nothing unpublished may remain.
func (c *committer) fail(groups []*commitGroup, err error) {
	s := c.s
	err = classifyWriteErr(err)
	n := 0
	for _, g := range groups {
		n += len(g.reqs)
	}
	s.log.Error("wal append failed; batches not acknowledged", "err", err, "batches", n)
	s.metrics.failed("wal_append")
	for _, g := range groups {
		for _, req := range g.reqs {
			req.done <- commitResult{err: err}
		}
	}
	c.written, c.writtenBytes = nil, 0
	c.next = s.lastSeq.Load() + 1
	c.overlay = groupMarks{}
}

// publish puts synced groups into the memtable, in the order they were
// written, and acks their batches.
func (c *committer) publish(groups []*commitGroup) {
	s := c.s
	nowMS := s.clk.Now().UnixMilli()
	s.mu.Lock()
	var rowsN, bytesN int64
	batches := 0
	wrote := false
	last := s.lastSeq.Load()
	for _, g := range groups {
		batches += len(g.reqs)
		wrote = wrote || g.bytes > 0
		last = max(last, g.last)
		for i, req := range g.reqs {
			// Seqs must be assigned to the rows before they become visible.
			rows := g.pubRows[i]
			if len(rows) > 0 {
				s.mem.add(rows) // assigns acks[i].First.. (seqs are dense)
				rowsN += int64(len(rows))
				bytesN += req.bytes
			}
			if p := req.batch.Producer; p != "" && g.errs[i] == nil {
				s.producers[p] = max(s.producers[p], g.acks[i].ProducerApplied)
				s.producerSeen[p] = nowMS
			}
			for _, m := range g.recMarks[i] {
				if req.repl != nil {
					s.producers[m.Producer] = max(s.producers[m.Producer], m.Seq)
					s.producerSeen[m.Producer] = nowMS
				}
				s.markSeq++
				s.mem.addMark(s.markSeq, g.recLast[i], m)
			}
		}
	}
	if wrote {
		close(s.tailCh)
		s.tailCh = make(chan struct{})
	}
	if last != s.lastSeq.Load() {
		s.lastSeq.Store(last)
		close(s.changed)
		s.changed = make(chan struct{})
	}
	memBytes := s.mem.bytes
	held := memBytes
	for _, m := range s.sealed {
		held += m.bytes
	}
	s.mu.Unlock()
	// s.producers has these marks now; the overlay keeps only those of
	// batches still unpublished.
	for _, g := range groups {
		for _, m := range g.marked {
			if c.overlay.marks[m.producer] == m.mark {
				delete(c.overlay.marks, m.producer)
			}
			if m.fresh {
				c.overlay.fresh--
			}
		}
	}
	s.metrics.appended(batches, rowsN, bytesN)
	for _, g := range groups {
		for i, req := range g.reqs {
			req.done <- commitResult{ack: g.acks[i], err: g.errs[i]}
		}
	}
	if memBytes >= s.opts.MemtableBytes {
		select {
		case s.flushKick <- struct{}{}:
		default:
		}
	}
	if s.opts.Background && held >= maxHeldMemtables*s.opts.MemtableBytes {
		c.stall = true
	}
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

// patchWALHeader sets the seq range, back and wal (walrecord.go) of an encoded record
// and recomputes its checksum (rows are encoded before their seqs and their
// place in a group commit are known).
func patchWALHeader(rec []byte, first, last int64, back uint32, wal uint64) {
	binary.LittleEndian.PutUint64(rec[8:], uint64(first))
	binary.LittleEndian.PutUint64(rec[16:], uint64(last))
	binary.LittleEndian.PutUint32(rec[walHeaderSize:], back)
	binary.LittleEndian.PutUint64(rec[walHeaderSize+walBackSize:], wal)
	binary.LittleEndian.PutUint32(rec[0:], crc32.Checksum(rec[4:], castagnoli))
}

// enqueue hands req to the committer. Until the returned release runs the
// caller counts as in flight (Close waits for it) and as an appender (the
// committer's group-commit spin sees it); call release once req's result
// has been taken, also when enqueue fails.
func (s *Store) enqueue(ctx context.Context, req *commitReq) (release func(), err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return func() {}, ErrClosed
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	s.appenders.Add(1)
	release = func() {
		s.appenders.Add(-1)
		s.inflight.Done()
	}
	select {
	case s.commitCh <- req:
		return release, nil
	case <-ctx.Done():
		return release, ctx.Err()
	}
}
