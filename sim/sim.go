// Package sim is finelog's deterministic simulation harness. A World holds
// two simulated nodes — the source cluster "east" and the global target —
// each with its own virtual clock and crashable in-memory disk, running the
// real store, relay and auth code. A schedule of actions (drawn by rapid in
// the tests) drives everything from one goroutine; the same schedule always
// produces the same trace. The checkers in check.go return errors rather
// than failing a test so canary tests can assert that a broken environment
// IS caught.
package sim

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

// Names of the simulated world.
const (
	SourceCluster = "east"
	TargetName    = "global"
	Producer      = "east/store-1"
	sourceDir     = "/data/store"
	targetDir     = "/data/store"
	statePath     = "/data/relay/watermark.json"
	deadPath      = "/data/relay/dead-letter.jsonl"
	targetURL     = "sim://global"
	peerAddr      = "10.20.30.40:43210"
)

// relaySecret is the key the source mints with and the target verifies
// with. It is a test constant, never a real credential.
var relaySecret = auth.Secret("sim-relay-secret-east-0123456789abcdef")

// Config is one run's fixed setup; the schedule is what varies.
type Config struct {
	// NonIdempotent turns off producer/seq batches (duplicate-bound mode).
	NonIdempotent bool
	BatchRows     int
	MemtableBytes int64
	// SourceRetentionBytes enables size retention on the source, which the
	// relay's pin must stop from deleting unforwarded rows.
	SourceRetentionBytes int64
	SourceRetentionAge   time.Duration
	// PinMaxBytes caps what retention keeps for the relay's pin; past it
	// the store deletes unforwarded rows and reports them (OnPinnedLoss).
	PinMaxBytes int64
	TokenTTL    time.Duration
	// Latency is each round trip's virtual duration.
	Latency time.Duration
	// Leeway is the target's jwt leeway.
	Leeway time.Duration

	// Strict turns off the harness's workarounds for known open bugs in
	// the code under test (see Workarounds), so the checkers report them.
	Strict bool

	// Canaries: deliberately broken environments the checkers must catch.
	SourceSyncLies    bool
	TargetSyncLies    bool
	AckWithoutStoring bool
	// WallClockJitter seeds the relay's backoff jitter from the wall
	// clock, as careless code would: the determinism check must notice.
	WallClockJitter bool
}

// DefaultConfig is the setup the property tests use.
func DefaultConfig() Config {
	return Config{
		BatchRows:            10,
		MemtableBytes:        4 << 10,
		SourceRetentionBytes: 8 << 10,
		SourceRetentionAge:   10 * time.Minute,
		TokenTTL:             10 * time.Minute,
		Latency:              20 * time.Millisecond,
		Leeway:               30 * time.Second,
	}
}

// World is one simulated deployment.
type World struct {
	cfg    Config
	Trace  *Trace
	ctx    context.Context
	now    time.Time // true simulated time
	crashR *rand.Rand

	Source, Target *Node
	Net            *Net
	Relay          *relay.Forwarder
	minter         *auth.Minter
	policy         *auth.Policy

	// Models the checkers compare against.
	rows      map[string]store.Row // every row ever submitted, by its unique Data
	acked     map[string]int64     // Data → source seq, for rows the source acked
	ackedList []string             // acked Data in ack order (deterministic iteration)
	maybe     map[string]bool      // rows whose append failed: may or may not exist
	nextRow   int

	// pinnedLoss are source seq ranges the store reported deleting
	// although pinned (PinMaxBytes exceeded): loss the system owns up to.
	pinnedLoss [][2]int64

	// counts caches the target's rows by Data during CheckAll.
	counts map[string]int

	// sourceFloor: source seqs at or below it may have been deleted by
	// retention (as of the last Retain).
	sourceFloor int64
	// failedRetainTop bounds what a source Retain that returned an error
	// may still have deleted: Retain writes the new floor to meta.json
	// before anything else, and when only the directory sync after its
	// rename fails, the floor becomes durable with the next successful
	// sync and recovery then drops the segments below it. The rows it can
	// cover are the ones in segments at the time (never the memtable). A
	// crash settles it either way.
	failedRetainTop int64

	// targetAcked is the highest target seq any acked push covered: every
	// target row up to it must survive a target crash.
	targetAcked int64

	// SourceCrashes and others count injected failures (duplicate bound).
	SourceCrashes, TargetCrashes int
	// Coverage records whether a run reached the states the properties
	// are about, so a test can insist the generator gets there.
	Coverage   Coverage
	violations []error
}

// Coverage counts interesting things a run did.
type Coverage struct {
	RetainedRows          int64 // source rows deleted by retention
	MaxSegments           int
	TargetCrashesWithRows int
	DrainSteps            int
	// MaxFileWrites is the most writes any one file took between crashes
	// (long WAL files: the regime of the MemFS growth bug M1).
	MaxFileWrites int
	// FailedRetainFloors counts crashes after which a failed Retain's
	// floor had taken effect (see failedRetainTop).
	FailedRetainFloors int
}

