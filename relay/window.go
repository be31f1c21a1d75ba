package relay

import (
	"context"
	"sync"

	"connectrpc.com/connect"
)

// window is a round's pushes in flight, oldest first.
//
// Concurrent pushes start in seq order: each once its predecessor has been
// sent (SentSink) or has returned. A push the target refused as
// overtaking (aborted) while its predecessor was still in flight is sent
// again as soon as that predecessor has been applied (the target's gap
// rule makes that mean every earlier batch is), while later pushes are
// still in flight; round retries whatever still failed once the earlier
// batches are settled.
type window struct {
	f         *Forwarder
	ctx       context.Context
	staggered bool // the Sink is a SentSink
	q         []*flight
	wg        sync.WaitGroup
	// prev is the last pushed batch of the round (a batch with no rows
	// is not pushed), and goNext the signal that lets its successor start.
	prev   *flight
	goNext <-chan struct{}
	// reach is where the next pushed batch's range starts when batches
	// without rows were launched since the last pushed one (0: none were).
	reach int64
}

// flight is one launched batch.
type flight struct {
	p *pending
	// pred is the pushed batch before it in this round, nil for the first.
	pred *flight
	done chan struct{} // closed once the push (and its in-flight retry) returned
}

// launch starts p's push: inline when concurrent is false (no goroutine,
// fully deterministic), else in a goroutine that waits for its
// predecessor to be sent. A batch without rows is not pushed; the next
// batch's range reaches back over its seqs, so the target sees no gap.
func (w *window) launch(p *pending, concurrent bool) {
	fl := &flight{p: p, pred: w.prev, done: make(chan struct{})}
	w.q = append(w.q, fl)
	if len(p.batch.Rows) == 0 {
		if w.reach == 0 {
			w.reach = p.batch.FirstSeq
		}
		close(fl.done)
		return
	}
	if w.reach != 0 {
		p.batch.FirstSeq, w.reach = w.reach, 0
	}
	w.prev = fl
	if !concurrent {
		p.ack, p.err = w.f.push(w.ctx, p.batch, nil)
		close(fl.done)
		w.goNext = nil
		return
	}
	goNext := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(goNext) }) }
	wait := w.goNext
	w.goNext = goNext
	ctx, f, staggered := w.ctx, w.f, w.staggered
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(fl.done)
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
		if pred := fl.pred; p.err != nil && pred != nil && connect.CodeOf(p.err) == connect.CodeAborted {
			<-pred.done
			if pred.p.err == nil && ctx.Err() == nil {
				p.ack, p.err = f.push(ctx, p.batch, nil)
			}
		}
	}()
}

// wait returns once every push launched has returned.
func (w *window) wait() { w.wg.Wait() }
