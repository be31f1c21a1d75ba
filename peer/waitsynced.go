package peer

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrAckTimeout is WaitSynced's error when its timeout passed on the
// primary's clock before enough replicas synced the seq.
var ErrAckTimeout = errors.New("peer: timed out waiting for replica acks")

// waiter is one WaitSynced call blocked on the change channel of
// generation gen, until deadline when timed.
type waiter struct {
	gen      uint64
	deadline time.Time
	timed    bool
}

// WaitSynced blocks until n replicas have acknowledged seq as durable.
// It gives up when ctx ends (its error is returned) or, with timeout > 0,
// when timeout passes on the primary's clock (ErrAckTimeout): the
// simulation runs that clock, so it decides when an ack wait times out.
func (p *Primary) WaitSynced(ctx context.Context, seq int64, n int, timeout time.Duration) error {
	var expired <-chan time.Time
	w := &waiter{}
	if timeout > 0 {
		// The deadline is read under the lock that Parked takes, with the
		// timer made from the same reading: a fake clock fires the timer
		// exactly when Parked stops counting this waiter.
		p.mu.Lock()
		w.deadline, w.timed = p.cfg.Clock.Now().Add(timeout), true
		t := p.cfg.Clock.NewTimer(timeout)
		p.mu.Unlock()
		defer t.Stop()
		expired = t.C()
	}
	for {
		p.mu.Lock()
		got := 0
		for _, l := range p.replicas {
			if l.synced >= seq {
				got++
			}
		}
		if got >= n {
			p.mu.Unlock()
			return nil
		}
		ch := p.changed
		w.gen = p.gen
		p.waiters[w] = struct{}{}
		p.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-expired:
			err = fmt.Errorf("%d of %d replicas have synced seq %d within %s: %w", got, n, seq, timeout, ErrAckTimeout)
		case <-ctx.Done():
			err = fmt.Errorf("%d of %d replicas have synced seq %d: %w", got, n, seq, ctx.Err())
		}
		p.mu.Lock()
		delete(p.waiters, w)
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Parked is how many WaitSynced calls are blocked with nothing able to
// release them but a later ack or link change, or their timeout still ahead
// on the clock. A call that was just woken, or whose deadline has come, is
// not parked. The simulation runs each push on its own goroutine and takes
// its next step only once every push has returned or is parked, so a run
// does not depend on the goroutine schedule.
func (p *Primary) Parked() int {
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for w := range p.waiters {
		if w.gen == p.gen && (!w.timed || now.Before(w.deadline)) {
			n++
		}
	}
	return n
}
