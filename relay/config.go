package relay

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"time"

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
