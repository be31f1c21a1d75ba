package sim

import (
	"flag"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/vfs"
)

// raceChecks is the default -rapid.checks under the race detector.
const raceChecks = "20"

func TestMain(m *testing.M) {
	flag.Parse()
	if raceEnabled {
		explicit := false
		flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "rapid.checks" })
		if !explicit && os.Getenv("RAPID_CHECKS") == "" {
			if err := flag.Set("rapid.checks", raceChecks); err != nil {
				panic(err)
			}
		}
	}
	goleak.VerifyTestMain(m)
}

// scheduleShape bounds what a generated schedule may do.
type scheduleShape struct {
	maxLen int
	// maxSkew bounds each node's clock offset; with both nodes within
	// leeway/2 of true time their relative skew stays inside the leeway.
	maxSkew time.Duration
	crashes bool
	faults  bool
}

var faultOps = []vfs.Op{vfs.OpSync, vfs.OpWrite, vfs.OpCreate, vfs.OpRename, vfs.OpSyncDir, vfs.OpRemove}

func genAction(sh scheduleShape) *rapid.Generator[Action] {
	return rapid.Custom(func(t *rapid.T) Action {
		node := rapid.IntRange(0, 1).Draw(t, "node")
		switch b := rapid.IntRange(0, 99).Draw(t, "kind"); {
		case b < 22:
			cluster := ""
			switch rapid.IntRange(0, 9).Draw(t, "cluster") {
			case 0:
				cluster = SourceCluster
			case 1:
				cluster = "west" // another cluster's row: the loop guard keeps it home
			}
			return Action{Kind: Append, N: rapid.IntRange(1, 12).Draw(t, "rows"), Cluster: cluster}
		case b < 44:
			return Action{Kind: RelayStep}
		case b < 56:
			ms := rapid.Int64Range(1, 3000).Draw(t, "ms")
			if rapid.IntRange(0, 4).Draw(t, "long") == 0 {
				ms = rapid.Int64Range(3000, 180000).Draw(t, "long_ms")
			}
			return Action{Kind: Advance, D: time.Duration(ms) * time.Millisecond}
		case b < 62:
			return Action{Kind: Flush, Node: node}
		case b < 66:
			return Action{Kind: Compact, Node: node}
		case b < 70:
			return Action{Kind: Retain, Node: node}
		case b < 76:
			if !sh.crashes {
				return Action{Kind: RelayStep}
			}
			return Action{Kind: Crash, Node: node}
		case b < 79:
			return Action{Kind: Partition}
		case b < 83:
			return Action{Kind: Heal}
		case b < 86:
			return Action{Kind: DropRequest, N: rapid.IntRange(1, 3).Draw(t, "n")}
		case b < 89:
			return Action{Kind: DropResponse, N: rapid.IntRange(1, 2).Draw(t, "n")}
		case b < 91:
			return Action{Kind: Delay}
		case b < 93:
			return Action{Kind: Deliver}
		case b < 97:
			s := int64(sh.maxSkew / time.Millisecond)
			return Action{Kind: Skew, Node: node, D: time.Duration(rapid.Int64Range(-s, s).Draw(t, "skew_ms")) * time.Millisecond}
		default:
			if !sh.faults {
				return Action{Kind: RelayStep}
			}
			return Action{Kind: FSFault, Node: node, Op: rapid.SampledFrom(faultOps).Draw(t, "op")}
		}
	})
}

func genSchedule(sh scheduleShape) *rapid.Generator[[]Action] {
	return rapid.SliceOfN(genAction(sh), 1, sh.maxLen)
}

// drainSteps is how many relay steps Drain allows: enough for the longest
// auth retry (30 s windows) and backoff (60 s cap) to pass several times.
const drainSteps = 300

// run executes one schedule to completion and returns the world (for its
// trace) and every property violation.
func run(cfg Config, seed int64, sched []Action) (*World, error) {
	w, err := NewWorld(cfg, seed)
	if err != nil {
		return nil, err
	}
	for _, a := range sched {
		w.Do(a)
	}
	w.Drain(drainSteps)
	err = w.CheckAll()
	if cerr := w.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return w, err
}

var defaultShape = scheduleShape{maxLen: 60, maxSkew: 10 * time.Minute, crashes: true, faults: true}

// simProperty runs generated schedules against cfg and fails on any
// violation, logging the (shrunk) schedule and the end of the trace.
func simProperty(t *testing.T, cfg Config, sh scheduleShape, extra func(*World) error) {
	ign := goleak.IgnoreCurrent()
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Int64().Draw(rt, "crash_seed")
		sched := genSchedule(sh).Draw(rt, "schedule")
		rt.Logf("schedule (%d actions):\n%s", len(sched), FormatSchedule(sched))
		w, err := run(cfg, seed, sched)
		if w == nil {
			rt.Fatalf("world: %v", err)
		}
		if err == nil && extra != nil {
			err = extra(w)
		}
		if err != nil {
			rt.Fatalf("%v\ntrace (tail):\n%s", err, w.Trace.Tail(80))
		}
		// Property 6: every store and relay goroutine is gone, including
		// those of processes that "crashed".
		if err := goleak.Find(ign); err != nil {
			rt.Fatalf("goroutine leak after the run: %v", err)
		}
	})
}

// TestSimIdempotent: properties 1–4 and 6 with idempotent batches, crashes,
// partitions, lost requests and responses, FS faults and clock skew of up
// to ten minutes (token expiry and refresh, auth refusals the relay must
// ride out).
func TestSimIdempotent(t *testing.T) {
	simProperty(t, DefaultConfig(), defaultShape, nil)
}

// TestSimNonIdempotent: property 2's second half: without producer/seq
// batches, at most one duplicate batch per injected failure.
func TestSimNonIdempotent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NonIdempotent = true
	simProperty(t, cfg, defaultShape, nil)
}

// skewShape keeps every clock within half the leeway of true time.
func skewShape(cfg Config) scheduleShape {
	sh := defaultShape
	sh.maxSkew = cfg.Leeway/2 - time.Second
	return sh
}

// TestSimSkewWithinLeeway: property 5's second half: a relay whose clock is
// skewed within the leeway is never refused and loses nothing.
func TestSimSkewWithinLeeway(t *testing.T) {
	cfg := DefaultConfig()
	simProperty(t, cfg, skewShape(cfg), (*World).CheckNoAuthRejections)
}

// TestDeterminism: the same schedule and seed produce the same trace,
// event for event.
func TestDeterminism(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Int64().Draw(rt, "crash_seed")
		sched := genSchedule(defaultShape).Draw(rt, "schedule")
		w1, _ := run(DefaultConfig(), seed, sched)
		w2, _ := run(DefaultConfig(), seed, sched)
		if w1 == nil || w2 == nil {
			rt.Fatal("world failed to start")
		}
		if w1.Trace.Hash() != w2.Trace.Hash() {
			rt.Fatalf("same schedule, different traces (%d vs %d events); first difference at %s\nschedule:\n%s",
				w1.Trace.Len(), w2.Trace.Len(), FirstDiff(w1.Trace, w2.Trace), FormatSchedule(sched))
		}
	})
}
