package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/store"
)

// pending is one batch of a round: the rows read for one seq range, the
// rows of it that will be pushed, and what happened to the push.
type pending struct {
	batch    Batch
	filtered []int64 // seqs skipped by the loop guard
	gapFirst int64   // seqs gapFirst..gapLast were missing at the source
	gapLast  int64
	ack      store.Ack
	err      error
}

// progress is how far a round got: every seq <= covered is settled.
type progress struct {
	covered      int64
	forwarded    int64
	deadLettered int64
}

// round reads up to InFlight batches after the watermark, pushes them, and
// commits the contiguous settled prefix to the watermark. more reports that
// rows up to end remain.
func (f *Forwarder) round(ctx context.Context, end int64) (more bool, err error) {
	var batches []*pending
	after := f.wm.Cursor
	inFlight := f.cfg.InFlight
	if !f.primed || !f.refusesGaps {
		inFlight = 1
	}
	for len(batches) < inFlight {
		rows, err := f.cfg.Source.Read(ctx, after, f.cfg.BatchRows, f.cfg.BatchBytes)
		if err != nil {
			if len(batches) == 0 {
				return false, sourceError{fmt.Errorf("read source after seq %d: %w", after, err)}
			}
			// Push what was read; the next round reads again.
			f.log.Warn("reading the source failed; pushing the batches already read", "after", after, "err", err)
			more = false
			break
		}
		if len(rows) == 0 {
			more = false
			break
		}
		p, err := f.makeBatch(after, rows)
		if err != nil {
			return false, sourceError{err}
		}
		if len(batches) == 0 {
			// Only the first batch of a round may reach back: the others
			// follow a batch that is in flight with them.
			p.batch.FirstSeq = f.rangeStart(after)
		}
		batches = append(batches, p)
		after = p.batch.LastSeq
		more = after < end
		if !more {
			break
		}
	}
	if len(batches) == 0 {
		return false, nil
	}
	// Nothing pushed in this round can make the target's mark pass the
	// last batch's end; a mark past it was put there by someone else.
	f.sentMark = max(f.sentMark, batches[len(batches)-1].batch.LastSeq)
	f.pushAll(ctx, batches)

	// Settle batches in seq order; the watermark may only move over a
	// contiguous prefix of settled seqs.
	prog := progress{covered: f.wm.Cursor}
	var filtered, gap int64
	var stop error
	for i, p := range batches {
		if p.err != nil && i > 0 && retryable(p.err) {
			// Its predecessors are settled now; an earlier failure may have
			// been caused by them (an out-of-order arrival), so retry once
			// before backing off.
			p.batch.FirstSeq = f.rangeStart(prog.covered)
			p.ack, p.err = f.push(ctx, p.batch, nil)
		}
		start := prog.covered
		stop = f.settle(ctx, p, &prog)
		filtered += countUpTo(p.filtered, prog.covered)
		if p.gapLast > 0 && prog.covered >= p.gapLast && start < p.gapFirst {
			gap += p.gapLast - p.gapFirst + 1
		}
		if stop != nil {
			break
		}
	}
	if prog.covered > f.wm.Cursor {
		if err := f.commit(prog, filtered, gap); err != nil {
			return false, err
		}
	}
	if stop != nil {
		var ahead *targetAheadError
		if errors.As(stop, &ahead) {
			return false, f.targetAhead(ahead.mark, ahead.sent, "the end of the last batch it sent")
		}
		if connect.CodeOf(stop) == connect.CodeAborted {
			// The target refused a batch as overtaking even after its
			// predecessors settled: its mark is not where the relay
			// thinks (it lost rows, or another relay shares the producer
			// id). Ask it again before the next round; resolve reports a
			// mark that went back.
			f.started = false
		}
		return false, stop
	}
	return more, nil
}

