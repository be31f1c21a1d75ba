package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
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
		if req.repl != nil {
			need += int(req.bytes) + walHeaderSize + 64
			for _, m := range req.repl.Marks {
				need += len(m.Producer) + 20
			}
		} else if req.batch.Producer == "" {
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
	overlay := groupMarks{} // producer marks as of earlier batches in this group
	var marks []ProducerMark
	// recMarks[i] are the marks written in batch i's record, durable with
	// seq recLast[i].
	recMarks := make([][]ProducerMark, len(group))
	recLast := make([]int64, len(group))
	for i, req := range group {
		if rec := req.repl; rec != nil {
			if err := replicaSeqErr(rec, next); err != nil {
				errs[i] = err
				continue
			}
			if len(rec.Rows) == 0 && len(rec.Marks) == 0 {
				continue
			}
			buf = encodeWALRecord(buf, rec.First, rec.Last, uint32(len(buf)), rec.Marks, rec.Rows)
			pubRows[i] = rec.Rows
			recMarks[i], recLast[i] = rec.Marks, rec.Last
			next = rec.Last + 1
			continue
		}
		b := &req.batch
		if b.Producer == "" {
			first, last := next, next+int64(len(b.Rows))-1
			start := len(buf)
			buf = append(buf, req.payload...)
			patchWALHeader(buf[start:], first, last, start)
			acks[i] = Ack{First: first, Last: last}
			pubRows[i] = b.Rows
			next = last + 1
			continue
		}
		keep, mark, newMark, err := s.dedupe(b, &overlay)
		if err != nil {
			errs[i] = err
			continue
		}
		if len(keep) == 0 && newMark == mark {
			acks[i] = Ack{ProducerApplied: mark} // pure duplicate: nothing to write
			continue
		}
		first, last := next, next+int64(len(keep))-1
		marks = append(marks[:0], ProducerMark{Producer: b.Producer, Seq: newMark})
		buf = encodeWALRecord(buf, first, last, uint32(len(buf)), marks, keep)
		recMarks[i], recLast[i] = []ProducerMark{marks[0]}, last
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
	nowMS := s.clk.Now().UnixMilli()
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
			s.producerSeen[p] = nowMS
		}
		for _, m := range recMarks[i] {
			if req.repl != nil {
				s.producers[m.Producer] = max(s.producers[m.Producer], m.Seq)
				s.producerSeen[m.Producer] = nowMS
			}
			s.markSeq++
			s.mem.addMark(s.markSeq, recLast[i], m)
		}
	}
	if len(buf) > 0 {
		close(s.tailCh)
		s.tailCh = make(chan struct{})
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

// patchWALHeader sets the seq range and group offset of an encoded record
// and recomputes its checksum (rows are encoded before their seqs and their
// place in a group commit are known).
func patchWALHeader(rec []byte, first, last int64, back int) {
	binary.LittleEndian.PutUint64(rec[8:], uint64(first))
	binary.LittleEndian.PutUint64(rec[16:], uint64(last))
	binary.LittleEndian.PutUint32(rec[walHeaderSize:], uint32(back))
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
