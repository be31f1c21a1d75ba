package sim

import (
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// TestKnownBugs replays, under -sim.strict, the shrunk schedules of the
// bugs listed in sim.Workarounds. Each must run clean once its bug is
// fixed; until then it fails with the violation. Without -sim.strict the
// harness works around them and these replays are skipped.
//
//	go test ./sim -sim.strict -run TestKnownBugs -v
func TestKnownBugs(t *testing.T) {
	if !*strict {
		t.Skip("known bugs are replayed only with -sim.strict (see sim.Workarounds)")
	}
	a := func(n int, c string) Action { return Action{Kind: Append, N: n, Cluster: c} }
	step := Action{Kind: RelayStep}
	for _, tc := range []struct {
		name  string
		sched []Action
	}{
		// W1: retention before the relay's first step deletes rows it
		// never forwarded.
		{"W1 retention before first relay step", []Action{a(26, "east"), a(26, "east"), {Kind: Retain}}},
		// W1: the restarted relay asks the unreachable target before it
		// pins; retention runs unpinned meanwhile.
		{"W1 restart during partition", []Action{a(30, ""), step, {Kind: Partition}, a(30, ""), a(30, ""), step,
			{Kind: Crash}, {Kind: Retain}, step}},
		// W2: everything was forwarded, retention deleted the oldest
		// segment, and Scan from before the floor returns nothing.
		{"W2 scan below the retention floor", []Action{a(26, ""), a(26, ""), step, {Kind: Retain}, {Kind: Crash}}},
		// W3: a failed segment remove, a crash, then compaction across
		// the resurrected segment's gap: the store no longer opens.
		{"W3 failed remove then compact", []Action{a(26, "east"), step, a(28, "east"), step,
			{Kind: FSFault, Op: vfs.OpRemove}, {Kind: Retain}, a(26, ""), {Kind: Retain}, {Kind: Crash},
			a(26, "east"), {Kind: Compact}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := run(config(), 0, tc.sched)
			if err != nil {
				trace := ""
				if w != nil {
					trace = w.Trace.Tail(40)
				}
				t.Fatalf("schedule:\n%s%v\ntrace (tail):\n%s", FormatSchedule(tc.sched), err, trace)
			}
		})
	}
}
