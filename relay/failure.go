package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
)

// ErrTargetIsSource means the relay's pushes are landing in its own source
// store: --relay-address points at this finelogd under another name.
var ErrTargetIsSource = errors.New("relay target is the source store itself")

// ErrTargetRejecting means the target rejected MaxDeadLetterRun rows in a
// row as invalid, or refused a batch without rows (which no row can be
// blamed for); the relay keeps the rest and retries slowly.
var ErrTargetRejecting = errors.New("target rejects every row")

// ErrSourceBehind means the resume point is past the local store's newest
// row: the store was reset or replaced while keeping the producer id (or
// two stores share one). Forwarding would silently skip the store's next
// rows (and the target would drop them as already applied), so the relay
// stops until the process restarts with a new producer id or watermark.
var ErrSourceBehind = errors.New("relay resume point is ahead of the local store")

// ErrTargetAhead means the target's applied mark for this relay's producer
// is past every seq the relay sent it: someone else pushed under this
// producer id (another store sharing it, or a client forging it). The
// target would drop the relay's next rows up to that mark as already
// applied, so the relay stops and holds them instead of reporting ok.
var ErrTargetAhead = errors.New("target's applied mark for this producer is ahead of anything the relay sent")

// targetAheadError is a push the target acked with a mark past anything
// the relay sent.
type targetAheadError struct{ mark, sent int64 }

func (e *targetAheadError) Error() string {
	return fmt.Sprintf("%v: the target acked with applied mark %d, past %d", ErrTargetAhead, e.mark, e.sent)
}

func (e *targetAheadError) Is(target error) bool { return target == ErrTargetAhead }

// delayKind is how long a failure waits before the next Step.
type delayKind int

const (
	delayBackoff delayKind = iota // full-jitter exponential backoff
	delaySlow                     // AuthRetry with jitter: needs an operator, but may fix itself
	delayStopped                  // AuthRetry: re-checked until an operator acts
)

// failure is one row of the failure table: what an error means for the
// relay's state, its failure class, and the wait before the next Step.
type failure struct {
	is    func(error) bool
	class string
	state State
	delay delayKind
	level slog.Level
	msg   string
}

