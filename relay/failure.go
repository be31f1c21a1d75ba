package relay

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
)

// ErrTargetIsSource means the relay's pushes are landing in its own source
// store: --relay-address points at this finelogd under another name.
var ErrTargetIsSource = errors.New("relay target is the source store itself")

// ErrTargetRejecting means the target rejected MaxDeadLetterRun rows in a
// row as invalid; the relay keeps the rest and retries slowly.
var ErrTargetRejecting = errors.New("target rejects every row")

// ErrSourceBehind means the resume point is past the local store's newest
// row: the store was reset or replaced while keeping the producer id (or
// two stores share one). Forwarding would silently skip the store's next
// rows (and the target would drop them as already applied), so the relay
// stops until the process restarts with a new producer id or watermark.
var ErrSourceBehind = errors.New("relay resume point is ahead of the local store")

// fail records a failed Step and picks the delay before the next one.
func (f *Forwarder) fail(ctx context.Context, err error) (time.Duration, error) {
	if ctx.Err() != nil {
		// Shutting down is not a failure.
		return 0, ctx.Err()
	}
	class := classify(err)
	var next time.Duration
	var state State
	switch {
	case errors.Is(err, ErrTargetRejecting):
		state, next = StateRejecting, f.cfg.AuthRetry
		f.log.Error("target rejects every row; rows are kept and retried", "err", err, "retry_in", next)
	case class == ClassTargetIsSource:
		state, next = StateTargetIsSource, f.cfg.AuthRetry
		f.log.Error("relay stopped: it is forwarding into its own store", "err", err)
	case class == ClassSourceBehind:
		state, next = StateSourceBehind, f.cfg.AuthRetry
		f.log.Error("relay stopped: the local store is behind the resume point", "err", err)
	case class == ClassCorruptWatermark:
		state, next = StateCorruptWatermark, f.cfg.AuthRetry
		f.log.Error("relay stopped: fix or remove the watermark file (removing it resumes from the target's applied mark)",
			"file", f.cfg.StatePath, "err", err)
	case class == ClassAuth:
		// Credentials rarely fix themselves quickly; retry slowly but never
		// give up or drop anything.
		state = StateAuthFailing
		next = f.cfg.AuthRetry/2 + time.Duration(f.rng.Int63n(int64(f.cfg.AuthRetry/2)+1))
		f.log.Error("target refuses the relay's credentials; rows are kept and retried", "err", err, "retry_in", next)
	default:
		state = StateBackoff
		next = f.backoff()
		f.log.Warn("relay step failed; backing off", "class", class, "attempt", f.attempts, "retry_in", next, "err", err)
	}
	f.countFailure(class)
	f.m.setState(state)
	f.observeLag(ctx)
	f.setStatus(func(s *Status) {
		s.State = state
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

// classify maps an error to its failure class (see the package comment).
func classify(err error) string {
	var se sourceError
	var st stateError
	switch {
	case errors.Is(err, ErrCorruptWatermark):
		return ClassCorruptWatermark
	case errors.Is(err, ErrSourceBehind):
		return ClassSourceBehind
	case errors.Is(err, ErrTargetRejecting):
		return ClassInvalidArgument
	case errors.Is(err, ErrTargetIsSource):
		return ClassTargetIsSource
	case errors.As(err, &se):
		return ClassSource
	case errors.As(err, &st):
		return ClassState
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated, connect.CodePermissionDenied:
		return ClassAuth
	case connect.CodeInvalidArgument:
		return ClassInvalidArgument
	default:
		// Unavailable, DeadlineExceeded, Unknown, Internal,
		// ResourceExhausted, Aborted and anything unexpected: retry with
		// backoff. Dropping rows is never the default.
		return ClassUnavailable
	}
}

func retryable(err error) bool { return classify(err) == ClassUnavailable }
