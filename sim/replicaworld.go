package sim

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/peer"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/server"
	"github.com/finelog/finelog/store"
)

// ReplicaWorld is a primary finelogd with --min-replica-acks 1 and a
// standby finelogd following it with --replica-of, each the real server over
// its own crashable disk and clock, linked by the real replica port: the
// peer package's handshake (PSK, BLAKE3 MACs), its tagged frames and its
// link steps (peer.PrimaryLink, peer.ReplicaLink), over simulated TCP
// connections (peerPipe) that the schedule delivers, drops, cuts and
// partitions. Clients push to the primary's real handler; a relay (the real
// relay.Forwarder on its own source store) forwards into the primary, and
// after the primary's disk is lost, into the promoted standby. An intruder
// without the PSK answers the standby's dial when the network is hijacked,
// dials the primary as a replica, and injects forged frames into the link.
//
// Determinism: the link's loops are not run as goroutines here. The
// harness calls the same step functions the production loops are thin
// wrappers of (the peer package's PrimaryLink and ReplicaLink), each on its
// own turn, so which frame holds what does not depend on the scheduler.
// Only two things run on goroutines: a handshake's acceptor side (the three
// messages need both ends), after which the harness waits for both to
// return; and each client push or relay step, because the primary's handler
// blocks in --min-replica-acks until an Ack the harness has yet to deliver.
// After every action the harness waits until each of those has returned or
// is parked in that wait (peer.Primary.Parked: nothing but a later Ack, link
// change or its timeout on the primary's clock can release it), so every
// step starts from the same state whatever the goroutine schedule was.
type ReplicaWorld struct {
	ctx   context.Context
	rng   *rand.Rand
	seed  int64
	cfg   ReplicaWorldConfig
	Trace *Trace
	// net carries the harness's own requests (the promotion); every client
	// op gets a Net of its own (opNet), so what its requests trace lands in
	// the world's trace when the op is finished, in a fixed order.
	net *Net
	// relayNet is the relay's network; its trace is replaced per step.
	relayNet *Net
	// P is the primary, S the standby, Src the relay's source store.
	P, S, Src *Node
	relay     *relay.Forwarder
	link      *replicaLink // nil while the standby has no link
	// partitioned: the primary and the standby cannot reach each other.
	partitioned bool
	// hijack: the standby's next dial reaches the intruder.
	hijack bool
	ops    []*replicaOp
	// relayOp is the relay's Step while it runs.
	relayOp *replicaOp

	// Acked are the rows clients were told are stored, by seq.
	Acked map[int64]string
	// RelayAcked is the relay's watermark: every source seq up to it was
	// acknowledged by the target.
	appended, srcAppended int
	// IntruderHandshakes counts handshakes a real node completed with the
	// intruder, which does not hold the PSK.
	IntruderHandshakes int
	// Coverage: states the properties are about.
	Timeouts, Refused, TagFailures, Injected int
	// SegmentsAdopted counts the primary's segment files the standby
	// adopted.
	SegmentsAdopted       int
	primaryLost, promoted bool
	markAtPromote         int64
}

// ReplicaWorldConfig is what a replica run varies.
type ReplicaWorldConfig struct {
	// Defects are the replica port's canaries, on both finelogds.
	Defects peer.Defects
}

const (
	replicaPrimary     = "primary"
	replicaStandby     = "standby"
	replicaSource      = "east"
	replicaPeerAddr    = replicaPrimary + ":7071"
	replicaPSK         = "sim replica port psk: 0123456789abcdef"
	replicaIntruderPSK = "the intruder's guess at the psk 0123456789"
	// replicaProducer is the relay's producer id at its targets.
	replicaProducer   = replicaSource + "/store-1"
	replicaAckTimeout = 10 * time.Second
)