// makeBatch turns the rows read after `after` into a batch, applying the
// loop guard and noting any seqs the source no longer has.
func (f *Forwarder) makeBatch(after int64, rows []store.Row) (*pending, error) {
	p := &pending{}
	prev := after
	kept := make([]store.Row, 0, len(rows))
	for _, r := range rows {
		if r.Seq <= prev {
			return nil, fmt.Errorf("source returned seq %d after seq %d: rows must be in increasing seq order after the cursor", r.Seq, prev)
		}
		prev = r.Seq
		if r.Cluster != "" && r.Cluster != f.cfg.Cluster {
			p.filtered = append(p.filtered, r.Seq)
			continue
		}
		kept = append(kept, r)
	}
	if rows[0].Seq > after+1 {
		p.gapFirst, p.gapLast = after+1, rows[0].Seq-1
		f.log.Warn("source no longer has rows the relay had not forwarded (deleted by retention); they are lost to the target",
			"first_seq", p.gapFirst, "last_seq", p.gapLast)
	}
	p.batch = Batch{
		Cluster:  f.cfg.Cluster,
		FirstSeq: after + 1,
		LastSeq:  rows[len(rows)-1].Seq,
		Rows:     kept,
	}
	if !f.cfg.NonIdempotent {
		p.batch.Producer = f.cfg.Producer
	}
	return p, nil
}

// pushAll pushes every batch that has rows: inline when there is one (no
// goroutine, fully deterministic), concurrently otherwise. All pushes have
// returned when it returns.
//
// Concurrent pushes start in seq order: each once its predecessor has been
// sent (SentSink) or has returned. A push the target refused as
// overtaking (aborted) while its predecessors were still in flight is
// sent again as soon as they have all been applied, while the rest of the
// round is still in flight; round retries whatever still failed once
// they are settled.
func (f *Forwarder) pushAll(ctx context.Context, batches []*pending) {
	if len(batches) == 1 {
		p := batches[0]
		if len(p.batch.Rows) > 0 {
			p.ack, p.err = f.push(ctx, p.batch, nil)
		}
		return
	}
	_, staggered := f.cfg.Sink.(SentSink)
	var wg sync.WaitGroup
	// go_ closes when batch i's successor may start; done when batch i's
	// push (and its retry) has returned.
	var prevGo, prevDone <-chan struct{}
	var prev *pending
	applied := true // every earlier batch of the round was pushed and applied
	for _, p := range batches {
		if len(p.batch.Rows) == 0 {
			// Not pushed: a later batch cannot be retried before round
			// settles this one (its range may have to reach back).
			applied = false
			continue
		}
		goNext, done := make(chan struct{}), make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(goNext) }) }
		wait, predDone, pred, retryAfter := prevGo, prevDone, prev, applied
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			defer release()
			if staggered && wait != nil {
				select {
				case <-wait:
				case <-ctx.Done():
				}
			}
			var sent func()
			if staggered {
				sent = release
			}
			p.ack, p.err = f.push(ctx, p.batch, sent)
			if p.err != nil && pred != nil && retryAfter && connect.CodeOf(p.err) == connect.CodeAborted {
				<-predDone
				if pred.err == nil && ctx.Err() == nil {
					p.ack, p.err = f.push(ctx, p.batch, nil)
				}
			}
		}()
		prevGo, prevDone, prev = goNext, done, p
	}
	wg.Wait()
}

// rangeStart is the FirstSeq for a batch whose rows follow seq `after`: it
// reaches back over seqs the target never saw (dead-lettered or filtered),
// down to the target's known mark, so the target sees no gap.
func (f *Forwarder) rangeStart(after int64) int64 {
	if f.markKnown && f.targetMark < after {
		return f.targetMark + 1
	}
	return after + 1
}

// acked notes a batch the target applied: its mark is now at least the
// batch's LastSeq.
func (f *Forwarder) acked(b Batch) {
	f.primed = true
	f.deadRun = 0
	if b.Producer != "" {
		f.targetMark = max(f.targetMark, b.LastSeq)
		f.markKnown = true
	}
}

