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

var strict = flag.Bool("sim.strict", false, "run without the harness's workarounds for open known bugs (see sim.Workarounds)")

// config is DefaultConfig with the -sim.strict choice applied.
func config() Config {
	c := DefaultConfig()
	c.Strict = *strict
	return c
}

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
	// nodes is how many nodes actions pick from (0: the default two).
	nodes int
	// reads and overtakes weight Read and Overtake actions (out of the
	// hundred the base actions share).
	reads, overtakes int
	// outages weights the relay-start hazards: bad key / good key,
	// server down / up, and EnableRelay.
	outages int
	// poisons weights Poison actions (forged producer pushes by another
	// identity).
	poisons int
	// federation weights the federated world's actions: reads of home
	// (proxied, fanned out, local), local writes on home and west, and
	// partitions of west.
	federation int
}

// faultOps are the I/O operations a FSFault action can fail.
var faultOps = []vfs.Op{vfs.OpSync, vfs.OpWrite, vfs.OpCreate, vfs.OpRename, vfs.OpSyncDir, vfs.OpRemove}

func genAction(sh scheduleShape) *rapid.Generator[Action] {
	return rapid.Custom(func(t *rapid.T) Action {
		nodes := max(sh.nodes, 2)
		node := rapid.IntRange(0, nodes-1).Draw(t, "node")
		b := uniform(t, 100+sh.reads+sh.overtakes+sh.outages+sh.poisons+sh.federation, "kind")
		switch x := b - 100; {
		case x >= sh.reads+sh.overtakes+sh.outages+sh.poisons:
			return genFederationAction(t)
		case x >= sh.reads+sh.overtakes+sh.outages:
			return Action{Kind: Poison, N: uniform(t, 2, "via")}
		case x >= 0 && x < sh.reads:
			return Action{Kind: Read, Fetch: genFetch().Draw(t, "fetch")}
		case x >= 0 && x < sh.reads+sh.overtakes:
			return Action{Kind: Overtake, N: 1 + rapid.IntRange(0, 11).Draw(t, "batch_rows")}
		case x >= 0:
			kinds := []Kind{BadKey, GoodKey, GoodKey, Down, Up, Up, EnableRelay}
			k := kinds[uniform(t, len(kinds), "outage")]
			if k == Down || k == Up {
				node = 1 // the target
			}
			return Action{Kind: k, Node: node}
		}
		switch {
		case b < 20:
			cluster := ""
			switch rapid.IntRange(0, 9).Draw(t, "cluster") {
			case 0:
				cluster = SourceCluster
			case 1:
				cluster = "west" // another cluster's row: the loop guard keeps it home
			}
			return Action{Kind: Append, N: 1 + uniform(t, 30, "rows"), Cluster: cluster}
		case b < 40:
			return Action{Kind: RelayStep}
		case b < 52:
			ms := rapid.Int64Range(1, 3000).Draw(t, "ms")
			if rapid.IntRange(0, 3).Draw(t, "long") == 0 {
				ms = rapid.Int64Range(3000, 240000).Draw(t, "long_ms")
			}
			return Action{Kind: Advance, D: time.Duration(ms) * time.Millisecond}
		case b < 60:
			return Action{Kind: Flush, Node: node}
		case b < 64:
			return Action{Kind: Compact, Node: node}
		case b < 70:
			return Action{Kind: Retain, Node: node}
		case b < 75:
			if !sh.crashes {
				return Action{Kind: RelayStep}
			}
			return Action{Kind: Crash, Node: node}
		case b < 77:
			return Action{Kind: Partition}
		case b < 81:
			return Action{Kind: Heal}
		case b < 84:
			return Action{Kind: DropRequest, N: rapid.IntRange(1, 3).Draw(t, "n")}
		case b < 87:
			return Action{Kind: DropResponse, N: rapid.IntRange(1, 2).Draw(t, "n")}
		case b < 89:
			return Action{Kind: Delay}
		case b < 91:
			return Action{Kind: Deliver}
		case b < 97:
			s := int64(sh.maxSkew / time.Millisecond)
			return Action{Kind: Skew, Node: node, D: time.Duration(rapid.Int64Range(-s, s).Draw(t, "skew_ms")) * time.Millisecond}
		default:
			if !sh.faults {
				return Action{Kind: RelayStep}
			}
			ops := faultOps
			return Action{Kind: FSFault, Node: node, Op: ops[uniform(t, len(ops), "op")], N: uniform(t, 2, "nospace")}
		}
	})
}