// replicaOp is a client action that may wait for replica acks: a push or a
// relay step, on its own goroutine.
type replicaOp struct {
	name   string
	done   chan struct{}
	cancel context.CancelFunc
	// finish runs on the harness's goroutine once the op returned.
	finish func()
}

// NewReplicaWorld starts both finelogds and the relay's source store.
func NewReplicaWorld(cfg ReplicaWorldConfig, seed int64) (*ReplicaWorld, error) {
	w := &ReplicaWorld{ctx: context.Background(), rng: rand.New(rand.NewSource(seed)), seed: seed, cfg: cfg, Trace: &Trace{}, Acked: map[int64]string{}}
	w.net = &Net{trace: w.Trace, Handler: w.handler}
	w.relayNet = &Net{trace: &Trace{}, Handler: w.handler}
	// The primary deletes every flushed segment on Retain, so the floor
	// moves often; the standby follows it.
	w.P = newNode(NodeSpec{Name: replicaPrimary, Cluster: "global", Serves: true}, w.Trace, store.Options{Dir: storeDir, MemtableBytes: 4 << 10, RetentionBytes: 1})
	w.S = newNode(NodeSpec{Name: replicaStandby, Cluster: "global", Serves: true}, w.Trace, store.Options{Dir: storeDir, MemtableBytes: 4 << 10, RetentionBytes: 1, Following: true})
	w.Src = newNode(NodeSpec{Name: replicaSource, Cluster: replicaSource}, w.Trace, store.Options{Dir: storeDir, MemtableBytes: 4 << 10})
	for _, n := range []*Node{w.P, w.S, w.Src} {
		if err := n.open(); err != nil {
			return nil, err
		}
	}
	if err := w.Src.FS.MkdirAll("/data/relay"); err != nil {
		return nil, err
	}
	if err := w.startServer(w.P); err != nil {
		return nil, err
	}
	if err := w.startServer(w.S); err != nil {
		return nil, err
	}
	w.startRelay(replicaPrimary)
	return w, nil
}

func (w *ReplicaWorld) handler(host string) http.Handler {
	for _, n := range []*Node{w.P, w.S} {
		if n.Name == host && n.Server != nil {
			return n.Server.Handler()
		}
	}
	return nil
}

// startServer runs finelogd's server on n's open store with the replica
// port's flags: the primary listens with --min-replica-acks 1, the standby
// follows it. DriveLinks: the harness makes and steps the links.
func (w *ReplicaWorld) startServer(n *Node) error {
	pc := server.PeerConfig{PSKEnv: auth.Secret(replicaPSK), NodeName: n.Name, DriveLinks: true,
		Rand: rand.New(rand.NewSource(w.seed*31 + int64(n.crashes)*7 + int64(len(n.Name))))}
	if n == w.P {
		pc.Listen, pc.MinReplicaAcks, pc.AckTimeout = replicaPeerAddr, 1, replicaAckTimeout
	} else {
		pc.ReplicaOf = replicaPeerAddr
	}
	// Every client of this world is on the trusted network (the auth
	// policy has its own simulation).
	policy := PolicySpec{Layers: []LayerSpec{{Kind: "cidr", CIDRs: []string{"10.0.0.0/8"}}}}
	srv, err := server.New(server.Config{DataDir: dataDir, Cluster: n.Cluster, MemtableBytes: 4 << 10, FS: n.FS, Clock: n.Clock, AuthPolicy: string(policy.JSON()),
		Defects: server.Defects{Peer: w.cfg.Defects}, Peer: pc})
	if err != nil {
		return fmt.Errorf("%s: server: %w", n.Name, err)
	}
	if err := srv.ServeStore(w.ctx, n.Store); err != nil {
		return fmt.Errorf("%s: server: %w", n.Name, err)
	}
	n.Server = srv
	return nil
}

