package sim

import (
	"context"
	"errors"
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
	primaryLost, promoted                    bool
	markAtPromote                            int64
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

// replicaIntruderKey is the key the intruder holds: long enough, but not the
// cluster's.
func replicaIntruderKey() peer.PSK {
	k, err := peer.NewPSK([]byte(replicaIntruderPSK), "sim intruder")
	if err != nil {
		panic(err) // a harness bug
	}
	return k
}

// replicaLink is the link between the standby and whoever answered its
// dial: the primary (pc, pl) or the intruder (intruder).
type replicaLink struct {
	pipe     *peerPipe
	pc, rc   *peer.Conn
	pl       *peer.PrimaryLink // after the primary took the Subscribe
	rl       *peer.ReplicaLink
	intruder *peer.Conn
}

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

// Dial: the standby, without a link, dials the primary's peer port and
// runs the real handshake; on success it subscribes. When the network is
// hijacked the intruder answers instead.
func (w *ReplicaWorld) Dial() error {
	if w.link != nil || w.S.Server == nil || !w.S.Server.Following() {
		return nil
	}
	hijacked := w.hijack
	w.hijack = false
	if !hijacked && (w.partitioned || w.P.Server == nil) {
		w.Trace.Addf("standby dial: unreachable")
		w.S.Server.PeerReplica().Disconnected(errors.New("sim: primary unreachable"))
		return nil
	}
	pipe := newPeerPipe("standby:40001", replicaPeerAddr)
	type accepted struct {
		c   *peer.Conn
		err error
	}
	res := make(chan accepted, 1)
	if hijacked {
		acc, err := peer.NewAcceptor(peer.AcceptorConfig{Cluster: peer.NameID("global"), Node: peer.NameID(replicaPrimary), PSK: replicaIntruderKey(),
			Rand: rand.New(rand.NewSource(w.rng.Int63())), Clock: w.P.Clock, Defects: peer.Defects{SkipMACCheck: true}})
		if err != nil {
			return err
		}
		go func() { c, err := acc.Accept(pipe.acceptor()); res <- accepted{c, err} }()
	} else {
		p := w.P.Server.PeerPrimary()
		go func() { c, err := p.Accept(pipe.acceptor()); res <- accepted{c, err} }()
	}
	rc, derr := w.S.Server.PeerReplica().Handshake(pipe.dialer())
	if derr != nil {
		pipe.close()
	}
	a := <-res
	pipe.manual()
	who := "primary"
	if hijacked {
		who = "intruder"
	}
	w.Trace.Addf("standby dial (%s): standby %s, acceptor %s", who, replicaFirstLine(derr), replicaFirstLine(a.err))
	if derr == nil && hijacked {
		w.IntruderHandshakes++
	}
	if derr != nil || a.err != nil {
		pipe.close()
		w.S.Server.PeerReplica().Disconnected(errors.Join(derr, a.err))
		return nil
	}
	rl, err := w.S.Server.PeerReplica().Attach(rc)
	if err != nil {
		pipe.close()
		return nil
	}
	w.link = &replicaLink{pipe: pipe, rc: rc, rl: rl}
	if hijacked {
		// The intruder feeds the standby rows of its own.
		w.link.intruder = a.c
		if err := a.c.Send(peer.TypeRecords, w.forgedRecords()); err != nil {
			return nil
		}
	} else {
		w.link.pc = a.c
	}
	return nil
}

// forgedRecords is a Records body with one row the primary never wrote,
// at the standby's next seq.
func (w *ReplicaWorld) forgedRecords() []byte {
	next := w.S.Store.LastSeq() + 1
	row := store.Row{Seq: next, Key: "/job/client", Source: "stdout", Data: fmt.Sprintf("forged row %d", next), EpochMS: Epoch.UnixMilli(), Level: store.LevelInfo, Cluster: "global"}
	return peer.EncodeRecords(nil, peer.Records{Floor: w.S.Store.Floor(), PrimaryLast: next,
		Records: []store.Record{{First: next, Last: next, Rows: []store.Row{row}, Floor: w.S.Store.Floor()}}})
}

// IntruderDial: the intruder dials the primary's peer port as a replica,
// with its own key.
func (w *ReplicaWorld) IntruderDial() error {
	if w.P.Server == nil {
		return nil
	}
	pipe := newPeerPipe("intruder:40002", replicaPeerAddr)
	res := make(chan error, 1)
	p := w.P.Server.PeerPrimary()
	go func() {
		c, err := p.Accept(pipe.acceptor())
		if c != nil {
			c.Close()
		}
		res <- err
	}()
	dc, derr := peer.Handshake(pipe.dialer(), peer.DialerConfig{Cluster: peer.NameID("global"), Node: peer.NameID(replicaStandby), PSK: replicaIntruderKey(),
		Rand: rand.New(rand.NewSource(w.rng.Int63())), Clock: w.P.Clock, Defects: peer.Defects{SkipMACCheck: true}})
	if dc != nil {
		// The acceptor reads the Finish before it answers nothing or
		// returns a link; closing after that keeps the outcome the MAC's.
		defer dc.Close()
	}
	_ = derr
	aerr := <-res
	pipe.close()
	w.Trace.Addf("intruder dials the primary: primary %s", replicaFirstLine(aerr))
	if aerr == nil {
		w.IntruderHandshakes++
	}
	return nil
}

// Hijack makes the standby's next dial reach the intruder (a poisoned
// name or a spoofed address); the current link is cut so it redials.
func (w *ReplicaWorld) Hijack() error {
	w.hijack = true
	return w.linkDown("hijack: the network reroutes the standby's link")
}

// Inject: a node on the path puts a Records frame of its own, tagged
// with a key it made up, into the stream towards the standby.
func (w *ReplicaWorld) Inject() error {
	l := w.link
	if l == nil || l.pipe.isClosed() {
		return nil
	}
	var k [32]byte
	w.rng.Read(k[:])
	l.pipe.inject(0, peer.SealFrame(nil, &k, 0, peer.TypeRecords, w.forgedRecords()))
	w.Injected++
	w.Trace.Addf("intruder injects a Records frame towards the standby")
	return nil
}

// Ship: the primary sends everything its store has for the standby.
func (w *ReplicaWorld) Ship() error {
	l := w.link
	if l == nil || l.pl == nil {
		return nil
	}
	sent, err := l.pl.SendReady(w.ctx)
	w.Trace.Addf("primary ship: sent %v: %s", sent, replicaFirstLine(err))
	if err != nil {
		return w.linkDown("ship: " + err.Error())
	}
	return nil
}

// Beat is the primary's idle beat on the link (a floor-only frame or a
// Heartbeat).
func (w *ReplicaWorld) Beat() error {
	l := w.link
	if l == nil || l.pl == nil {
		return nil
	}
	if err := l.pl.Idle(); err != nil {
		return w.linkDown("beat: " + err.Error())
	}
	return nil
}

// ToStandby delivers what is in flight to the standby, which reads every
// frame that arrived and applies their records with one write and one
// Ack, as its applier does with what arrived during the last fdatasync.
func (w *ReplicaWorld) ToStandby() error {
	l := w.link
	if l == nil {
		return nil
	}
	if w.partitioned && l.intruder == nil {
		w.Trace.Addf("to standby: partitioned")
		return nil
	}
	l.pipe.deliver(1)
	var frames []peer.Records
	for l.pipe.frameReady(0) {
		typ, body, err := l.rc.Recv()
		if err != nil {
			if errors.Is(err, peer.ErrBadTag) {
				w.TagFailures++
			}
			return w.linkDown("standby recv: " + err.Error())
		}
		l.rl.Heard()
		if typ != peer.TypeRecords {
			continue
		}
		b, err := peer.DecodeRecords(body)
		if err != nil {
			return w.linkDown("standby decode: " + err.Error())
		}
		frames = append(frames, b)
	}
	if len(frames) == 0 {
		return nil
	}
	err := l.rl.Apply(w.ctx, frames)
	w.Trace.Addf("standby applies %d frames: last seq %d: %s", len(frames), w.S.Store.LastSeq(), replicaFirstLine(err))
	if err != nil {
		return w.linkDown("standby apply: " + err.Error())
	}
	return nil
}

// ToPrimary delivers what is in flight to the primary (Subscribe, Acks,
// Heartbeats), then lets the pushes the Acks release answer.
func (w *ReplicaWorld) ToPrimary() error {
	l := w.link
	if l == nil {
		return nil
	}
	if l.intruder != nil {
		l.pipe.deliver(0) // the intruder reads and ignores it
		return nil
	}
	if w.partitioned {
		w.Trace.Addf("to primary: partitioned")
		return nil
	}
	l.pipe.deliver(0)
	for l.pipe.frameReady(1) {
		typ, body, err := l.pc.Recv()
		if err == nil {
			if l.pl == nil {
				l.pl, err = w.P.Server.PeerPrimary().Open(l.pc, typ, body)
			} else {
				err = l.pl.Handle(typ, body)
			}
		}
		if err != nil {
			if errors.Is(err, peer.ErrBadTag) {
				w.TagFailures++
			}
			if errors.Is(err, store.ErrTailAhead) {
				w.Refused++
			}
			return w.linkDown("primary recv: " + err.Error())
		}
	}
	return w.settle()
}

// DropFrame loses the oldest segment in flight one way.
func (w *ReplicaWorld) DropFrame(toStandby bool) {
	if w.link == nil {
		return
	}
	from := 0
	if toStandby {
		from = 1
	}
	if w.link.pipe.drop(from) {
		w.Trace.Addf("net: a peer segment lost (to standby %v)", toStandby)
	}
}

// Cut closes the link.
func (w *ReplicaWorld) Cut() error { return w.linkDown("cut") }

// Partition separates the primary and the standby, or heals them.
func (w *ReplicaWorld) Partition(on bool) {
	w.partitioned = on
	w.Trace.Addf("partition %v", on)
}

func (w *ReplicaWorld) linkDown(why string) error {
	l := w.link
	if l == nil {
		return nil
	}
	w.link = nil
	l.pipe.close()
	if l.pl != nil {
		l.pl.Close()
	}
	if w.S.Server != nil {
		w.S.Server.PeerReplica().Disconnected(errors.New(why))
	}
	w.Trace.Addf("link down: %s", replicaFirstLine(errors.New(why)))
	return w.settle()
}

// Advance moves every clock by d: waits for replica acks may time out.
func (w *ReplicaWorld) Advance(d time.Duration) error {
	for _, n := range []*Node{w.P, w.S, w.Src} {
		n.Clock.Advance(d)
	}
	w.Trace.Addf("advance %s", d)
	return w.settle()
}

// Maintain flushes and retains on the primary (the floor rises) and
// flushes the standby.
func (w *ReplicaWorld) Maintain() error {
	if w.P.Store != nil {
		if err := w.P.Store.Flush(w.ctx); err != nil {
			return err
		}
		if err := w.P.Store.Retain(w.ctx); err != nil {
			return err
		}
	}
	if w.S.Store != nil {
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

// CheckStandbyCommitted: every row the standby holds is the primary's, at
// the same seq (the primary may have deleted it by retention since). A
// forged row is one the primary does not have.
func (w *ReplicaWorld) CheckStandbyCommitted() error {
	if w.primaryLost {
		return nil
	}
	rrows, err := scanAll(w.ctx, w.S.Store)
	if err != nil {
		return err
	}
	prows, err := scanAll(w.ctx, w.P.Store)
	if err != nil {
		return err
	}
	pm := make(map[int64]string, len(prows))
	for _, r := range prows {
		pm[r.Seq] = r.Data
	}
	for _, r := range rrows {
		if d, ok := pm[r.Seq]; ok && d != r.Data || !ok && r.Seq > w.P.Store.Floor() {
			return fmt.Errorf("the standby holds seq %d %q, which the primary did not commit (it has %q, held %v)", r.Seq, r.Data, d, ok)
		}
	}
	return nil
}

// CheckOnlyKeyHolders: no real node completed a handshake with the
// intruder.
func (w *ReplicaWorld) CheckOnlyKeyHolders() error {
	if w.IntruderHandshakes > 0 {
		return fmt.Errorf("a node without the PSK completed %d peer handshakes with a finelogd (only key holders may hold a link)", w.IntruderHandshakes)
	}
	return nil
}

// LosePrimaryDisk: the primary's machine and disk are gone; the standby
// may lose power in the same incident. The operator promotes the standby.
func (w *ReplicaWorld) LosePrimaryDisk(standbyCrash bool) error {
	if err := w.linkDown("primary lost"); err != nil {
		return err
	}
	if err := w.abandonOps(); err != nil {
		return err
	}
	w.P.crash(w.rng)
	w.primaryLost = true
	w.Trace.Addf("primary disk lost")
	if standbyCrash {
		if err := w.CrashStandby(); err != nil {
			return err
		}
	}
	w.markAtPromote, _ = w.S.Store.ProducerApplied(replicaProducer)
	resp, err := w.net.ObserverClient("10.0.0.2:50000").Post("http://"+replicaStandby+"/replica/promote?force=true", "application/json", nil)
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("promote: status %d", resp.StatusCode)
	}
	w.promoted = true
	w.Trace.Addf("standby promoted at seq %d", w.S.Store.LastSeq())
	return nil
}

// CheckAckedOnStandby: after the primary's disk is lost and the standby
// promoted, every acknowledged row above the standby's floor is on it, at
// its seq, once.
func (w *ReplicaWorld) CheckAckedOnStandby() error {
	rows, err := scanAll(w.ctx, w.S.Store)
	if err != nil {
		return err
	}
	have := make(map[int64]string, len(rows))
	copies := map[string]int{}
	for _, r := range rows {
		have[r.Seq] = r.Data
		copies[r.Data]++
	}
	floor := w.S.Store.Floor()
	for seq, data := range w.Acked {
		if seq > floor && have[seq] != data {
			return fmt.Errorf("acknowledged seq %d %q is not on the promoted standby (it has %q; floor %d, last seq %d)", seq, data, have[seq], floor, w.S.Store.LastSeq())
		}
		if copies[data] > 1 {
			return fmt.Errorf("acknowledged row %q is on the promoted standby %d times", data, copies[data])
		}
	}
	return nil
}

// RelayIntoPromoted points the relay at the promoted standby, as the
// operator does, and runs it until it has forwarded the whole source.
func (w *ReplicaWorld) RelayIntoPromoted() error {
	if err := w.abandonOps(); err != nil {
		return err
	}
	w.startRelay(replicaStandby)
	for range 100 {
		if err := w.RelayStep(); err != nil {
			return err
		}
		if w.relay.Watermark() >= w.Src.Store.LastSeq() {
			return nil
		}
	}
	return fmt.Errorf("the relay into the promoted standby reached watermark %d of %d", w.relay.Watermark(), w.Src.Store.LastSeq())
}

// CheckRelayNoDuplicates: on the promoted store every source row is at
// most once, unless the standby was promoted holding rows its producer
// mark did not cover yet (rows replicated from the primary's segments come
// before the mark, docs/replica.md): those may come twice, never more.
// Every source row above the standby's floor is there.
func (w *ReplicaWorld) CheckRelayNoDuplicates() (dups int, err error) {
	rows, err := scanAll(w.ctx, w.S.Store)
	if err != nil {
		return 0, err
	}
	copies := map[int]int{}
	firstSeq := map[int]int64{}
	for _, r := range rows {
		var n int
		if _, err := fmt.Sscanf(r.Data, "src %d", &n); err != nil {
			continue
		}
		copies[n]++
		if copies[n] == 1 {
			firstSeq[n] = r.Seq
		}
	}
	for n := 1; n <= w.srcAppended; n++ {
		limit := 1
		if int64(n) > w.markAtPromote {
			limit = 2
		}
		if copies[n] > limit {
			return dups, fmt.Errorf("source row %d is on the promoted standby %d times (its producer mark at promotion was %d)", n, copies[n], w.markAtPromote)
		}
		if copies[n] > 1 {
			dups++
		}
		if int64(n) > w.markAtPromote && copies[n] == 0 {
			return dups, fmt.Errorf("source row %d is not on the promoted standby, though its producer mark at promotion (%d) was below it", n, w.markAtPromote)
		}
	}
	return dups, nil
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

// StandbyBeat is the standby's Heartbeat, which it sends every second in
// production. It is how a link that lost a segment towards the primary
// fails even when nothing else is due: the primary's frame counter no
// longer matches (in production the watchdog would close a link that
// stays silent as well).
func (w *ReplicaWorld) StandbyBeat() error {
	l := w.link
	if l == nil {
		return nil
	}
	if err := l.rc.Send(peer.TypeHeartbeat, nil); err != nil {
		return w.linkDown("standby beat: " + err.Error())
	}
	return nil
}

// Round is one healthy exchange on the link: dial if down, the standby's
// Heartbeat, the primary takes what the standby sent, ships, the standby
// applies and acks, the primary takes the Acks, and an idle beat (which
// carries a floor rise).
func (w *ReplicaWorld) Round() error {
	for _, step := range []func() error{w.Dial, w.StandbyBeat, w.ToPrimary, w.Ship, w.ToStandby, w.ToPrimary, w.Beat, w.ToStandby, w.ToPrimary} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// Drain heals the network and runs healthy rounds until the standby has
// every row and the floor of the primary and no push waits, then checks
// the copy is exact: the same rows at the same seqs, the same floor.
func (w *ReplicaWorld) Drain() error {
	w.partitioned, w.hijack = false, false
	for range 50 {
		if err := w.Round(); err != nil {
			return err
		}
		if w.link != nil && w.S.Store.LastSeq() == w.P.Store.LastSeq() && w.S.Store.Floor() == w.P.Store.Floor() && len(w.ops) == 0 {
			break
		}
	}
	if len(w.ops) > 0 {
		return fmt.Errorf("after the drain %d pushes still wait for the standby's ack", len(w.ops))
	}
	rrows, err := scanAll(w.ctx, w.S.Store)
	if err != nil {
		return err
	}
	prows, err := scanAll(w.ctx, w.P.Store)
	if err != nil {
		return err
	}
	if w.S.Store.Floor() != w.P.Store.Floor() || len(rrows) != len(prows) {
		return fmt.Errorf("after the drain the standby has floor %d and %d rows, the primary floor %d and %d rows", w.S.Store.Floor(), len(rrows), w.P.Store.Floor(), len(prows))
	}
	for i := range rrows {
		if rrows[i].Seq != prows[i].Seq || rrows[i].Data != prows[i].Data {
			return fmt.Errorf("after the drain the standby's row %d is seq %d %q, the primary's seq %d %q", i, rrows[i].Seq, rrows[i].Data, prows[i].Seq, prows[i].Data)
		}
	}
	return nil
}
