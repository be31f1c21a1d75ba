package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// Defaults for Config's zero values.
const (
	DefaultBatchRows    = 5000
	DefaultBatchBytes   = 8 << 20
	DefaultInFlight     = 1
	DefaultPollInterval = time.Second
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 60 * time.Second
	DefaultAuthRetry    = 30 * time.Second

	DefaultMaxDeadLetterRun = 1000
)

// Config configures a Forwarder. Source, Sink, FS, StatePath,
// DeadLetterPath, Target and Producer are required.
type Config struct {
	Source Source
	Sink   Sink
	FS     vfs.FS
	Clock  clock.Clock // default clock.Real{}
	// Rand drives backoff jitter. Seed it for a deterministic run; nil seeds
	// one from Clock.Now() (deterministic under a fake clock). Only Step
	// uses it.
	Rand *rand.Rand

	// StatePath is the watermark JSON file; its directory must exist.
	StatePath string
	// DeadLetterPath receives one JSON line per row the target rejected.
	DeadLetterPath string
	// Target identifies the target (its URL). A watermark written for
	// another target is not reused.
	Target string
	// Producer identifies this source store at the target (cluster name plus
	// store id). The target keeps its applied mark per producer.
	Producer string
	// Cluster is this cluster's name: batches carry it, and rows that carry
	// another cluster's name are not forwarded (loop guard).
	Cluster string

	BatchRows  int // rows per push (default 5000)
	BatchBytes int // approximate bytes per push (default 8 MiB)
	// InFlight is how many batches are pushed concurrently (default 1).
	// More than 1 is used only against a target that says it refuses a
	// batch that would leave a gap (ProducerState.RefusesGaps); a target
	// that dedups by high-water mark alone could drop an earlier batch that
	// arrives after a later one, so against it the relay pushes one at a
	// time. InFlight 1 makes no goroutines and is fully deterministic.
	InFlight int
	// Backfill starts a relay with no watermark, whose target knows nothing
	// of this producer, at the source's first row instead of its newest.
	Backfill bool
	// NonIdempotent sends batches without producer/seq so the target cannot
	// drop re-sent rows: at most one duplicated batch per failure. Only for
	// the simulation's duplicate-bound property and old targets.
	NonIdempotent bool

	// MaxDeadLetterRun stops dead-lettering after this many rows in a row
	// were rejected with no accepted push in between (default 1000; < 0:
	// no limit). The source store validates rows with the same rules as
	// the target, so a long run of rejections means the target refuses
	// everything (a config or version mismatch), and the relay holds the
	// rows and retries slowly (state target_rejecting) instead of moving
	// the whole stream into the dead-letter file.
	MaxDeadLetterRun int

	PollInterval time.Duration // idle re-check interval (default 1 s)
	MinBackoff   time.Duration // first retry window (default 100 ms)
	MaxBackoff   time.Duration // retry window cap (default 60 s)
	AuthRetry    time.Duration // retry interval while credentials are refused (default 30 s)

	// Pin, if set, is called with the durable watermark after every advance
	// (and once at start) so the source store keeps unforwarded rows:
	// store.SetPin("relay", seq).
	Pin func(seq int64)
	// Changed, if set, returns a channel that is closed or receives when the
	// source has new rows (store.Changed); Run then steps promptly instead of
	// waiting for PollInterval.
	Changed func() <-chan struct{}
	// Linger is how long Run waits after a Changed signal before stepping,
	// so appends that arrive together travel together (default 0; the
	// daemon uses 100 ms).
	Linger time.Duration
	// TargetIsSource, if set, reports whether the pushes landed in the
	// source store itself (the daemon checks whether its own store now
	// knows this producer). It is asked after every commit that forwarded
	// rows; true stops the relay (ErrTargetIsSource) after one batch, where
	// otherwise every forwarded row would be forwarded again forever.
	TargetIsSource func() bool

	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
}

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
)

var allStates = []State{StateStarting, StateOK, StateBackoff, StateAuthFailing, StateCorruptWatermark, StateSourceBehind, StateRejecting, StateTargetIsSource}

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