// NewWorld builds both nodes, opens their stores and starts the relay. seed
// drives only the crash tearing; everything else comes from the schedule.
func NewWorld(cfg Config, seed int64) (*World, error) {
	t := &Trace{}
	w := &World{
		cfg: cfg, Trace: t, ctx: context.Background(), now: Epoch,
		crashR: rand.New(rand.NewSource(seed)),
		rows:   map[string]store.Row{}, acked: map[string]int64{}, maybe: map[string]bool{},
	}
	w.Source = newNode("east", t, store.Options{Dir: sourceDir, MemtableBytes: cfg.MemtableBytes,
		RetentionBytes: cfg.SourceRetentionBytes, RetentionAge: cfg.SourceRetentionAge, PinMaxBytes: cfg.PinMaxBytes,
		OnPinnedLoss: func(pin string, first, last int64) {
			t.Addf("  east retention deleted pinned seqs %d..%d (pin %s over PinMaxBytes)", first, last, pin)
			w.pinnedLoss = append(w.pinnedLoss, [2]int64{first, last})
		}})
	w.Target = newNode("global", t, store.Options{Dir: targetDir, MemtableBytes: cfg.MemtableBytes})
	w.Source.FS.SyncLies = cfg.SourceSyncLies
	w.Target.FS.SyncLies = cfg.TargetSyncLies
	if err := w.Source.FS.MkdirAll("/data/relay"); err != nil {
		return nil, err
	}
	var err error
	policyJSON := PolicySpec{Layers: []LayerSpec{{Kind: "jwt", Keys: []KeySpec{{Cluster: SourceCluster, Secret: string(relaySecret)}}, Leeway: cfg.Leeway}}}.JSON()
	w.policy, err = auth.ParsePolicy(policyJSON, w.Target.FS, w.Target.Clock)
	if err != nil {
		return nil, fmt.Errorf("target policy: %w", err)
	}
	w.minter = auth.NewMinter(relaySecret, SourceCluster, "", cfg.TokenTTL, w.Source.Clock)
	w.Net = &Net{
		trace:    t,
		PeerAddr: peerAddr,
		Target: func() Endpoint {
			if w.Target.Store == nil {
				return nil
			}
			return w.Target.Store
		},
		Token:             w.minter.Token,
		Gate:              w.gate,
		Advance:           w.Advance,
		Latency:           cfg.Latency,
		AckWithoutStoring: cfg.AckWithoutStoring,
		BeforeApply:       func() { w.autoFlush(w.Target) },
		OnApplied: func(a store.Ack) {
			w.targetAcked = max(w.targetAcked, a.Last)
		},
	}
	if err := w.Source.open(); err != nil {
		return nil, err
	}
	if err := w.Target.open(); err != nil {
		return nil, err
	}
	if err := w.startRelay(); err != nil {
		return nil, err
	}
	t.Addf("world start: %+v", cfg)
	return w, nil
}

// gate is the target's ingress check, through the real auth policy on the
// target's clock.
func (w *World) gate(remote string, h http.Header) (bool, bool, string, string) {
	v := w.policy.Admit(remote, h)
	if !v.Admitted {
		return false, v.Code == auth.CodeUnauthenticated, "", v.Reason + " (" + v.Cause + ")"
	}
	if v.Identity.Kind == auth.LayerJWT {
		return true, false, v.Identity.Cluster, v.Reason
	}
	return true, false, v.Identity.CIDR, v.Reason
}

// startRelay builds a forwarder over whatever the source disk holds, as the
// daemon does at start. Backfill: the relay starts with the world, so "the
// source's current cursor" would be 0 anyway; setting it keeps a restart
// before the first durable seed from skipping rows.
func (w *World) startRelay() error {
	src := w.Source.Store
	jitter := rand.New(rand.NewSource(int64(w.SourceCrashes) + 1))
	if w.cfg.WallClockJitter {
		jitter = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	f, err := relay.New(relay.Config{
		Source:         relay.StoreSource{Store: src},
		Sink:           w.Net.Sink(),
		FS:             w.Source.FS,
		Clock:          w.Source.Clock,
		Rand:           jitter,
		StatePath:      statePath,
		DeadLetterPath: deadPath,
		Target:         targetURL,
		Producer:       Producer,
		Cluster:        SourceCluster,
		Options:        relay.Options{BatchRows: w.cfg.BatchRows, InFlight: 1, Backfill: true, NonIdempotent: w.cfg.NonIdempotent},
		Pin:            func(seq int64) { src.SetPin(relay.PinName, seq) },
	})
	if err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	w.Relay = f
	return nil
}

// Workarounds lists what the harness does by default to step around open
// bugs it found in the code under test, so the other properties keep being
// checked. Config.Strict (go test ./sim -sim.strict) turns them off.
var Workarounds []string

// Advance moves true time forward by d on every node, keeping each node's
// skew.
func (w *World) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	w.now = w.now.Add(d)
	w.Source.Clock.Set(w.now.Add(w.Source.skew))
	w.Target.Clock.Set(w.now.Add(w.Target.skew))
}

// Close stops both stores cleanly.
func (w *World) Close() error {
	var first error
	for _, n := range []*Node{w.Source, w.Target} {
		if n.Store != nil {
			if err := n.Store.Close(); err != nil && first == nil {
				first = fmt.Errorf("%s: close: %w", n.Name, err)
			}
			n.Store = nil
		}
	}
	return first
}
