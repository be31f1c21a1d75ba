package sim

import (
	"fmt"
	"time"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

// Kind is what an Action does.
type Kind int

// The actions a schedule interleaves.
const (
	Append       Kind = iota // N rows to the source store (Cluster: "" / "east" / another cluster)
	RelayStep                // one relay.Forwarder.Step on the source node
	Advance                  // true time moves D on every clock
	Flush                    // store.Flush on Node
	Compact                  // store.Compact on Node
	Retain                   // store.Retain on Node
	Crash                    // power cut on Node, then the process restarts from its disk
	Partition                // the network between the nodes goes down
	Heal                     // ... and comes back
	DropRequest              // the next N requests never arrive
	DropResponse             // the next N requests are applied but their responses are lost
	Delay                    // the next request is held in flight; the sender times out
	Deliver                  // the oldest held request finally arrives
	Skew                     // Node's clock is set to true time + D (a jump: D may be negative)
	FSFault                  // the next Op on Node's disk fails (N == 1: with ENOSPC)
	EnableRelay              // Node's relay is switched on (Config.RelayByAction)
	BadKey                   // Node's relay mints with a key the target does not have...
	GoodKey                  // ... until it gets its own key back
	Read                     // a random FetchLogs against the target, checked against the model (read property)
	Overtake                 // a producer's two in-flight batches arrive in reverse order (the gap rule)
	Down                     // Node's server stops answering (its port is closed) ...
	Up                       // ... and answers again
	FedRead                  // home is asked for Cluster (a peer, "*", or not a peer) with filters N, checked against the owners (federation.go)
	LocalAppend              // N rows written straight into Node's store by a local writer of its cluster
	Poison                   // another identity pushes a forged batch naming the Source relay's producer (poison.go; N: 0 jwt, 1 cidr)
)

var kindNames = [...]string{"append", "relay-step", "advance", "flush", "compact", "retain", "crash", "partition", "heal",
	"drop-request", "drop-response", "delay", "deliver", "skew", "fs-fault", "enable-relay", "bad-key", "good-key", "read", "overtake", "down", "up", "fed-read", "local-append", "poison"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Action is one step of a schedule.
type Action struct {
	Kind    Kind
	Node    int // index into World.Nodes: 0 = east, 1 = global by default
	N       int
	D       time.Duration
	Op      vfs.Op
	Cluster string
	// Fetch is a Read's request.
	Fetch *FetchSpec
}

// actionNodeNames name Action.Node in printed schedules: the default world's
// nodes, then the identity world's impostor or the federated world's home,
// then the federated world's west.
var actionNodeNames = []string{SourceCluster, TargetName, "rogue|home", FedWest}

func (a Action) String() string {
	node := fmt.Sprintf("node%d", a.Node)
	if a.Node >= 0 && a.Node < len(actionNodeNames) {
		node = actionNodeNames[a.Node]
	}
	switch a.Kind {
	case Append:
		c := a.Cluster
		if c == "" {
			c = "-"
		}
		if a.Node != 0 {
			return fmt.Sprintf("append %d rows cluster=%s on %s", a.N, c, node)
		}
		return fmt.Sprintf("append %d rows cluster=%s", a.N, c)
	case RelayStep:
		if a.Node != 0 {
			return "relay-step " + node
		}
		return "relay-step"
	case EnableRelay, BadKey, GoodKey, Partition, Down, Up:
		return fmt.Sprintf("%s %s", a.Kind, node)
	case Read:
		return fmt.Sprintf("read %s", a.Fetch)
	case Overtake:
		return fmt.Sprintf("overtake %d rows", a.N)
	case Poison:
		return fmt.Sprintf("poison via %s", poisonVia(a.N))
	case FedRead:
		return fmt.Sprintf("fed-read cluster=%s filters=%d", a.Cluster, a.N)
	case LocalAppend:
		return fmt.Sprintf("local-append %d rows on %s", a.N, node)
	case Advance:
		return fmt.Sprintf("advance %v", a.D)
	case Flush, Compact, Retain, Crash:
		return fmt.Sprintf("%s %s", a.Kind, node)
	case DropRequest, DropResponse:
		return fmt.Sprintf("%s x%d", a.Kind, a.N)
	case Skew:
		return fmt.Sprintf("skew %s %+v", node, a.D)
	case FSFault:
		if a.N == 1 {
			return fmt.Sprintf("fs-fault %s %s (disk full)", node, a.Op)
		}
		return fmt.Sprintf("fs-fault %s %s", node, a.Op)
	default:
		return a.Kind.String()
	}
}

// FormatSchedule renders a schedule one action a line, numbered, for the
// log of a failing (shrunk) run.
func FormatSchedule(s []Action) string {
	out := ""
	for i, a := range s {
		out += fmt.Sprintf("  %3d  %s\n", i, a)
	}
	return out
}

func (w *World) node(i int) *Node {
	if i >= 0 && i < len(w.Nodes) {
		return w.Nodes[i]
	}
	return w.Source
}

// relayNode is the node a relay action means: Action.Node when it relays,
// else the Source.
func (w *World) relayNode(i int) *Node {
	if n := w.node(i); n.spec.RelayTo != "" {
		return n
	}
	return w.Source
}

// Do performs one action and records it and its outcome in the trace.
// Property violations it notices on the spot (a store that loses acked rows
// across a crash) are kept and returned by Violations.
func (w *World) Do(a Action) {
	w.Trace.Addf("@%s do %s", w.now.Sub(Epoch), a)
	switch a.Kind {
	case Append:
		w.appendRows(w.relayNode(a.Node), a.N, a.Cluster)
	case RelayStep:
		w.relayStep(w.relayNode(a.Node))
	case Advance:
		w.Advance(a.D)
	case Flush, Compact, Retain:
		w.background(a)
	case Crash:
		w.crash(a.Node)
	case Partition:
		w.Net.Isolated[w.node(a.Node).Name] = true
	case Heal:
		clear(w.Net.Isolated)
	case DropRequest:
		w.Net.DropRequests += a.N
	case DropResponse:
		w.Net.DropResponses += a.N
	case Delay:
		w.Net.DelayRequests++
	case Deliver:
		w.Net.Deliver(w.ctx)
	case Skew:
		n := w.node(a.Node)
		n.setSkew(w.now, a.D)
	case FSFault:
		n := w.node(a.Node)
		n.failOps = append(n.failOps, fault{op: a.Op, noSpace: a.N == 1})
	case Down, Up:
		w.node(a.Node).down = a.Kind == Down
	case EnableRelay:
		if err := w.enableRelay(w.relayNode(a.Node)); err != nil {
			w.violate("%v", err)
		}
	case BadKey, GoodKey:
		w.relayNode(a.Node).badCredentials = a.Kind == BadKey
	case Read:
		w.read(a.Fetch)
	case Overtake:
		w.overtake(a.N)
	case Poison:
		w.poison(a.N)
	case FedRead:
		w.fedRead(a.Cluster, a.N)
	case LocalAppend:
		w.localAppend(w.node(a.Node), a.N)
	}
	w.autoFlush(w.Nodes...)
}

// autoFlush is what the daemon's background loop does when a memtable
// fills: flush it. The simulation runs stores with Background off and
// performs the same step itself, deterministically, after each action.
func (w *World) autoFlush(nodes ...*Node) {
	for _, n := range nodes {
		if ok, why := n.needsFlush(); ok {
			err := n.Store.Flush(w.ctx)
			w.Trace.Addf("  %s auto-flush (%s): err=%v", n.Name, why, errString(err))
		}
	}
}

func (w *World) appendRows(node *Node, n int, cluster string) {
	if cluster == "" && w.cfg.Federation && node.spec.Serves {
		// A store that serves its own cluster holds its local writers'
		// rows stamped with it, as its server does: peers read it by name.
		cluster = node.Cluster
	}
	s := node.Store
	if s == nil {
		w.Trace.Addf("  %s is down", node.Name)
		return
	}
	now := node.Clock.Now()
	rows := make([]store.Row, n)
	for i := range rows {
		w.nextRow++
		id := w.nextRow
		rows[i] = store.Row{
			Key:       fmt.Sprintf("/user/job-%d/task-%d:%d", id%3, id%2, id%2),
			Source:    "stdout",
			Data:      fmt.Sprintf("row-%06d %s level=%d payload=%0*d", id, now.Format(time.RFC3339Nano), id%6, 40+id%60, id),
			EpochMS:   now.UnixMilli() + int64(i),
			AttemptID: int32(id % 2),
			Level:     int32(id % 6),
			Cluster:   cluster,
		}
		w.rows[rows[i].Data] = rows[i]
	}
	for _, r := range rows {
		w.origin[r.Data] = node
	}
	ack, err := s.Append(w.ctx, store.Batch{Rows: rows})
	if err != nil {
		if node == w.Source {
			for _, r := range rows {
				w.maybe[r.Data] = true
			}
		}
		w.Trace.Addf("  append failed: %v", err)
		return
	}
	if node != w.Source {
		// Only the Source's rows are in the no-loss model; the others'
		// fate is the identity property's business.
		w.Trace.Addf("  acked seqs %d..%d", ack.First, ack.Last)
		return
	}
	if ack.Last-ack.First+1 != int64(n) {
		w.violate("store: append of %d rows acked seqs %d..%d", n, ack.First, ack.Last)
		return
	}
	for i, r := range rows {
		w.acked[r.Data] = ack.First + int64(i)
		w.ackedList = append(w.ackedList, r.Data)
	}
	w.Trace.Addf("  acked seqs %d..%d", ack.First, ack.Last)
}

func (w *World) relayStep(n *Node) {
	if n.Store == nil {
		w.Trace.Addf("  %s is down", n.Name)
		return
	}
	if n.Relay == nil && n.relayEnabled {
		// LateRelay: the deferred relay starts once its target answers.
		if err := w.startRelay(n); err != nil {
			w.violate("%v", err)
		}
	}
	if n.Relay == nil {
		w.Trace.Addf("  %s has no relay running", n.Name)
		return
	}
	next, err := n.Relay.Step(w.ctx)
	st := n.Relay.Status()
	w.Trace.Addf("  %s relay next=%v err=%v watermark=%d state=%s", n.Name, next, errString(err), st.Watermark, st.State)
}

func (w *World) background(a Action) {
	n := w.node(a.Node)
	if n.Store == nil {
		w.Trace.Addf("  %s is down", n.Name)
		return
	}
	var err error
	switch a.Kind {
	case Flush:
		err = n.Store.Flush(w.ctx)
	case Compact:
		err = n.Store.Compact(w.ctx)
	case Retain:
		err = n.Store.Retain(w.ctx)
	}
	st := n.Store.Stats()
	w.Coverage.MaxSegments = max(w.Coverage.MaxSegments, st.Segments)
	if a.Kind == Retain && n == w.Source && err != nil {
		w.failedRetainTop = max(w.failedRetainTop, st.LastSeq-int64(st.MemtableRows))
	}
	if a.Kind == Retain && n == w.Source {
		floor := st.LastSeq
		if st.FirstSeq > 0 {
			floor = st.FirstSeq - 1
		}
		if floor > w.sourceFloor {
			w.Coverage.RetainedRows += floor - w.sourceFloor
			w.sourceFloor = floor
		}
	}
	w.Trace.Addf("  %s err=%v stats={last=%d first=%d mem=%d segs=%d segrows=%d}", n.Name, errString(err), st.LastSeq, st.FirstSeq, st.MemtableRows, st.Segments, st.SegmentRows)
}

func (w *World) violate(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	w.Trace.Addf("  VIOLATION: %v", err)
	w.violations = append(w.violations, err)
}

// crash cuts power to a node, reopens its store from the disk and (on the
// source) restarts the relay, then checks the store's crash invariants.
func (w *World) crash(i int) { w.crashNode(w.node(i)) }

func (w *World) crashNode(n *Node) {
	var snapshot []store.Row
	if n == w.Target && n.Store != nil {
		// Rows the target acked must come back exactly as they were.
		rows, err := scanAll(w.ctx, n.Store)
		if err != nil {
			w.violate("global: scan before crash: %v", err)
		}
		for _, r := range rows {
			if r.Seq <= w.targetAcked {
				snapshot = append(snapshot, r)
			}
		}
	}
	n.crash(w.crashR)
	if err := n.open(); err != nil {
		// A store that cannot recover from a power cut is a violation, and
		// the run cannot go on without it.
		w.violate("%v", err)
		return
	}
	w.Trace.Addf("  %s restarted: last=%d", n.Name, n.Store.LastSeq())
	if err := w.startServer(n); err != nil {
		w.violate("%v", err)
	}
	if n.spec.RelayTo != "" {
		if n == w.Source {
			w.SourceCrashes++
			if err := w.CheckSourceStore(); err != nil {
				w.violate("%v", err)
			}
		}
		if err := w.startRelay(n); err != nil {
			w.violate("%v", err)
		}
		return
	}
	if n != w.Target {
		return
	}
	w.TargetCrashes++
	if len(snapshot) > 0 {
		w.Coverage.TargetCrashesWithRows++
	}
	if err := w.CheckTargetStore(snapshot); err != nil {
		w.violate("%v", err)
	}
	if err := w.CheckWatermark(); err != nil {
		w.violate("%v", err)
	}
}

// Drain ends a schedule the way the no-loss property states it: the network
// heals, clocks agree again, credentials are restored, every process
// restarts (servers first), and every relay gets enough steps (and time) to
// catch up. An impostor's relay (KeyOf another cluster) is refused for
// good: it gets the steps but need not catch up.
func (w *World) Drain(maxSteps int) {
	w.Trace.Addf("@%s drain", w.now.Sub(Epoch))
	clear(w.Net.Isolated)
	w.Net.DropRequests, w.Net.DropResponses, w.Net.DelayRequests = 0, 0, 0
	for _, n := range w.Nodes {
		n.down = false
	}
	for w.Net.InFlight() > 0 {
		w.Net.Deliver(w.ctx)
	}
	for _, n := range w.Nodes {
		n.failOps = nil
		n.badCredentials = false
		n.setSkew(w.now, 0)
	}
	for _, n := range w.Nodes {
		if n.spec.Serves {
			w.crashNode(n)
		}
	}
	for _, n := range w.Nodes {
		if !n.spec.Serves {
			w.crashNode(n)
		}
	}
	for _, n := range w.Nodes {
		if n.Store == nil {
			return
		}
		if n.spec.RelayTo != "" && !n.relayEnabled {
			// Enabled at the latest now, so the rest of the properties
			// are checked over every run.
			if err := w.enableRelay(n); err != nil {
				w.violate("%v", err)
			}
		}
	}
	w.drainOvertake()
	for i := 0; i < maxSteps; i++ {
		done := true
		var next time.Duration
		for _, n := range w.Nodes {
			if n.spec.RelayTo == "" || n.spec.KeyOf != "" {
				continue
			}
			if n.Relay == nil {
				w.relayStep(n)
			}
			if n.Relay == nil {
				done = false
				continue
			}
			d, err := n.Relay.Step(w.ctx)
			if n == w.Source {
				w.Coverage.DrainSteps = i + 1
			}
			if err != nil {
				w.Trace.Addf("  %s drain step %d: next=%v err=%v", n.Name, i, d, err)
			}
			if err != nil || n.Relay.Watermark() < n.Store.LastSeq() {
				done = false
				next = max(next, d)
			}
		}
		if done {
			w.Trace.Addf("  drained after %d steps: watermark=%d", i+1, w.Relay.Watermark())
			for _, n := range w.Nodes {
				if n.spec.KeyOf != "" && n.Relay != nil {
					d, err := n.Relay.Step(w.ctx)
					w.Trace.Addf("  %s (impostor) final step: next=%v err=%v", n.Name, d, errString(err))
				}
			}
			return
		}
		w.Advance(max(next, time.Millisecond))
	}
	var st relay.Status
	if w.Relay != nil {
		st = w.Relay.Status()
	}
	w.violate("relays did not catch up in %d steps: %s watermark=%d source last=%d status=%+v",
		maxSteps, w.Source.Name, st.Watermark, w.Source.Store.LastSeq(), st)
}

// Violations are the property violations noticed while the schedule ran.
func (w *World) Violations() []error { return w.violations }