// Status is a snapshot for /health and tests. It marshals to JSON as
// /health shows it (it holds no secret).
type Status struct {
	State         State     `json:"state"`
	Target        string    `json:"target"`
	Producer      string    `json:"producer"`
	Watermark     int64     `json:"watermark"` // durable: every seq <= Watermark is forwarded, dead-lettered or filtered
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
// An auth failure, a corrupt watermark, a source behind the resume point or
// a target that rejects every row needs an operator.
func (s Status) Healthy() bool {
	return s.State == StateOK || s.State == StateStarting || s.State == StateBackoff
}

// Forwarder moves rows from Source to Sink. Step must not be called
// concurrently with itself; Status may be called from any goroutine.
type Forwarder struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	rng *rand.Rand

	stepMu   sync.Mutex // serializes Step; guards the fields below
	started  bool
	wm       Watermark // the durable watermark
	attempts int       // consecutive retryable failures (backoff exponent)
	// primed is set once the target acked a push from this process: from
	// then on it knows the producer, so an in-order target can reject a
	// batch that overtakes an earlier one. Until then pushes go one at a
	// time, because a target that does not know the producer yet accepts
	// any batch and a later one arriving first would mask the earlier.
	primed bool
	// stuck is a permanent error found at start (ErrSourceBehind): every
	// Step returns it until the process restarts.
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
	deadRun     int
	behindSince time.Time
	lastSuccess time.Time

	mu     sync.Mutex // guards status
	status Status
}

// New validates cfg and returns a Forwarder. It touches neither the
// filesystem nor the network: the first Step resolves where to start.
func New(cfg Config) (*Forwarder, error) {
	switch {
	case cfg.Source == nil:
		return nil, errors.New("relay: Config.Source is required")
	case cfg.Sink == nil:
		return nil, errors.New("relay: Config.Sink is required")
	case cfg.FS == nil:
		return nil, errors.New("relay: Config.FS is required")
	case cfg.StatePath == "":
		return nil, errors.New("relay: Config.StatePath (the watermark file) is required")
	case cfg.DeadLetterPath == "":
		return nil, errors.New("relay: Config.DeadLetterPath is required")
	case cfg.StatePath == cfg.DeadLetterPath:
		return nil, fmt.Errorf("relay: state and dead-letter paths are both %s", cfg.StatePath)
	case cfg.Target == "":
		return nil, errors.New("relay: Config.Target (the target URL) is required")
	case cfg.Producer == "":
		return nil, errors.New("relay: Config.Producer is required")
	case cfg.BatchRows < 0 || cfg.BatchBytes < 0 || cfg.InFlight < 0:
		return nil, fmt.Errorf("relay: batch rows %d, batch bytes %d and in-flight %d must not be negative", cfg.BatchRows, cfg.BatchBytes, cfg.InFlight)
	case cfg.BatchBytes > store.MaxBatchBytes:
		return nil, fmt.Errorf("relay: batch bytes %d exceeds the target's batch limit %d", cfg.BatchBytes, store.MaxBatchBytes)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.BatchRows == 0 {
		cfg.BatchRows = DefaultBatchRows
	}
	if cfg.BatchBytes == 0 {
		cfg.BatchBytes = DefaultBatchBytes
	}
	if cfg.InFlight == 0 {
		cfg.InFlight = DefaultInFlight
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.AuthRetry <= 0 {
		cfg.AuthRetry = DefaultAuthRetry
	}
	if cfg.MaxDeadLetterRun == 0 {
		cfg.MaxDeadLetterRun = DefaultMaxDeadLetterRun
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "relay", "target", cfg.Target, "producer", cfg.Producer)
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("relay: register metrics: %w", err)
	}
	rng := cfg.Rand
	if rng == nil {
		rng = rand.New(rand.NewSource(cfg.Clock.Now().UnixNano()))
	}
	f := &Forwarder{cfg: cfg, log: log, m: m, rng: rng}
	f.status = Status{State: StateStarting, Target: cfg.Target, Producer: cfg.Producer, Failures: map[string]int64{}}
	m.setState(StateStarting)
	// Until the first Step has resolved where to resume (which may wait for
	// an unreachable target), hold every row: retention on a just-restarted
	// source must not delete rows that were never forwarded. The store's pin
	// byte cap still bounds what this holds.
	if cfg.Pin != nil {
		cfg.Pin(0)
	}
	return f, nil
}

// Watermark returns the durable watermark: every source seq at or below it
// is forwarded, dead-lettered or filtered. 0 before the first Step.
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
		if err != nil {
			// Honour the backoff: new rows must not hammer a failing target.
			wake = nil
		}
		t := f.cfg.Clock.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		case <-wake:
			t.Stop()
			// Let a burst of appends gather into one push rather than one
			// push (and two watermark fsyncs) per append.
			if err := clock.Sleep(ctx, f.cfg.Clock, f.cfg.Linger); err != nil {
				return nil
			}
		}
	}
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

