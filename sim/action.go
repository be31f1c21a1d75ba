package sim

import (
	"fmt"
	"time"

	"github.com/finelog/finelog/internal/vfs"
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
)

var kindNames = [...]string{"append", "relay-step", "advance", "flush", "compact", "retain", "crash", "partition", "heal",
	"drop-request", "drop-response", "delay", "deliver", "skew", "fs-fault"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Action is one step of a schedule.
type Action struct {
	Kind    Kind
	Node    int // 0 = source (east), 1 = target (global)
	N       int
	D       time.Duration
	Op      vfs.Op
	Cluster string
}

func (a Action) String() string {
	node := "east"
	if a.Node == 1 {
		node = "global"
	}
	switch a.Kind {
	case Append:
		c := a.Cluster
		if c == "" {
			c = "-"
		}
		return fmt.Sprintf("append %d rows cluster=%s", a.N, c)
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
	if i == 1 {
		return w.Target
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
		w.appendRows(a.N, a.Cluster)
	case RelayStep:
		w.relayStep()
	case Advance:
		w.Advance(a.D)
	case Flush, Compact, Retain:
		w.background(a)
	case Crash:
		w.crash(a.Node)
	case Partition:
		w.Net.Partitioned = true
	case Heal:
		w.Net.Partitioned = false
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
	}
	w.autoFlush(w.Source, w.Target)
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

func (w *World) appendRows(n int, cluster string) {
	s := w.Source.Store
	if s == nil {
		w.Trace.Addf("  east is down")
		return
	}
	now := w.Source.Clock.Now()
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
	ack, err := s.Append(w.ctx, store.Batch{Rows: rows})
	if err != nil {
		for _, r := range rows {
			w.maybe[r.Data] = true
		}
		w.Trace.Addf("  append failed: %v", err)
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

func (w *World) relayStep() {
	if w.Source.Store == nil || w.Relay == nil {
		w.Trace.Addf("  east is down")
		return
	}
	next, err := w.Relay.Step(w.ctx)
	st := w.Relay.Status()
	w.Trace.Addf("  relay next=%v err=%v watermark=%d state=%s", next, errString(err), st.Watermark, st.State)
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
func (w *World) crash(i int) {
	n := w.node(i)
	var snapshot []store.Row
	if i == 1 && n.Store != nil {
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
	if i == 0 {
		w.SourceCrashes++
		if err := w.CheckSourceStore(); err != nil {
			w.violate("%v", err)
		}
		if err := w.startRelay(); err != nil {
			w.violate("%v", err)
		}
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
// heals, clocks agree again, every process restarts, and the relay gets
// enough steps (and time) to catch up.
func (w *World) Drain(maxSteps int) {
	w.Trace.Addf("@%s drain", w.now.Sub(Epoch))
	w.Net.Partitioned = false
	w.Net.DropRequests, w.Net.DropResponses, w.Net.DelayRequests = 0, 0, 0
	for w.Net.InFlight() > 0 {
		w.Net.Deliver(w.ctx)
	}
	w.Source.failOps, w.Target.failOps = nil, nil
	w.Source.setSkew(w.now, 0)
	w.Target.setSkew(w.now, 0)
	w.crash(1)
	w.crash(0)
	if w.Source.Store == nil || w.Target.Store == nil {
		return
	}
	for i := 0; i < maxSteps; i++ {
		next, err := w.Relay.Step(w.ctx)
		wm := w.Relay.Watermark()
		w.Coverage.DrainSteps = i + 1
		if err == nil && wm >= w.Source.Store.LastSeq() {
			w.Trace.Addf("  drained after %d steps: watermark=%d", i+1, wm)
			return
		}
		if err != nil {
			w.Trace.Addf("  drain step %d: next=%v err=%v", i, next, err)
		}
		w.Advance(max(next, time.Millisecond))
	}
	w.violate("relay did not catch up in %d steps: watermark=%d source last=%d status=%+v",
		maxSteps, w.Relay.Watermark(), w.Source.Store.LastSeq(), w.Relay.Status())
}

// Violations are the property violations noticed while the schedule ran.
func (w *World) Violations() []error { return w.violations }