// startRelay builds the relay on the source store, forwarding to target.
func (w *ReplicaWorld) startRelay(target string) {
	url := relayURL(target)
	src := w.Src.Store
	f, err := relay.New(relay.Config{
		Source:         relay.StoreSource{Store: src},
		Sink:           relay.NewClientSink(url, w.relayNet.Client(replicaSource, "10.20.30.40:43210"), nil, 0),
		FS:             w.Src.FS,
		Clock:          w.Src.Clock,
		Rand:           rand.New(rand.NewSource(w.seed + 1)),
		StatePath:      statePath,
		DeadLetterPath: deadPath,
		Target:         url,
		Producer:       replicaProducer,
		Cluster:        replicaSource,
		Options:        relay.Options{BatchRows: 8, InFlight: 1, Backfill: true},
		Pin:            func(seq int64) { src.SetPin(relay.PinName, seq) },
	})
	if err != nil {
		panic(fmt.Sprintf("sim: relay config: %v", err)) // a harness bug, not a finding
	}
	w.relay = f
}

// start runs f as a client op and settles.
func (w *ReplicaWorld) start(name string, f func(ctx context.Context) func()) error {
	ctx, cancel := context.WithCancel(w.ctx)
	op := &replicaOp{name: name, done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(op.done)
		op.finish = f(ctx)
	}()
	w.ops = append(w.ops, op)
	return w.settle()
}

// settle waits until every client op has returned or is parked in the
// primary's --min-replica-acks wait, then finishes the returned ones in the
// order they started.
func (w *ReplicaWorld) settle() error {
	guard := time.Now().Add(30 * time.Second) // only against a harness hang
	for {
		running := 0
		for _, op := range w.ops {
			select {
			case <-op.done:
			default:
				running++
			}
		}
		parked := 0
		if w.P.Server != nil {
			parked = w.P.Server.PeerPrimary().Parked()
		}
		if running == 0 || parked == running {
			break
		}
		if time.Now().After(guard) {
			return fmt.Errorf("sim: %d client ops neither returned nor waited for replica acks (%d parked)", running, parked)
		}
		runtime.Gosched()
	}
	keep := w.ops[:0]
	for _, op := range w.ops {
		select {
		case <-op.done:
			if op.finish != nil {
				op.finish()
			}
			if op == w.relayOp {
				w.relayOp = nil
			}
		default:
			keep = append(keep, op)
		}
	}
	w.ops = keep
	return nil
}

// Push is a client pushing n rows to the primary; it is told they are
// stored once a replica synced them.
func (w *ReplicaWorld) Push(n int) error {
	if w.P.Server == nil {
		return nil
	}
	req := &loggingpb.PushLogsRequest{Key: "/job/client"}
	for range n {
		w.appended++
		req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: fmt.Sprintf("client row %d", w.appended)})
	}
	opNet := &Net{trace: &Trace{}, Handler: w.handler}
	c := client.New(relayURL(replicaPrimary), client.WithHTTPClient(opNet.Client("client", "10.0.0.9:40000")), client.WithRetry(1, 0, 0))
	return w.start("push", func(ctx context.Context) func() {
		resp, err := c.Push(ctx, req)
		return func() {
			w.Trace.lines = append(w.Trace.lines, opNet.trace.lines...)
			if err != nil {
				if strings.Contains(err.Error(), "within") && strings.Contains(err.Error(), "retry the push") {
					w.Timeouts++
				}
				w.Trace.Addf("push of %d rows: %s", len(req.Entries), replicaFirstLine(err))
				return
			}
			for i, e := range req.Entries {
				w.Acked[resp.GetFirstSeq()+int64(i)] = e.GetData()
			}
			w.Trace.Addf("push of %d rows: acked seqs [%d,%d]", len(req.Entries), resp.GetFirstSeq(), resp.GetLastSeq())
		}
	})
}