// resolve picks the start point: the watermark file if it is for this
// target and producer; else where the target says this producer stopped;
// else the source's newest seq (or 0 with Backfill). The seed is written at
// once so a crash before the first push cannot move the start forward.
func (f *Forwarder) resolve(ctx context.Context) error {
	w, err := readWatermark(f.cfg.FS, f.cfg.StatePath)
	if err != nil {
		return err
	}
	var applied int64
	known := false
	if !f.cfg.NonIdempotent {
		st, err := f.cfg.Sink.ProducerState(ctx, f.cfg.Producer)
		switch {
		case err != nil && connect.CodeOf(err) == connect.CodeUnimplemented:
			f.log.Warn("target does not report producer state (old finelogd?); starting without it", "err", err)
		case err != nil:
			return fmt.Errorf("ask target where producer %q stopped: %w", f.cfg.Producer, err)
		default:
			applied, known = st.Applied, st.Known
			f.targetMark, f.markKnown = st.Applied, st.Known
		}
		f.refusesGaps = err == nil && st.RefusesGaps
		if f.cfg.InFlight > 1 && !f.refusesGaps {
			f.log.Warn("target does not refuse out-of-order batches (older finelogd?); pushing one batch at a time", "in_flight", f.cfg.InFlight)
		}
	}
	last, err := f.cfg.Source.LastSeq(ctx)
	if err != nil {
		return sourceError{fmt.Errorf("read source last seq: %w", err)}
	}
	if w != nil && w.Target == f.cfg.Target && w.Producer == f.cfg.Producer {
		if w.Cursor > last {
			f.stuck = fmt.Errorf("%w: watermark %s is at seq %d but the local store ends at seq %d; the store was reset or replaced under producer id %q. Forwarding from here would skip its next %d rows: remove the watermark and give the relay a new producer id",
				ErrSourceBehind, f.cfg.StatePath, w.Cursor, last, f.cfg.Producer, w.Cursor-last)
			return f.stuck
		}
		if known && applied < w.TargetApplied {
			// Not something the relay can repair safely on its own: the
			// rows may be gone from the source too. Say it loudly.
			f.m.targetLoss.Add(float64(w.TargetApplied - applied))
			f.log.Error("the target lost rows it had acked: its applied mark for this producer went back",
				"acked_up_to", w.TargetApplied, "target_applied_now", applied, "lost_seqs", w.TargetApplied-applied)
		}
		f.adopt(*w)
		f.log.Info("relay resuming from watermark", "cursor", w.Cursor, "target_applied", applied, "target_knows_producer", known)
		return nil
	}
	if w != nil {
		f.log.Warn("relay watermark belongs to another target or producer; reseeding from the target's applied mark",
			"watermark_target", w.Target, "watermark_producer", w.Producer, "watermark_cursor", w.Cursor)
	}
	var cursor int64
	from := ""
	switch {
	case known && applied > last:
		f.stuck = fmt.Errorf("%w: target %s already applied producer %q up to seq %d but the local store ends at seq %d; another store uses this producer id or this store was reset. Give this store a new producer id",
			ErrSourceBehind, f.cfg.Target, f.cfg.Producer, applied, last)
		return f.stuck
	case known:
		cursor, from = applied, "target applied mark"
	case f.cfg.Backfill:
		cursor, from = 0, "backfill from the first row"
	default:
		cursor, from = last, "source's current cursor (no backfill)"
	}
	seed := Watermark{Target: f.cfg.Target, Producer: f.cfg.Producer, Cursor: cursor, UpdatedUnixMS: f.cfg.Clock.Now().UnixMilli()}
	if err := writeWatermark(f.cfg.FS, f.cfg.StatePath, seed); err != nil {
		return stateError{err}
	}
	f.adopt(seed)
	f.log.Info("relay seeded", "cursor", cursor, "from", from)
	return nil
}

func (f *Forwarder) adopt(w Watermark) {
	f.wm = w
	f.started = true
	f.m.watermark.Set(float64(w.Cursor))
	if f.cfg.Pin != nil {
		f.cfg.Pin(w.Cursor)
	}
	f.setStatus(func(s *Status) { s.fromWatermark(w) })
}