// uniform draws an evenly spread int in [0, n). rapid biases integers
// toward small values, which would turn every schedule into appends; a
// mixed 64-bit draw keeps the action mix as weighted while shrinking (which
// works by deleting actions) is unaffected.
func uniform(t *rapid.T, n int, label string) int {
	z := rapid.Uint64().Draw(t, label) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int(z % uint64(n))
}

// genSchedule draws bursts of actions: rapid's slices average about six
// elements, far too few to fill memtables and reach retention, so a
// schedule is a slice of slices (about forty actions on average, up to
// maxLen), and shrinking still removes whole bursts or single actions.
func genSchedule(sh scheduleShape) *rapid.Generator[[]Action] {
	burst := rapid.SliceOfN(genAction(sh), 1, 16)
	return rapid.Custom(func(t *rapid.T) []Action {
		var out []Action
		for _, b := range rapid.SliceOfN(burst, 1, 24).Draw(t, "bursts") {
			out = append(out, b...)
		}
		if len(out) > sh.maxLen {
			out = out[:sh.maxLen]
		}
		return out
	})
}

// drainSteps is how many relay steps Drain allows: enough for the longest
// auth retry (30 s windows) and backoff (60 s cap) to pass several times.
const drainSteps = 300

// run executes one schedule to completion and returns the world (for its
// trace) and every property violation.
func run(cfg Config, seed int64, sched []Action, extra ...func(*World) error) (*World, error) {
	w, err := NewWorld(cfg, seed)
	if err != nil {
		return nil, err
	}
	for _, a := range sched {
		w.Do(a)
	}
	w.Drain(drainSteps)
	err = w.CheckAll()
	if err == nil && w.Source.Store != nil && w.Target.Store != nil {
		for _, f := range extra {
			if err = f(w); err != nil {
				break
			}
		}
	}
	if cerr := w.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return w, err
}

var defaultShape = scheduleShape{maxLen: 200, maxSkew: 10 * time.Minute, crashes: true, faults: true, reads: 4, overtakes: 3}

// simProperty runs generated schedules against cfg and fails on any
// violation, logging the (shrunk) schedule and the end of the trace.
func simProperty(t *testing.T, cfg Config, sh scheduleShape, extra func(*World) error) {
	ign := goleak.IgnoreCurrent()
	var runs, actions, acked, crashes int
	defer func() {
		if runs > 0 {
			t.Logf("%d runs: %.1f actions, %.1f acked rows, %.2f crashes per run", runs,
				float64(actions)/float64(runs), float64(acked)/float64(runs), float64(crashes)/float64(runs))
		}
	}()
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Int64().Draw(rt, "crash_seed")
		sched := genSchedule(sh).Draw(rt, "schedule")
		runs++
		actions += len(sched)
		w := runChecked(rt, cfg, seed, sched, ign, extra)
		acked += len(w.ackedList)
		crashes += w.SourceCrashes + w.TargetCrashes
	})
}

func goleakIgnore() goleak.Option { return goleak.IgnoreCurrent() }

// runChecked runs one generated schedule and fails rt on any violation or
// leaked goroutine, logging the (shrunk) schedule and the end of the trace.
func runChecked(rt *rapid.T, cfg Config, seed int64, sched []Action, ign goleak.Option, extra ...func(*World) error) *World {
	rt.Logf("schedule (%d actions):\n%s", len(sched), FormatSchedule(sched))
	var extras []func(*World) error
	for _, f := range extra {
		if f != nil {
			extras = append(extras, f)
		}
	}
	w, err := run(cfg, seed, sched, extras...)
	if w == nil {
		rt.Fatalf("world: %v", err)
	}
	if err != nil {
		rt.Fatalf("%v\ntrace (tail):\n%s", err, w.Trace.Tail(80))
	}
	// Property 6: every store and relay goroutine is gone, including
	// those of processes that "crashed".
	if err := goleak.Find(ign); err != nil {
		rt.Fatalf("goroutine leak after the run: %v", err)
	}
	return w
}

// TestSimIdempotent: properties 1–4 and 6 with idempotent batches, crashes,
// partitions, lost requests and responses, FS faults and clock skew of up
// to ten minutes (token expiry and refresh, auth refusals the relay must
// ride out).
func TestSimIdempotent(t *testing.T) {
	simProperty(t, config(), defaultShape, nil)
}

// TestSimNonIdempotent: property 2's second half: without producer/seq
// batches, at most one duplicate batch per injected failure.
func TestSimNonIdempotent(t *testing.T) {
	cfg := config()
	cfg.NonIdempotent = true
	simProperty(t, cfg, defaultShape, nil)
}

