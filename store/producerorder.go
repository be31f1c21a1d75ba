package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// DefaultProducerOrderWait is Options.ProducerOrderWait for a store with
// Background set: long enough for an earlier batch sent just before to be
// received and decoded on a busy machine, short against the retry a
// refusal costs.
const DefaultProducerOrderWait = 250 * time.Millisecond

// A producer with several batches in flight (a relay) sends them in seq
// order, but they reach the committer in whatever order their decoding
// finished, and the gap rule refuses one that overtakes an earlier batch
// (ErrProducerGap). Refused, it must be sent again after its predecessor,
// paying its upload and decode twice; a relay then falls behind by one
// round trip per batch, and the batches behind it overtake in turn. So an
// Append whose batch is refused while an earlier batch of its producer is
// inside Append at this store waits for that one and tries again. With
// none here yet it waits up to Options.ProducerOrderWait for one to
// arrive (on loopback the earlier batch is often still being decoded),
// then is refused.

// maxOrderWaits bounds how many earlier batches one Append waits for and
// how often it retries before it reports ErrProducerGap after all.
const maxOrderWaits = 16

// arrival is a producer batch inside Append.
type arrival struct {
	first int64
	done  chan struct{} // closed when its Append returns
}

// arrivals are the producer batches inside Append, by producer.
type arrivals struct {
	mu sync.Mutex
	m  map[string][]*arrival
	// came is closed (and replaced) when a batch of the producer arrives.
	came map[string]chan struct{}
}

// arrive registers a batch of producer starting at first; call the
// returned leave when its Append returns.
func (a *arrivals) arrive(producer string, first int64) (leave func()) {
	x := &arrival{first: first, done: make(chan struct{})}
	a.mu.Lock()
	if a.m == nil {
		a.m = map[string][]*arrival{}
		a.came = map[string]chan struct{}{}
	}
	a.m[producer] = append(a.m[producer], x)
	if c, ok := a.came[producer]; ok {
		close(c)
		delete(a.came, producer)
	}
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		list := a.m[producer]
		for i, y := range list {
			if y == x {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(a.m, producer)
		} else {
			a.m[producer] = list
		}
		a.mu.Unlock()
		close(x.done)
	}
}

// before returns the batch of producer inside Append that starts closest
// below first, or nil and a channel closed when the next batch of
// producer arrives.
func (a *arrivals) before(producer string, first int64) (*arrival, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var best *arrival
	for _, x := range a.m[producer] {
		if x.first < first && (best == nil || x.first > best.first) {
			best = x
		}
	}
	if best != nil {
		return best, nil
	}
	if a.came == nil {
		a.m = map[string][]*arrival{}
		a.came = map[string]chan struct{}{}
	}
	c, ok := a.came[producer]
	if !ok {
		c = make(chan struct{})
		a.came[producer] = c
	}
	return nil, c
}

// awaitEarlier is called when b was refused with ErrProducerGap. It waits
// while an earlier batch of b's producer is inside Append, or up to
// ProducerOrderWait (from the first refusal, *deadline) for one to arrive,
// and reports whether b should be tried again: its producer's mark has
// reached the seq before b's range. budget counts the waits left.
func (s *Store) awaitEarlier(ctx context.Context, b *Batch, err error, budget *int, deadline *clock.Timer) bool {
	if !errors.Is(err, ErrProducerGap) {
		return false
	}
	for *budget > 0 {
		*budget--
		// Look for the earlier batch first, then at the mark: a batch that
		// left Append before the look published its mark before it left,
		// so it shows now (the other order could miss both, and wait).
		x, came := s.arrivals.before(b.Producer, b.FirstSeq)
		if mark, ok := s.ProducerApplied(b.Producer); ok && mark >= b.FirstSeq-1 {
			return true
		}
		if x == nil && s.opts.ProducerOrderWait <= 0 {
			return false
		}
		if x == nil && *deadline == nil {
			*deadline = s.clk.NewTimer(s.opts.ProducerOrderWait)
		}
		s.metrics.orderWait()
		if x != nil {
			select {
			case <-x.done:
			case <-ctx.Done():
				return false
			case <-s.stopCh:
				return true // the retry answers ErrClosed
			}
			continue
		}
		select {
		case <-came:
		case <-(*deadline).C():
			return false
		case <-ctx.Done():
			return false
		case <-s.stopCh:
			return true // the retry answers ErrClosed
		}
	}
	return false
}
