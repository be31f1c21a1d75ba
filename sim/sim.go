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
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"slices"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/server"
	"github.com/finelog/finelog/store"
)

// Names of the simulated world.
const (
	SourceCluster = "east"
	TargetName    = "global"
	Producer      = "east/store-1"
	storeDir      = "/data/store"
	dataDir       = "/data"
	statePath     = "/data/relay/watermark.json"
	deadPath      = "/data/relay/dead-letter.jsonl"
	// readerPeer is where the harness's own reads come from; the target's
	// policy admits it by address (readerCIDR), never a relay.
	readerPeer = "10.99.0.7:7000"
	readerCIDR = "10.99.0.0/16"
	blackHole  = "blackhole"
)

// clusterKey is the key a cluster's relay mints with and the target
// verifies with. Test constants, never real credentials.
func clusterKey(cluster string) auth.Secret {
	return auth.Secret("sim-relay-secret-" + cluster + "-0123456789abcdef")
}

// wrongKey is configured nowhere: a relay minting with it is refused.
var wrongKey = auth.Secret("sim-key-that-no-target-has-configured-0123")

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
	// Defects puts known bugs into the target's server (canaries).
	Defects server.Defects
	// LateRelay constructs a relay only once its target answers, while the
	// harness still counts it as enabled at its EnableRelay: a relay that
	// fixes its starting point at first contact (the completeness canary).
	LateRelay bool

	// Nodes is the world's machines; nil means DefaultNodes.
	Nodes []NodeSpec
	// RelayByAction: relays are not enabled at start but by an EnableRelay
	// action (rows acked before it need not be forwarded); with it the
	// relays run without Backfill, as the daemon does by default.
	RelayByAction bool
	// Hostile adds the key of cluster HostileCluster to the target's
	// policy, for Poison actions (poison.go).
	Hostile bool
	// Federation is the federated world (federation.go): with
	// FederationNodes, home reads east and west through its peers file.
	Federation bool
	// DropPeerRows (canary): home's proxy silently drops the first row
	// of every answer from this peer.
	DropPeerRows string
}

// NodeSpec is one machine of the world.
type NodeSpec struct {
	Name    string
	Cluster string
	// Serves: the node runs finelogd's server (a target).
	Serves bool
	// RelayTo names the node this one's relay forwards to ("" = no relay).
	RelayTo string
	// KeyOf is the cluster whose key the relay mints with ("" = its own
	// cluster's). Another cluster's key makes it an impostor: every row it
	// sends carries its own cluster under that other identity.
	KeyOf string
	// Peer is the node's transport address as servers see it.
	Peer string
}

// DefaultNodes is the source cluster east relaying to the global target.
func DefaultNodes() []NodeSpec {
	return []NodeSpec{
		{Name: SourceCluster, Cluster: SourceCluster, RelayTo: TargetName, Peer: "10.20.30.40:43210"},
		{Name: TargetName, Cluster: TargetName, Serves: true, Peer: "10.20.30.1:8080"},
	}
}

func (s NodeSpec) key() string {
	if s.KeyOf != "" {
		return s.KeyOf
	}
	return s.Cluster
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

	// Nodes are the machines, in Config.Nodes order (Action.Node indexes
	// it); Source is the first relaying node and Target the node it
	// relays to, the pair the no-loss properties are about.
	Nodes          []*Node
	byName         map[string]*Node
	Source, Target *Node
	Net            *Net
	// Relay is the Source's forwarder (nil while not enabled).
	Relay      *relay.Forwarder
	policyJSON string
	// blackHole is the ack-without-storing canary's sink (else nil).
	blackHole *Node

	// Models the checkers compare against.
	rows      map[string]store.Row // every row ever submitted, by its unique Data
	acked     map[string]int64     // Data → source seq, for rows the source acked
	ackedList []string             // acked Data in ack order (deterministic iteration)
	maybe     map[string]bool      // rows whose append failed: may or may not exist
	nextRow   int

	// pinnedLoss are source seq ranges the store reported deleting
	// although pinned (PinMaxBytes exceeded): loss the system owns up to.
	pinnedLoss [][2]int64

	// origin is the node each row was produced on, by Data.
	origin map[string]*Node
	// batch is the overtaking producer (overtake.go).
	batch batcher
	// reader is the harness's FetchLogs client (read.go); Reads counts
	// the reads it checked.
	reader loggingpbconnect.LogServiceClient
	Reads  int
	// FedReads counts the federated reads checked (federation.go).
	FedReads int
	// fanTurns orders a fan-out's peer calls (federation.go).
	fanTurns turnstile

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
	// hostileAccepted are forged producer requests the target took
	// (poison.go): each one a violation.
	hostileAccepted []string
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
	// NonEmptyReads counts checked reads that returned rows.
	NonEmptyReads int
	// LongPolls counts reads that parked in the server until time moved.
	LongPolls int
	// GapRefusals counts overtaking batches the target refused.
	GapRefusals int
	// UnreachableEnables counts relays enabled while their target was
	// down, partitioned away or refusing the key.
	UnreachableEnables int
	// Poisons counts forged producer pushes sent; PoisonRefusals those
	// the target refused as not the sender's producer.
	Poisons, PoisonRefusals int
	// FedUnreachable counts federated reads that named a cluster they
	// could not reach; FedRowsChecked those that matched an owner's rows.
	FedUnreachable, FedRowsChecked int
}