// push sends one batch, as several in order when it skips more seqs than
// the target lets one batch skip (skipPieces); it succeeds once they all
// did, so the target's mark is then at least b.LastSeq. It may run
// concurrently with other pushes of the round, so it only reads Forwarder
// state. sent, if set, is called once the last piece has been sent
// (SentSink).
func (f *Forwarder) push(ctx context.Context, b Batch, sent func()) (store.Ack, error) {
	pieces := skipPieces(b)
	var ack store.Ack
	for i, p := range pieces {
		if i > 0 {
			if err := ctx.Err(); err != nil {
				return ack, err
			}
		}
		var a store.Ack
		var err error
		if ss, ok := f.cfg.Sink.(SentSink); ok && sent != nil && i == len(pieces)-1 {
			a, err = ss.PushSent(ctx, p, sent)
		} else {
			a, err = f.cfg.Sink.Push(ctx, p)
		}
		if err != nil && len(p.Rows) == 0 && classify(err) == ClassInvalidArgument {
			return ack, markRefused(p, err)
		}
		if err != nil {
			if len(pieces) > 1 {
				return ack, fmt.Errorf("push seqs %d..%d (%d rows, part %d of %d of seqs %d..%d) to %s: %w",
					p.FirstSeq, p.LastSeq, len(p.Rows), i+1, len(pieces), b.FirstSeq, b.LastSeq, f.cfg.Target, err)
			}
			return ack, fmt.Errorf("push seqs %d..%d (%d rows) to %s: %w", b.FirstSeq, b.LastSeq, len(b.Rows), f.cfg.Target, err)
		}
		if b.Producer != "" && a.ProducerApplied > f.sentMark {
			// The target may have dropped these rows as already applied:
			// the batch is not settled.
			return a, &targetAheadError{mark: a.ProducerApplied, sent: f.sentMark}
		}
		if ack.First == 0 {
			ack.First = a.First
		}
		ack.Last = max(ack.Last, a.Last)
		ack.ProducerApplied = a.ProducerApplied
	}
	return ack, nil
}

// settle accounts for one pushed batch: on success it is covered; on
// invalid_argument it is split until the offending rows are isolated and
// dead-lettered; any other error stops the round. prog.covered only ever
// moves over a contiguous settled prefix.
func (f *Forwarder) settle(ctx context.Context, p *pending, prog *progress) error {
	b := p.batch
	if len(b.Rows) == 0 || p.err == nil {
		if len(b.Rows) > 0 {
			f.acked(b)
		}
		prog.covered = b.LastSeq
		prog.forwarded += int64(len(b.Rows))
		return nil
	}
	if !blamesRows(p.err) {
		return p.err
	}
	f.countFailure(ClassInvalidArgument)
	return f.isolate(ctx, b, p.err, prog)
}

// commit makes the round's progress durable and only then reports it.
func (f *Forwarder) commit(prog progress, filtered, gap int64) error {
	next := f.wm
	next.Cursor = prog.covered
	next.Forwarded += prog.forwarded
	next.DeadLettered += prog.deadLettered
	next.Filtered += filtered
	next.SourceGap += gap
	next.UpdatedUnixMS = f.cfg.Clock.Now().UnixMilli()
	if f.markKnown {
		next.TargetApplied = max(next.TargetApplied, f.targetMark)
	}
	if err := writeWatermark(f.cfg.FS, f.cfg.StatePath, next); err != nil {
		// The target has the rows; the next round re-sends them and an
		// idempotent target drops them.
		return stateError{err}
	}
	f.wm = next
	f.m.forwarded.Add(float64(prog.forwarded))
	f.m.deadLettered.Add(float64(prog.deadLettered))
	f.m.filtered.Add(float64(filtered))
	f.m.sourceGap.Add(float64(gap))
	f.m.watermark.Set(float64(next.Cursor))
	if prog.forwarded > 0 {
		// The target is answering again: the next failure starts a fresh
		// backoff.
		f.attempts = 0
		now := f.cfg.Clock.Now()
		f.lastSuccess = now
		f.m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	}
	if f.cfg.Pin != nil {
		f.cfg.Pin(next.Cursor)
	}
	f.setStatus(func(s *Status) {
		s.fromWatermark(next)
		s.LastSuccess = f.lastSuccess
	})
	if prog.forwarded > 0 && f.cfg.TargetIsSource != nil && f.cfg.TargetIsSource() {
		f.stuck = fmt.Errorf("%w: rows pushed to %s arrived in this store (it now knows producer %q); point --relay-address at the global finelogd",
			ErrTargetIsSource, f.cfg.Target, f.cfg.Producer)
		return f.stuck
	}
	return nil
}

func countUpTo(seqs []int64, limit int64) int64 {
	var n int64
	for _, s := range seqs {
		if s <= limit {
			n++
		}
	}
	return n
}
