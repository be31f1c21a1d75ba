package relay

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// Forwarder moves rows from Source to Sink. Step must not be called
// concurrently with itself; Status may be called from any goroutine.
type Forwarder struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	rng *rand.Rand

	stepMu sync.Mutex // serializes Step; guards the fields below
	// enabled once the start point is fixed durably (Enable); seed is the
	// seed file's content when no watermark existed then.
	enabled  bool
	seed     Seed
	started  bool
	wm       Watermark // the durable watermark
	attempts int       // consecutive retryable failures (backoff exponent)
	// primed is set once the target acked a push from this process: from
	// then on it knows the producer, so an in-order target can reject a
	// batch that overtakes an earlier one. Until then pushes go one at a
	// time, because a target that does not know the producer yet accepts
	// any batch and a later one arriving first would mask the earlier.
	primed bool
	// stuck is a permanent error (ErrSourceBehind, ErrTargetIsSource,
	// ErrTargetAhead): every Step returns it until the process restarts.
	stuck error
	// targetMark is a lower bound of the target's applied mark for this
	// producer (markKnown once learned). A batch that follows dead-lettered
	// or filtered seqs starts its range at targetMark+1, so the ranges the
	// target sees stay contiguous and an in-order target never sees a gap.
	targetMark int64
	markKnown  bool
	// refusesGaps: the target said it refuses a batch that would overtake
	// an earlier one, so more than one may be in flight (Config.InFlight).
	refusesGaps bool
	// deadRun counts rows dead-lettered since the target last accepted a
	// push (see MaxDeadLetterRun).
	deadRun int
	// sentMark is the highest producer seq this relay may have made the
	// target apply: the target's mark when it was last asked, or the end
	// of a batch pushed since. An ack whose mark is past it means someone
	// else pushes under this producer id (ErrTargetAhead).
	// Atomic: pushes in flight read it while the round raises it for the
	// next batch.
	sentMark    atomic.Int64
	behindSince time.Time
	lastSuccess time.Time

	mu     sync.Mutex // guards status
	status Status
}

// Watermark returns the durable watermark: every source seq at or below it
// is forwarded, dead-lettered or filtered. Before the target first
// answered it is the seed (seqs at or below it were stored before the
// relay was enabled); 0 before Enable.
func (f *Forwarder) Watermark() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status.Watermark
}

// Status returns a snapshot of the relay's health.
func (f *Forwarder) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	s.Failures = make(map[string]int64, len(f.status.Failures))
	for k, v := range f.status.Failures {
		s.Failures[k] = v
	}
	return s
}

// Run calls Step until ctx is done, sleeping on the injected clock for the
// delay Step asks for, or less when Config.Changed signals new rows. Errors
// are logged and reflected in Status; Run keeps retrying them (a corrupt
// watermark is re-read every AuthRetry so a fixed file resumes the relay).
// It returns nil once ctx is cancelled, with no goroutine left behind.
func (f *Forwarder) Run(ctx context.Context) error {
	for {
		// Take the change signal before stepping so a row appended while
		// the step runs still wakes the next one.
		var wake <-chan struct{}
		if f.cfg.Changed != nil {
			wake = f.cfg.Changed()
		}
		next, err := f.Step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		failing := err != nil
		t := f.cfg.Clock.NewTimer(next)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C():
				break wait
			case <-wake:
				if failing {
					// Honour the backoff: new rows must not hammer a
					// failing target. They still count as lag at once.
					f.refreshLag(ctx)
					wake = f.cfg.Changed()
					continue
				}
				t.Stop()
				// Let a burst of appends gather into one push rather than
				// one push (and two watermark fsyncs) per append.
				if err := clock.Sleep(ctx, f.cfg.Clock, f.cfg.Linger); err != nil {
					return nil
				}
				break wait
			}
		}
	}
}

// refreshLag updates the lag figures between Steps (while backing off).
func (f *Forwarder) refreshLag(ctx context.Context) {
	f.stepMu.Lock()
	defer f.stepMu.Unlock()
	f.observeLag(ctx)
}

// Step does one deterministic unit of work: on the first call it resolves
// where to start; then it forwards every row the source has after the
// watermark (a backlog drains in one Step), advancing the watermark after
// each acked round. It returns how long to wait before the next Step: the
// poll interval when caught up, or a backoff after a failure (whose error it
// also returns). errors.Is(err, ErrCorruptWatermark) means the relay is
// stopped until the file is fixed or removed. Every push has completed
// before Step returns.
func (f *Forwarder) Step(ctx context.Context) (time.Duration, error) {
	f.stepMu.Lock()
	defer f.stepMu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if f.stuck != nil {
		return f.fail(ctx, f.stuck)
	}
	if err := f.enable(ctx); err != nil {
		return f.fail(ctx, err)
	}
	if !f.started {
		if err := f.resolve(ctx); err != nil {
			return f.fail(ctx, err)
		}
	}
	// Drain up to the source's end as of now: the backlog goes in one Step,
	// and a source that keeps growing cannot keep one Step going forever
	// (the next Step starts at once when Changed fires).
	end, err := f.cfg.Source.LastSeq(ctx)
	if err != nil {
		return f.fail(ctx, sourceError{fmt.Errorf("read source last seq: %w", err)})
	}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		more, err := f.round(ctx, end)
		if err != nil {
			return f.fail(ctx, err)
		}
		if !more {
			break
		}
	}
	f.attempts = 0
	now := f.cfg.Clock.Now()
	f.lastSuccess = now
	f.m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	f.observeLag(ctx)
	f.m.setState(StateOK)
	f.setStatus(func(s *Status) {
		s.State = StateOK
		s.LastError = ""
		s.NextRetry = 0
		s.LastSuccess = now
	})
	return f.cfg.PollInterval, nil
}
