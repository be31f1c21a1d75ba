package sim

import (
	"testing"

	"pgregory.net/rapid"
)

// completenessConfig runs relays the way the daemon does by default (no
// backfill), switched on by an EnableRelay action part-way through.
func completenessConfig() Config {
	c := config()
	c.RelayByAction = true
	return c
}

var completenessShape = func() scheduleShape { sh := defaultShape; sh.outages = 8; sh.maxLen = 150; return sh }()

// genCompletenessSchedule puts the relay's start where the bug is: a few
// rows before it (which need not be forwarded), then, most of the time, a
// hazard at the moment the relay is enabled (the target partitioned away,
// its server down, or the source's key refused), rows acked while it
// lasts, and then a generated schedule that may heal it, re-break it,
// crash either node, and so on.
func genCompletenessSchedule() *rapid.Generator[[]Action] {
	return rapid.Custom(func(t *rapid.T) []Action {
		var s []Action
		for i := rapid.IntRange(0, 3).Draw(t, "rows_before"); i > 0; i-- {
			s = append(s, Action{Kind: Append, N: 1 + uniform(t, 30, "rows")})
		}
		switch rapid.IntRange(0, 3).Draw(t, "hazard") {
		case 1:
			s = append(s, Action{Kind: Partition})
		case 2:
			s = append(s, Action{Kind: Down, Node: 1})
		case 3:
			s = append(s, Action{Kind: BadKey})
		}
		s = append(s, Action{Kind: EnableRelay})
		for i := rapid.IntRange(0, 3).Draw(t, "rows_after"); i > 0; i-- {
			s = append(s, Action{Kind: Append, N: 1 + uniform(t, 30, "rows")}, Action{Kind: RelayStep})
		}
		return append(s, genSchedule(completenessShape).Draw(t, "rest")...)
	})
}

// TestSimRelayCompleteness is the relay-completeness property: every row
// acknowledged after the relay was enabled reaches the target, including
// when the target was down, partitioned away or refusing the key when the
// relay started. The relay before 7ead143 fixed its starting point at its
// first successful contact (R1) and failed this.
func TestSimRelayCompleteness(t *testing.T) {
	cfg := completenessConfig()
	ign := goleakIgnore()
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Int64().Draw(rt, "crash_seed")
		sched := genCompletenessSchedule().Draw(rt, "schedule")
		runChecked(rt, cfg, seed, sched, ign)
	})
}

// TestCanaryLateRelay: a relay that starts counting only once its target
// answers (constructed late: Config.LateRelay) skips the rows acked in
// between; the completeness property must say so, whatever the relay does
// internally.
func TestCanaryLateRelay(t *testing.T) {
	cfg := completenessConfig()
	cfg.LateRelay = true
	for _, hazard := range []Action{{Kind: Partition}, {Kind: Down, Node: 1}, {Kind: BadKey}} {
		heal := map[Kind]Action{Partition: {Kind: Heal}, Down: {Kind: Up, Node: 1}, BadKey: {Kind: GoodKey}}[hazard.Kind]
		sched := []Action{appendSome, hazard, {Kind: EnableRelay}, appendSome, step, appendSome, heal, step}
		t.Run(hazard.Kind.String(), func(t *testing.T) {
			expectViolation(t, cfg, sched, nil, "rows acked after the relay was enabled")
		})
	}
}

// TestCompletenessCoverage: generated schedules really enable relays
// whose target is unreachable.
func TestCompletenessCoverage(t *testing.T) {
	unreachable := 0
	for i := 0; i < 30; i++ {
		w, err := run(completenessConfig(), int64(i), genCompletenessSchedule().Example(i))
		if err != nil {
			t.Fatalf("schedule %d: %v", i, err)
		}
		unreachable += w.Coverage.UnreachableEnables
	}
	if unreachable == 0 {
		t.Fatal("no generated schedule enabled a relay while its target was unreachable")
	}
	t.Logf("%d of 30 schedules enabled the relay with its target unreachable", unreachable)
}
