package sim

import (
	"flag"
	"strconv"
	"testing"
)

func hostileConfig() Config {
	c := config()
	c.Hostile = true
	return c
}

var hostileShape = func() scheduleShape { sh := defaultShape; sh.poisons = 6; sh.maxLen = 120; return sh }()

// hostileDivisor is the share of -rapid.checks TestSimHostile runs: the
// world is the default one plus forged pushes, whose other properties the
// full-count tests already cover.
const hostileDivisor = 10

// TestSimHostile: under generated schedules with forged producer pushes
// from another cluster's key and a cidr-admitted writer, interleaved with
// crashes, partitions, lost responses and skew, every forged push is
// refused and the relay's rows still reach the target exactly once.
func TestSimHostile(t *testing.T) {
	scaleChecks(t, hostileDivisor)
	simProperty(t, hostileConfig(), hostileShape, nil)
}

// scaleChecks runs the rest of the test with -rapid.checks divided by d
// (at least one), restoring it afterwards. rapid reads the flag at each
// Check, and the sim tests do not run in parallel.
func scaleChecks(t *testing.T, d int) {
	f := flag.Lookup("rapid.checks")
	if f == nil {
		t.Fatal("rapid.checks flag not registered")
	}
	old := f.Value.String()
	n, err := strconv.Atoi(old)
	if err != nil {
		t.Fatalf("rapid.checks %q: %v", old, err)
	}
	if err := flag.Set("rapid.checks", strconv.Itoa(max(1, n/d))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flag.Set("rapid.checks", old) })
}

var poisonBoth = []Action{{Kind: Poison, N: 0}, {Kind: Poison, N: 1}}

// TestPoisonRefused: against the real server both forged pushes and both
// questions are refused as permission_denied, and the relay's rows sent
// after them arrive.
func TestPoisonRefused(t *testing.T) {
	sched := append(append([]Action{appendSome, step}, poisonBoth...), appendSome, step, appendSome, step)
	w, err := run(hostileConfig(), 1, sched)
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Trace.Tail(40))
	}
	if w.Coverage.Poisons != 2 || w.Coverage.PoisonRefusals != 2 {
		t.Fatalf("%d forged pushes, %d refused as permission_denied; want 2 and 2:\n%s", w.Coverage.Poisons, w.Coverage.PoisonRefusals, w.Trace.Tail(30))
	}
	if got := w.Relay.Status().Forwarded; got != 15 {
		t.Fatalf("relay forwarded %d rows, want 15", got)
	}
}

// TestCanaryNoProducerNamespace: a server that lets any identity use any
// producer takes the forged pushes; the hostile property must say so, and
// the relay's rows that the forged range covers must be reported lost.
func TestCanaryNoProducerNamespace(t *testing.T) {
	cfg := hostileConfig()
	cfg.Defects.NoProducerNamespace = true
	for _, poison := range poisonBoth {
		sched := []Action{appendSome, step, poison, appendSome, step, appendSome, step}
		expectViolation(t, cfg, sched, nil, "another identity used the relay's producer")
		expectViolation(t, cfg, sched, nil, "acked rows missing from the target")
	}
}

// TestHostileCoverage: the generator reaches forged pushes of both kinds,
// and the real server refuses them.
func TestHostileCoverage(t *testing.T) {
	var poisons, refused int
	for i := 0; i < 10; i++ {
		w, err := run(hostileConfig(), int64(i), genSchedule(hostileShape).Example(i))
		if err != nil {
			t.Fatalf("schedule %d: %v", i, err)
		}
		poisons += w.Coverage.Poisons
		refused += w.Coverage.PoisonRefusals
	}
	t.Logf("10 generated schedules: %d forged pushes, %d refused as permission_denied", poisons, refused)
	if poisons == 0 || refused == 0 {
		t.Fatalf("generated schedules sent %d forged pushes, %d refused: the hostile property is vacuous", poisons, refused)
	}
}