// TestSimPinCap: with a cap on what retention keeps for the relay, a long
// partition makes the store delete unforwarded rows; every row missing
// from the target must be one the store reported (no silent loss), and the
// relay must get past the gap and forward everything after it.
func TestSimPinCap(t *testing.T) {
	cfg := config()
	cfg.PinMaxBytes = 12 << 10
	simProperty(t, cfg, defaultShape, (*World).CheckLossReported)
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
	cfg := config()
	simProperty(t, cfg, skewShape(cfg), (*World).CheckNoAuthRejections)
}

// TestDeterminism: the same schedule and seed produce the same trace,
// event for event.
func TestDeterminism(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Int64().Draw(rt, "crash_seed")
		// Shorter schedules: every check runs twice, and divergence shows
		// up early in a trace if it shows up at all.
		sh := defaultShape
		sh.maxLen = 80
		sched := genSchedule(sh).Draw(rt, "schedule")
		w1, _ := run(config(), seed, sched)
		w2, _ := run(config(), seed, sched)
		if w1 == nil || w2 == nil {
			rt.Fatal("world failed to start")
		}
		if w1.Trace.Hash() != w2.Trace.Hash() {
			rt.Fatalf("same schedule, different traces (%d vs %d events); first difference at %s\nschedule:\n%s",
				w1.Trace.Len(), w2.Trace.Len(), FirstDiff(w1.Trace, w2.Trace), FormatSchedule(sched))
		}
	})
}

// TestSimCoverage keeps the properties from going vacuous: across a sample
// of generated schedules the world must really flush, compact and retain,
// crash a target holding rows, refuse expired or skewed tokens, lose
// responses after applying them, and fire FS faults.
func TestSimCoverage(t *testing.T) {
	var sum struct {
		retained, targetCrashes, authRejections, ambiguous, faults, removeFaults, syncDirFaults, acked, forwarded, maxSegs, runs, drainMax, pinnedLoss, reads, gapRefusals int
	}
	n := 60
	if raceEnabled {
		n = 25
	}
	// Past n, go on (to a cap) only while some rare event is still
	// missing: under the race detector the sample is small.
	for i := 0; i < n || (i < 90 && (sum.syncDirFaults == 0 || sum.removeFaults == 0 || sum.authRejections == 0 || sum.reads == 0)); i++ {
		sched := genSchedule(defaultShape).Example(i)
		w, err := run(config(), int64(i), sched)
		if err != nil {
			t.Fatalf("schedule %d: %v", i, err)
		}
		sum.runs++
		sum.retained += int(w.Coverage.RetainedRows)
		sum.targetCrashes += w.Coverage.TargetCrashesWithRows
		sum.authRejections += w.Net.AuthRejections
		sum.ambiguous += w.Net.AmbiguousFailures
		sum.faults += w.Source.Faults + w.Target.Faults
		sum.removeFaults += w.Source.FaultsByOp[vfs.OpRemove] + w.Target.FaultsByOp[vfs.OpRemove]
		sum.syncDirFaults += w.Source.FaultsByOp[vfs.OpSyncDir] + w.Target.FaultsByOp[vfs.OpSyncDir]
		sum.acked += len(w.ackedList)
		sum.forwarded += w.Net.Applied
		sum.maxSegs = max(sum.maxSegs, w.Coverage.MaxSegments)
		sum.drainMax = max(sum.drainMax, w.Coverage.DrainSteps)
		sum.reads += w.Coverage.NonEmptyReads
		sum.gapRefusals += w.Coverage.GapRefusals
	}
	// With a pin cap, long partitions must really make retention delete
	// unforwarded rows, reported.
	capCfg := config()
	capCfg.PinMaxBytes = 12 << 10
	for i := 0; i < 60 && sum.pinnedLoss == 0; i++ {
		w, err := run(capCfg, int64(i), genSchedule(defaultShape).Example(i))
		if err != nil {
			t.Fatalf("pin-cap schedule %d: %v", i, err)
		}
		sum.pinnedLoss += len(w.pinnedLoss)
	}
	t.Logf("over %d schedules: %+v", sum.runs, sum)
	for name, v := range map[string]int{
		"rows deleted by source retention": sum.retained,
		"target crashes holding rows":      sum.targetCrashes,
		"auth refusals":                    sum.authRejections,
		"applied-but-unacked pushes":       sum.ambiguous,
		"FS faults fired":                  sum.faults,
		"failed removes (W3's trigger)":    sum.removeFaults,
		"failed directory syncs (W4, W5)":  sum.syncDirFaults,
		"segments (max in one store)":      sum.maxSegs - 1,
		"reported pinned-row deletions":    sum.pinnedLoss,
		"reads that returned rows":         sum.reads,
		"overtaking batches refused":       sum.gapRefusals,
	} {
		if v <= 0 {
			t.Errorf("generated schedules never produced %s", name)
		}
	}
}
