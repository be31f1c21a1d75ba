package relay

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// Defaults for Options' zero values.
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

// Options are how the relay batches, pushes and retries. A zero field takes
// its default (WithDefaults); Validate refuses values that cannot work.
// The daemon fills the few it exposes as flags; nothing else copies them.
type Options struct {
	BatchRows  int // rows per push (default 5000)
	BatchBytes int // approximate bytes per push (default 8 MiB, at most store.MaxBatchBytes)
	// InFlight is how many batches are pushed concurrently (default 1).
	// More than 1 is used only against a target that says it refuses a
	// batch that would leave a gap (ProducerState.RefusesGaps); a target
	// that dedups by high-water mark alone could drop an earlier batch that
	// arrives after a later one, so against it the relay pushes one at a
	// time. InFlight 1 makes no goroutines and is fully deterministic.
	InFlight int
	// Backfill makes a relay enabled on a store for the first time start at
	// the source's first row instead of its newest (see Seed).
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
	AuthRetry    time.Duration // retry interval while credentials are refused, and of a stopped relay (default 30 s)
	// Linger is how long Run waits after a Changed signal before stepping,
	// so appends that arrive together travel together (default 0).
	Linger time.Duration
}

// Validate refuses options no relay can run with, naming the field.
func (o Options) Validate() error {
	switch {
	case o.BatchRows < 0:
		return fmt.Errorf("relay: batch rows %d must not be negative (0 = default %d)", o.BatchRows, DefaultBatchRows)
	case o.BatchBytes < 0:
		return fmt.Errorf("relay: batch bytes %d must not be negative (0 = default %d)", o.BatchBytes, DefaultBatchBytes)
	case o.InFlight < 0:
		return fmt.Errorf("relay: in-flight %d must not be negative (0 = default %d)", o.InFlight, DefaultInFlight)
	case o.BatchBytes > store.MaxBatchBytes:
		return fmt.Errorf("relay: batch bytes %d exceeds the target's batch limit %d", o.BatchBytes, store.MaxBatchBytes)
	case o.PollInterval < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0 || o.AuthRetry < 0 || o.Linger < 0:
		return fmt.Errorf("relay: poll interval %v, backoffs %v..%v, auth retry %v and linger %v must not be negative",
			o.PollInterval, o.MinBackoff, o.MaxBackoff, o.AuthRetry, o.Linger)
	}
	return nil
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.BatchRows == 0 {
		o.BatchRows = DefaultBatchRows
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = DefaultBatchBytes
	}
	if o.InFlight == 0 {
		o.InFlight = DefaultInFlight
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.AuthRetry == 0 {
		o.AuthRetry = DefaultAuthRetry
	}
	if o.MaxDeadLetterRun == 0 {
		o.MaxDeadLetterRun = DefaultMaxDeadLetterRun
	}
	return o
}

// Config configures a Forwarder: what it connects (source, sink, files,
// identity) and its Options. Source, Sink, FS, StatePath, DeadLetterPath,
// Target and Producer are required.
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
	// SeedPath is the seed file, which records where forwarding starts
	// (default: seed.json beside StatePath).
	SeedPath string
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

	Options

	// Pin, if set, is called with the durable watermark after every advance
	// (and once at start) so the source store keeps unforwarded rows:
	// store.SetPin("relay", seq).
	Pin func(seq int64)
	// Changed, if set, returns a channel that is closed or receives when the
	// source has new rows (store.Changed); Run then steps promptly instead of
	// waiting for PollInterval.
	Changed func() <-chan struct{}
	// TargetIsSource, if set, reports whether the pushes landed in the
	// source store itself (the daemon checks whether its own store now
	// knows this producer). It is asked after every commit that forwarded
	// rows; true stops the relay (ErrTargetIsSource) after one batch, where
	// otherwise every forwarded row would be forwarded again forever.
	TargetIsSource func() bool

	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
}

// New validates cfg and returns a Forwarder. It touches neither the
// filesystem nor the network: Enable (or the first Step) fixes where to
// start, and the first Step asks the target.
func New(cfg Config) (*Forwarder, error) {
	if cfg.SeedPath == "" && cfg.StatePath != "" {
		cfg.SeedPath = filepath.Join(filepath.Dir(cfg.StatePath), "seed.json")
	}
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
	case cfg.SeedPath == cfg.StatePath || cfg.SeedPath == cfg.DeadLetterPath:
		return nil, fmt.Errorf("relay: seed path %s is also the watermark or dead-letter path", cfg.SeedPath)
	case cfg.Target == "":
		return nil, errors.New("relay: Config.Target (the target URL) is required")
	case cfg.Producer == "":
		return nil, errors.New("relay: Config.Producer is required")
	}
	if err := cfg.Options.Validate(); err != nil {
		return nil, err
	}
	cfg.Options = cfg.Options.WithDefaults()
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
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
