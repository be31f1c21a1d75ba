package relay

import (
	"context"
	"errors"
	"fmt"

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

// round pushes the rows after the watermark up to end with up to InFlight
// batches in flight, and commits the contiguous settled prefix to the
// watermark. It is a sliding window, not a batch of K pushes: the next
// batch is read and pushed as soon as the oldest in flight has been acked,
// and the watermark is written while later pushes are still in flight, so
// the target is never left idle between groups of pushes. With one in
// flight it starts no goroutine (the simulation stays deterministic). The
// first failed push stops new ones; once every push has returned, the rest
// are settled in seq order as before (retried, bisected, dead-lettered).
// more reports that rows up to end remain.
func (f *Forwarder) round(ctx context.Context, end int64) (more bool, err error) {
	w := window{f: f, ctx: ctx}
	_, w.staggered = f.cfg.Sink.(SentSink)
	defer w.wait()

	after := f.wm.Cursor
	prog := progress{covered: f.wm.Cursor}
	var filtered, gap int64
	var stop error
	reading, launched, unsettled := true, 0, 0
	// settled accounts for one batch whose push succeeded (or that had
	// nothing to push).
	settled := func(p *pending) {
		start := prog.covered
		// Cannot fail: only an error answer needs more than accounting.
		_ = f.settle(ctx, p, &prog)
		filtered += countUpTo(p.filtered, prog.covered)
		if p.gapLast > 0 && prog.covered >= p.gapLast && start < p.gapFirst {
			gap += p.gapLast - p.gapFirst + 1
		}
		unsettled++
	}
	for {
		for stop == nil && reading && len(w.q) < f.inFlight() {
			if ctx.Err() != nil {
				reading = false
				break
			}
			rows, err := f.cfg.Source.Read(ctx, after, f.cfg.BatchRows, f.cfg.BatchBytes)
			if err != nil {
				if launched == 0 {
					return false, sourceError{fmt.Errorf("read source after seq %d: %w", after, err)}
				}
				// Push what was read; the next round reads again.
				f.log.Warn("reading the source failed; pushing the batches already read", "after", after, "err", err)
				reading, end = false, after
				break
			}
			if len(rows) == 0 {
				reading, end = false, after
				break
			}
			p, err := f.makeBatch(after, rows)
			if err != nil {
				stop = sourceError{err}
				break
			}
			if launched == 0 {
				// Only the round's first batch may reach back to the
				// target's mark; the others follow a batch in flight.
				p.batch.FirstSeq = f.rangeStart(after)
			}
			// Nothing pushed so far can make the target's mark pass this
			// batch's end; a mark past it was put there by someone else.
			f.sentMark.Store(max(f.sentMark.Load(), p.batch.LastSeq))
			w.launch(p, f.inFlight() > 1)
			launched++
			after = p.batch.LastSeq
			reading = after < end
		}
		if stop != nil || len(w.q) == 0 {
			break
		}
		head := w.q[0]
		<-head.done
		if head.p.err != nil && len(head.p.batch.Rows) > 0 {
			break
		}
		w.q = w.q[1:]
		// As many as were allowed in flight: the first batch of a process
		// goes alone and is committed alone (ErrTargetIsSource is checked
		// after each commit), even though settling it lets more go.
		k := f.inFlight()
		settled(head.p)
		if unsettled >= k {
			// Make the progress durable, while later pushes are in flight.
			if err := f.commit(prog, filtered, gap); err != nil {
				return false, err
			}
			prog = progress{covered: prog.covered}
			filtered, gap, unsettled = 0, 0, 0
		}
	}
	// Something failed (or the source did): wait for every push, then
	// settle the rest in seq order; the watermark may only move over a
	// contiguous prefix of settled seqs.
	w.wait()
	for i, fl := range w.q {
		p := fl.p
		if p.err != nil && (i > 0 || fl.pred != nil) && retryable(p.err) {
			// Its predecessors are settled now; an earlier failure may have
			// been caused by them (an out-of-order arrival), so retry once
			// before backing off.
			p.batch.FirstSeq = f.rangeStart(prog.covered)
			p.ack, p.err = f.push(ctx, p.batch, nil)
		}
		start := prog.covered
		if err := f.settle(ctx, p, &prog); err != nil && stop == nil {
			stop = err
		}
		filtered += countUpTo(p.filtered, prog.covered)
		if p.gapLast > 0 && prog.covered >= p.gapLast && start < p.gapFirst {
			gap += p.gapLast - p.gapFirst + 1
		}
		if stop != nil {
			break
		}
	}
	w.q = nil
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
	return after < end, nil
}

// inFlight is how many batches may be in flight now: one until the target
// has acked a push from this process (it may not know the producer yet,
// and would take a later batch arriving first), and one against a target
// that does not refuse overtaking batches.
func (f *Forwarder) inFlight() int {
	if !f.primed || !f.refusesGaps {
		return 1
	}
	return f.cfg.InFlight
}

// makeBatch turns the rows read after `after` into a batch, applying the
// loop guard and noting any seqs the source no longer has.
func (f *Forwarder) makeBatch(after int64, rows []store.Row) (*pending, error) {
	p := &pending{}
	prev := after
	// The rows read are the batch unless the loop guard drops some: only
	// then are the kept ones copied (a 5000-row batch is ~750 KB of Rows).
	kept, own := rows, false
	for i, r := range rows {
		if r.Seq <= prev {
			return nil, fmt.Errorf("source returned seq %d after seq %d: rows must be in increasing seq order after the cursor", r.Seq, prev)
		}
		prev = r.Seq
		if r.Cluster != "" && r.Cluster != f.cfg.Cluster {
			p.filtered = append(p.filtered, r.Seq)
			if !own {
				kept, own = append(make([]store.Row, 0, len(rows)), rows[:i]...), true
			}
			continue
		}
		if own {
			kept = append(kept, r)
		}
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
		if b.Producer != "" && a.ProducerApplied > f.sentMark.Load() {
			// The target may have dropped these rows as already applied:
			// the batch is not settled.
			return a, &targetAheadError{mark: a.ProducerApplied, sent: f.sentMark.Load()}
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