func isErr(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func hasCode(codes ...connect.Code) func(error) bool {
	return func(err error) bool {
		c := connect.CodeOf(err)
		for _, want := range codes {
			if c == want {
				return true
			}
		}
		return false
	}
}

// failures is the one failure table: classify, fail and the retry
// decisions all read it, first match wins. Errors that are ours (the
// watermark, the seed, the source) come before the connect codes, so a
// wrapped connect error inside them cannot change their meaning.
var failures = []failure{
	{isErr(ErrCorruptWatermark), ClassCorruptWatermark, StateCorruptWatermark, delayStopped, slog.LevelError,
		"relay stopped: fix or remove the watermark file (removing it resumes from the target's applied mark, else from the seed)"},
	{isErr(ErrCorruptSeed), ClassCorruptSeed, StateCorruptSeed, delayStopped, slog.LevelError,
		"relay stopped: fix or remove the seed file (removing it starts forwarding at the source's current end)"},
	{isErr(ErrSourceBehind), ClassSourceBehind, StateSourceBehind, delayStopped, slog.LevelError,
		"relay stopped: the local store is behind the resume point"},
	{isErr(ErrTargetAhead), ClassTargetAhead, StateTargetAhead, delayStopped, slog.LevelError,
		"relay stopped: the target's mark for this producer is ahead of anything the relay sent; rows are kept"},
	{isErr(ErrTargetRejecting), ClassInvalidArgument, StateRejecting, delayStopped, slog.LevelError,
		"target rejects every row; rows are kept and retried"},
	{isErr(ErrTargetIsSource), ClassTargetIsSource, StateTargetIsSource, delayStopped, slog.LevelError,
		"relay stopped: it is forwarding into its own store"},
	{func(err error) bool { var e sourceError; return errors.As(err, &e) }, ClassSource, StateBackoff, delayBackoff, slog.LevelWarn,
		"relay step failed; backing off"},
	{func(err error) bool { var e stateError; return errors.As(err, &e) }, ClassState, StateBackoff, delayBackoff, slog.LevelWarn,
		"relay step failed; backing off"},
	// Credentials rarely fix themselves quickly; retry slowly but never
	// give up or drop anything.
	{hasCode(connect.CodeUnauthenticated, connect.CodePermissionDenied), ClassAuth, StateAuthFailing, delaySlow, slog.LevelError,
		"target refuses the relay's credentials; rows are kept and retried"},
	{hasCode(connect.CodeInvalidArgument), ClassInvalidArgument, StateBackoff, delayBackoff, slog.LevelWarn,
		"relay step failed; backing off"},
}

// retryFailure is the default row: Unavailable, DeadlineExceeded, Unknown,
// Internal, ResourceExhausted, Aborted and anything unexpected are retried
// with backoff. Dropping rows is never the default.
var retryFailure = failure{class: ClassUnavailable, state: StateBackoff, delay: delayBackoff, level: slog.LevelWarn,
	msg: "relay step failed; backing off"}

// lookupFailure returns the table row for err.
func lookupFailure(err error) failure {
	for _, r := range failures {
		if r.is(err) {
			return r
		}
	}
	return retryFailure
}

// classify maps an error to its failure class (see the package comment).
func classify(err error) string { return lookupFailure(err).class }

func retryable(err error) bool { return classify(err) == ClassUnavailable }

// fail records a failed Step and picks the delay before the next one.
func (f *Forwarder) fail(ctx context.Context, err error) (time.Duration, error) {
	if ctx.Err() != nil {
		// Shutting down is not a failure.
		return 0, ctx.Err()
	}
	r := lookupFailure(err)
	var next time.Duration
	switch r.delay {
	case delayStopped:
		next = f.cfg.AuthRetry
	case delaySlow:
		next = f.cfg.AuthRetry/2 + time.Duration(f.rng.Int63n(int64(f.cfg.AuthRetry/2)+1))
	default:
		next = f.backoff()
	}
	attrs := []any{"err", err, "retry_in", next}
	if r.delay == delayBackoff {
		attrs = append(attrs, "class", r.class, "attempt", f.attempts)
	}
	switch r.class {
	case ClassCorruptWatermark:
		attrs = append(attrs, "file", f.cfg.StatePath)
	case ClassCorruptSeed:
		attrs = append(attrs, "file", f.cfg.SeedPath)
	}
	f.log.Log(ctx, r.level, r.msg, attrs...)
	f.countFailure(r.class)
	f.m.setState(r.state)
	f.observeLag(ctx)
	f.setStatus(func(s *Status) {
		s.State = r.state
		s.LastError = err.Error()
		s.NextRetry = next
	})
	return next, err
}

// backoff is full jitter: uniform in [MinBackoff, min(MaxBackoff,
// MinBackoff·2^attempts)].
func (f *Forwarder) backoff() time.Duration {
	window := f.cfg.MinBackoff
	for i := 0; i < f.attempts && window < f.cfg.MaxBackoff; i++ {
		window *= 2
	}
	window = min(window, f.cfg.MaxBackoff)
	f.attempts++
	return f.cfg.MinBackoff + time.Duration(f.rng.Int63n(int64(window-f.cfg.MinBackoff)+1))
}

func (f *Forwarder) countFailure(class string) {
	f.m.failures.WithLabelValues(class).Inc()
	f.setStatus(func(s *Status) { s.Failures[class]++ })
}

// sourceError and stateError mark failures that are ours, not the
// target's, so they are classified without looking at connect codes.
type sourceError struct{ error }

func (e sourceError) Unwrap() error { return e.error }

type stateError struct{ error }

func (e stateError) Unwrap() error { return e.error }

// StateOf is the state a Step failing with err leaves the relay in
// (StateOK for nil), from the failure table.
func StateOf(err error) State {
	if err == nil {
		return StateOK
	}
	return lookupFailure(err).state
}