// NewWorld builds the nodes, opens their stores, starts the servers and
// (unless Config.RelayByAction) the relays. seed drives only the crash
// tearing; everything else comes from the schedule.
func NewWorld(cfg Config, seed int64) (*World, error) {
	t := &Trace{}
	w := &World{
		cfg: cfg, Trace: t, ctx: context.Background(), now: Epoch,
		crashR: rand.New(rand.NewSource(seed)),
		rows:   map[string]store.Row{}, acked: map[string]int64{}, maybe: map[string]bool{},
		byName: map[string]*Node{}, origin: map[string]*Node{},
	}
	specs := cfg.Nodes
	if specs == nil {
		specs = DefaultNodes()
	}
	if cfg.AckWithoutStoring {
		// Pushes meant for the target land in a store nobody reads.
		specs = append(append([]NodeSpec(nil), specs...), NodeSpec{Name: blackHole, Cluster: TargetName, Serves: true})
	}
	keys := map[string]bool{}
	for _, sp := range specs {
		if sp.RelayTo != "" && sp.KeyOf == "" {
			keys[sp.Cluster] = true
		}
	}
	if cfg.Hostile {
		keys[HostileCluster] = true
	}
	if cfg.Federation {
		// home's delegation tokens: its peers know its key under its name.
		keys[FedHome] = true
	}
	for _, sp := range specs {
		if _, dup := w.byName[sp.Name]; dup {
			return nil, fmt.Errorf("two nodes named %q", sp.Name)
		}
		opts := store.Options{Dir: storeDir, MemtableBytes: cfg.MemtableBytes}
		if sp.RelayTo != "" {
			opts.RetentionBytes, opts.RetentionAge, opts.PinMaxBytes = cfg.SourceRetentionBytes, cfg.SourceRetentionAge, cfg.PinMaxBytes
		}
		n := newNode(sp, t, opts)
		if sp.Name == blackHole {
			w.byName[sp.Name] = n
			w.blackHole = n
		} else {
			w.Nodes = append(w.Nodes, n)
			w.byName[sp.Name] = n
		}
	}
	for _, n := range w.Nodes {
		if n.spec.RelayTo != "" {
			if _, ok := w.byName[n.spec.RelayTo]; !ok {
				return nil, fmt.Errorf("node %s relays to unknown node %q", n.Name, n.spec.RelayTo)
			}
			if w.Source == nil {
				w.Source, w.Target = n, w.byName[n.spec.RelayTo]
			}
		}
	}
	if w.Source == nil {
		return nil, errors.New("no node relays: the world needs a source")
	}
	w.Source.opts.OnPinnedLoss = func(pin string, first, last int64) {
		t.Addf("  %s retention deleted pinned seqs %d..%d (pin %s over PinMaxBytes)", w.Source.Name, first, last, pin)
		w.pinnedLoss = append(w.pinnedLoss, [2]int64{first, last})
	}
	w.Source.FS.SyncLies = cfg.SourceSyncLies
	w.Target.FS.SyncLies = cfg.TargetSyncLies

	policy := PolicySpec{Layers: []LayerSpec{{Kind: "cidr", CIDRs: []string{readerCIDR}}, {Kind: "jwt", Leeway: cfg.Leeway}}}
	for _, c := range sortedKeys(keys) {
		policy.Layers[1].Keys = append(policy.Layers[1].Keys, KeySpec{Cluster: c, Secret: string(clusterKey(c))})
	}
	w.policyJSON = string(policy.JSON())

	w.Net = &Net{
		trace:    t,
		Isolated: map[string]bool{},
		Handler: func(host string) http.Handler {
			if n := w.byName[host]; n != nil && n.Server != nil && !n.down {
				return n.Server.Handler()
			}
			return nil
		},
		Advance: w.Advance,
		Latency: cfg.Latency,
		BeforeDeliver: func(host string) {
			if n := w.byName[host]; n != nil {
				w.autoFlush(n)
			}
		},
		OnPushApplied: func(host string) {
			if host == w.Target.Name && w.Target.Store != nil {
				w.targetAcked = max(w.targetAcked, w.Target.Store.LastSeq())
			}
		},
	}
	if cfg.AckWithoutStoring {
		w.Net.Redirect = map[string]string{w.Target.Name: blackHole}
	}
	for _, n := range append(append([]*Node(nil), w.Nodes...), w.blackHole) {
		if n == nil {
			continue
		}
		if err := n.FS.MkdirAll("/data/relay"); err != nil {
			return nil, err
		}
		if err := w.preparePeers(n); err != nil {
			return nil, err
		}
		if err := n.open(); err != nil {
			return nil, err
		}
		if err := w.startServer(n); err != nil {
			return nil, err
		}
	}
	t.Addf("world start: %+v", cfg)
	if !cfg.RelayByAction {
		for _, n := range w.Nodes {
			if n.spec.RelayTo != "" {
				if err := w.enableRelay(n); err != nil {
					return nil, err
				}
			}
		}
	}
	return w, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
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
	for _, n := range w.allNodes() {
		n.Clock.Set(w.now.Add(n.skew))
	}
}

// allNodes is Nodes plus the canary's black hole.
func (w *World) allNodes() []*Node {
	if w.blackHole == nil {
		return w.Nodes
	}
	return append(append([]*Node(nil), w.Nodes...), w.blackHole)
}

// Node returns the node called name, or nil.
func (w *World) Node(name string) *Node { return w.byName[name] }

// Close stops every store cleanly.
func (w *World) Close() error {
	var first error
	for _, n := range w.allNodes() {
		if n.Store != nil {
			if err := n.Store.Close(); err != nil && first == nil {
				first = fmt.Errorf("%s: close: %w", n.Name, err)
			}
			n.Store, n.Server = nil, nil
		}
	}
	return first
}