func (s *Status) fromWatermark(w Watermark) {
	s.Watermark = w.Cursor
	s.Forwarded = w.Forwarded
	s.DeadLettered = w.DeadLettered
	s.Filtered = w.Filtered
	s.SourceGap = w.SourceGap
}

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
			p.ack, p.err = f.push(ctx, p.batch)
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
func (f *Forwarder) pushAll(ctx context.Context, batches []*pending) {
	if len(batches) == 1 {
		p := batches[0]
		if len(p.batch.Rows) > 0 {
			p.ack, p.err = f.push(ctx, p.batch)
		}
		return
	}
	var wg sync.WaitGroup
	for _, p := range batches {
		if len(p.batch.Rows) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.ack, p.err = f.push(ctx, p.batch)
		}()
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

func (f *Forwarder) push(ctx context.Context, b Batch) (store.Ack, error) {
	ack, err := f.cfg.Sink.Push(ctx, b)
	if err != nil {
		return ack, fmt.Errorf("push seqs %d..%d (%d rows) to %s: %w", b.FirstSeq, b.LastSeq, len(b.Rows), f.cfg.Target, err)
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
	if classify(p.err) != ClassInvalidArgument {
		return p.err
	}
	f.countFailure(ClassInvalidArgument)
	return f.isolate(ctx, b, p.err, prog)
}

// isolate bisects a batch the target rejected as invalid. Halves are pushed
// left to right and a single rejected row is dead-lettered (fsynced) before
// anything after it is pushed, so neither the watermark nor the target's
// applied mark can pass a row that has no record.
func (f *Forwarder) isolate(ctx context.Context, b Batch, reason error, prog *progress) error {
	if len(b.Rows) == 1 {
		if f.cfg.MaxDeadLetterRun > 0 && f.deadRun >= f.cfg.MaxDeadLetterRun {
			return fmt.Errorf("%w: %d rows in a row were rejected as invalid and none accepted; holding seq %d and later instead of dead-lettering them (check the target's version and its policy for cluster %q); last reason: %s",
				ErrTargetRejecting, f.deadRun, b.Rows[0].Seq, f.cfg.Cluster, reasonText(reason))
		}
		if err := f.deadLetter(b.Rows[0], reason); err != nil {
			return err
		}
		f.deadRun++
		prog.covered = b.LastSeq
		prog.deadLettered++
		return nil
	}
	m := len(b.Rows) / 2
	halves := [2]Batch{b, b}
	halves[0].Rows, halves[0].LastSeq = b.Rows[:m], b.Rows[m-1].Seq
	halves[1].Rows = b.Rows[m:]
	for i := range halves {
		h := halves[i]
		// Cover everything settled so far (a dead-lettered seq included), so
		// the ranges the target sees stay contiguous.
		if i > 0 {
			h.FirstSeq = f.rangeStart(prog.covered)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := f.push(ctx, h)
		if err == nil {
			f.acked(h)
			prog.covered = h.LastSeq
			prog.forwarded += int64(len(h.Rows))
			continue
		}
		if classify(err) != ClassInvalidArgument {
			return err
		}
		if err := f.isolate(ctx, h, err, prog); err != nil {
			return err
		}
	}
	return nil
}

func (f *Forwarder) deadLetter(r store.Row, reason error) error {
	rec := DeadLetter{
		Target:   f.cfg.Target,
		Producer: f.cfg.Producer,
		Reason:   reasonText(reason),
		AtUnixMS: f.cfg.Clock.Now().UnixMilli(),
		Row:      r,
	}
	if err := appendDeadLetters(f.cfg.FS, f.cfg.DeadLetterPath, []DeadLetter{rec}); err != nil {
		return stateError{err}
	}
	f.log.Warn("target rejected a row; written to the dead-letter file",
		"seq", r.Seq, "key", r.Key, "reason", rec.Reason, "file", f.cfg.DeadLetterPath)
	return nil
}

// reasonText is the target's message without our own wrapping.
func reasonText(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code().String() + ": " + ce.Message()
	}
	return err.Error()
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

func countUpTo(seqs []int64, limit int64) int64 {
	var n int64
	for _, s := range seqs {
		if s <= limit {
			n++
		}
	}
	return n
}