// SourceAppend stores n rows on the relay's source.
func (w *ReplicaWorld) SourceAppend(n int) error {
	rows := make([]store.Row, n)
	for i := range rows {
		w.srcAppended++
		rows[i] = store.Row{Key: "/job/relayed", Source: "stdout", Data: fmt.Sprintf("src %d", w.srcAppended), EpochMS: Epoch.UnixMilli(), Level: store.LevelInfo, Cluster: replicaSource}
	}
	_, err := w.Src.Store.Append(w.ctx, store.Batch{Rows: rows})
	return err
}

// RelayStep is one relay.Forwarder.Step, unless the last one still waits.
func (w *ReplicaWorld) RelayStep() error {
	if w.relayOp != nil {
		return nil
	}
	f := w.relay
	opTrace := &Trace{}
	w.relayNet.trace = opTrace
	err := w.start("relay step", func(ctx context.Context) func() {
		_, err := f.Step(ctx)
		return func() {
			w.Trace.lines = append(w.Trace.lines, opTrace.lines...)
			w.Trace.Addf("relay step: watermark %d: %s", f.Watermark(), replicaFirstLine(err))
		}
	})
	if len(w.ops) > 0 && w.ops[len(w.ops)-1].name == "relay step" {
		w.relayOp = w.ops[len(w.ops)-1]
	}
	return err
}

func replicaFirstLine(err error) string {
	if err == nil {
		return "ok"
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Advance moves every clock by d: waits for replica acks may time out.
func (w *ReplicaWorld) Advance(d time.Duration) error {
	for _, n := range []*Node{w.P, w.S, w.Src} {
		n.Clock.Advance(d)
	}
	w.Trace.Addf("advance %s", d)
	return w.settle()
}

// Maintain flushes the primary and, with retain, runs its retention (the
// floor rises; with RetentionBytes 1 the new segment goes at once, before
// it can be shipped), and flushes the standby when its memtable is past
// three times its bound: while it follows, the primary's shipped segments take
// its rows, and its own flush is the fallback (store.SetAdoptShipped).
func (w *ReplicaWorld) Maintain(retain bool) error {
	if w.P.Store != nil {
		if err := w.P.Store.Flush(w.ctx); err != nil {
			return err
		}
		if retain {
			if err := w.P.Store.Retain(w.ctx); err != nil {
				return err
			}
		}
	}
	if w.S.Store != nil && (w.promoted || w.S.Store.Stats().MemtableBytes >= 3*w.S.opts.MemtableBytes) {
		return w.S.Store.Flush(w.ctx)
	}
	return nil
}

// abandonOps: the primary's process goes away, and with it every request
// waiting on it (the clients see the connection fail).
func (w *ReplicaWorld) abandonOps() error {
	for _, op := range w.ops {
		op.cancel()
	}
	for _, op := range w.ops {
		<-op.done
	}
	return w.settle()
}

// CrashPrimary cuts the primary's power and restarts it from its disk.
func (w *ReplicaWorld) CrashPrimary() error {
	if err := w.linkDown("primary crashed"); err != nil {
		return err
	}
	if err := w.abandonOps(); err != nil {
		return err
	}
	w.P.crash(w.rng)
	w.Trace.Addf("primary power cut")
	if err := w.P.open(); err != nil {
		return err
	}
	return w.startServer(w.P)
}

// CrashStandby cuts the standby's power and restarts it from its disk.
func (w *ReplicaWorld) CrashStandby() error {
	if err := w.linkDown("standby crashed"); err != nil {
		return err
	}
	w.S.crash(w.rng)
	w.Trace.Addf("standby power cut")
	w.S.opts.Following = !w.promoted
	if err := w.S.open(); err != nil {
		return err
	}
	return w.startServer(w.S)
}

// Close stops every op and closes the stores.
func (w *ReplicaWorld) Close() {
	w.linkDown("close")
	w.abandonOps()
	for _, n := range []*Node{w.P, w.S, w.Src} {
		if n.Store != nil {
			n.Store.Close()
			n.Store, n.Server = nil, nil
		}
	}
}
