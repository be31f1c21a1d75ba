package relay

import (
	"context"
	"time"
)

// State is the relay's health summary.
type State string

// States reported by Status and finelog_relay_state.
const (
	StateStarting         State = "starting"
	StateOK               State = "ok"
	StateBackoff          State = "backoff"
	StateAuthFailing      State = "auth_failing"
	StateCorruptWatermark State = "stopped_corrupt_watermark"
	StateSourceBehind     State = "stopped_source_behind"
	StateRejecting        State = "target_rejecting"
	StateTargetIsSource   State = "stopped_target_is_source"
	StateCorruptSeed      State = "stopped_corrupt_seed"
	StateTargetAhead      State = "stopped_target_ahead"
)

var allStates = []State{StateStarting, StateOK, StateBackoff, StateAuthFailing, StateCorruptWatermark, StateSourceBehind, StateRejecting, StateTargetIsSource, StateCorruptSeed, StateTargetAhead}

// Stopped reports whether the relay forwards nothing until an operator
// acts: it keeps every row and re-checks now and then, but no retry alone
// can fix what it found. This is the one definition of "stopped": the
// server's /health/relay and docs/relay.md use it.
func (s State) Stopped() bool {
	switch s {
	case StateCorruptWatermark, StateCorruptSeed, StateSourceBehind, StateTargetIsSource, StateTargetAhead:
		return true
	default:
		return false
	}
}

// Status is a snapshot for /health and tests. It marshals to JSON as
// /health shows it (it holds no secret).
type Status struct {
	State         State     `json:"state"`
	Target        string    `json:"target"`
	Producer      string    `json:"producer"`
	Watermark     int64     `json:"watermark"` // durable: every seq <= Watermark is forwarded, dead-lettered or filtered (or, before the target answered, stored before the relay was enabled)
	SourceLastSeq int64     `json:"source_last_seq"`
	LagRows       int64     `json:"lag_rows"`
	LagSeconds    float64   `json:"lag_seconds"`
	LastSuccess   time.Time `json:"last_success,omitzero"` // zero until the first success
	LastError     string    `json:"last_error,omitempty"`  // the most recent failure, "" after a success
	// NextRetry is the delay Step asked for after the last failure.
	NextRetry time.Duration `json:"next_retry_ns,omitempty"`

	// Counters since the watermark was seeded (persisted in it).
	Forwarded    int64 `json:"forwarded_rows"`
	DeadLettered int64 `json:"dead_lettered_rows"`
	Filtered     int64 `json:"loop_guard_rows"`
	SourceGap    int64 `json:"source_gap_rows"`
	// Failures since this process started, by class.
	Failures map[string]int64 `json:"failures"`
}

// Healthy reports whether the relay is moving (ok or merely backing off).
// A stopped relay, an auth failure or a target that rejects every row
// needs an operator.
func (s Status) Healthy() bool {
	return !s.State.Stopped() && s.State != StateAuthFailing && s.State != StateRejecting
}

func (s *Status) fromWatermark(w Watermark) {
	s.Watermark = w.Cursor
	s.Forwarded = w.Forwarded
	s.DeadLettered = w.DeadLettered
	s.Filtered = w.Filtered
	s.SourceGap = w.SourceGap
}

// observeLag refreshes the lag figures from the source's newest seq.
func (f *Forwarder) observeLag(ctx context.Context) {
	last, err := f.cfg.Source.LastSeq(ctx)
	if err != nil {
		return
	}
	lag := max(last-f.wm.Cursor, 0)
	now := f.cfg.Clock.Now()
	var secs float64
	if lag == 0 {
		f.behindSince = time.Time{}
	} else {
		if f.behindSince.IsZero() {
			f.behindSince = now
		}
		secs = now.Sub(f.behindSince).Seconds()
	}
	f.m.lagRows.Set(float64(lag))
	f.m.lagSeconds.Set(secs)
	f.setStatus(func(s *Status) {
		s.SourceLastSeq = last
		s.LagRows = lag
		s.LagSeconds = secs
	})
}

func (f *Forwarder) setStatus(fn func(*Status)) {
	f.mu.Lock()
	fn(&f.status)
	f.mu.Unlock()
}
