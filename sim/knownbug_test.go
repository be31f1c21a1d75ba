package sim

import (
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// TestKnownBugs replays the shrunk schedules of bugs the simulation found.
// Fixed ones run on every test run as regressions. Open ones (listed in
// sim.Workarounds) run too, and must pass with the harness's workaround;
// under -sim.strict the workarounds are off and they fail until the bug is
// fixed:
//
//	go test ./sim -sim.strict -run TestKnownBugs -v
func TestKnownBugs(t *testing.T) {
	a := func(n int, c string) Action { return Action{Kind: Append, N: n, Cluster: c} }
	step := Action{Kind: RelayStep}
	for _, tc := range []struct {
		name  string
		open  bool // documents the state; -sim.strict decides whether workarounds apply
		sched []Action
		cfg   func(*Config)
	}{
		// W1 (fixed in relay 8473817): retention before the relay's first
		// step deleted rows it never forwarded.
		// (Each schedule writes enough that unpinned retention would
		// delete rows.)
		{"W1 retention before first relay step", false, []Action{a(30, "east"), a(30, "east"), a(30, "east"), a(30, "east"), {Kind: Retain}}, nil},
		// W1: the restarted relay asked the unreachable target before it
		// pinned; retention ran unpinned meanwhile.
		{"W1 restart during partition", false, []Action{a(30, ""), step, {Kind: Partition}, a(30, ""), a(30, ""), a(30, ""), a(30, ""), step,
			{Kind: Crash}, {Kind: Retain}, step}, nil},
		// W2 (fixed in store d495acd): everything was forwarded,
		// retention deleted the oldest segment, and Scan from before the
		// floor returned nothing.
		{"W2 scan below the retention floor", false, []Action{a(26, "east"), step, a(26, "east"), a(26, "east"), {Kind: Retain}}, nil},
		// W3 (fixed in store 77f0868): a failed segment remove, a crash,
		// then compaction across the resurrected segment's gap: the store
		// no longer opened.
		{"W3 failed remove then compact", false, []Action{a(26, "east"), step, a(28, "east"), step,
			{Kind: FSFault, Op: vfs.OpRemove}, {Kind: Retain}, a(26, ""), {Kind: Retain}, {Kind: Crash},
			a(26, "east"), {Kind: Compact}}, nil},
		// W4 (fixed in store 6ec7441): Compact's directory sync failed
		// after the merged segment was renamed into place; the orphan
		// became durable with the next SyncDir and, after a crash,
		// overlapped a later segment.
		{"W4 failed compaction dir sync", false, w4Schedule(), nil},
		// W5 (fixed in store: losses are reported before the floor is
		// written): with a pin cap, a Retain whose meta.json dir sync
		// failed never reported the pinned rows its floor deleted once a
		// later sync made it durable and the source crashed.
		{"W5 failed retain dir sync with pin cap", false, w5Schedule(), func(c *Config) { c.PinMaxBytes = 12 << 10 }},
		// W6 (fixed in relay: a watermark is made durable before the
		// relay acts on it): the seed write's directory sync failed, the
		// relay adopted the visible but not durable watermark, and a crash
		// lost it; the restarted relay resumed from the target's applied
		// mark, past a gap a lost-ack push had spanned, and never counted
		// it in SourceGap.
		{"W6 gap push with a lost ack", false, w6Schedule(), func(c *Config) { c.PinMaxBytes = 12 << 10 }},
		// R1 (fixed in relay 7ead143: the start point is a seed file
		// written by Forwarder.Enable): a relay fixed its starting point
		// at its first successful contact with the target, so rows acked
		// after it was enabled and before that were never forwarded.
		// Issue 10 §2's shape: the target is partitioned away when the
		// relay starts.
		{"R1 relay enabled while the target is unreachable", false, []Action{a(20, ""), {Kind: Partition}, {Kind: EnableRelay},
			a(20, ""), step, a(20, ""), {Kind: Heal}, step, a(5, ""), step}, func(c *Config) { c.RelayByAction = true }},
		// R1 without any fault: rows acked between the relay's start and
		// its first step.
		{"R1 rows before the first step", false, []Action{a(20, ""), {Kind: EnableRelay}, a(20, ""), step}, func(c *Config) { c.RelayByAction = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			w, err := run(cfg, 0, tc.sched, (*World).CheckLossReported)
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

// w6Schedule is rapid's shrunk schedule from a -sim.strict TestSimPinCap
// campaign, verbatim (a hand-trimmed version no longer lost the count).
// The final drain's crash restarts the relay.
func w6Schedule() []Action {
	a := func(n int, c string) Action { return Action{Kind: Append, N: n, Cluster: c} }
	step := Action{Kind: RelayStep}
	return []Action{{Kind: DropRequest, N: 1}, step, {Kind: FSFault, Op: vfs.OpSyncDir, N: 1}, step, step, step, step,
		a(26, SourceCluster), {Kind: DropRequest, N: 3}, {Kind: DropResponse, N: 1}, {Kind: Retain},
		a(26, SourceCluster), a(26, ""), step, step, a(18, ""), a(26, ""), {Kind: Retain}, step, step}
}

func w5Schedule() []Action {
	s := []Action{{Kind: RelayStep}, {Kind: Partition}}
	for i := 0; i < 12; i++ {
		s = append(s, Action{Kind: Append, N: 26, Cluster: SourceCluster})
	}
	return append(s, Action{Kind: FSFault, Op: vfs.OpSyncDir, N: 1}, Action{Kind: Retain},
		Action{Kind: Append, N: 1, Cluster: SourceCluster}, Action{Kind: Flush}, Action{Kind: Crash})
}

func w4Schedule() []Action {
	var s []Action
	for i := 0; i < 5; i++ {
		s = append(s, Action{Kind: Append, N: 20}, Action{Kind: Flush})
	}
	s = append(s, Action{Kind: RelayStep}, Action{Kind: FSFault, Op: vfs.OpSyncDir}, Action{Kind: Compact}, Action{Kind: Retain})
	for i := 0; i < 5; i++ {
		s = append(s, Action{Kind: Append, N: 20}, Action{Kind: Flush})
	}
	return append(s, Action{Kind: RelayStep}, Action{Kind: Compact}, Action{Kind: Crash})
}

// TestM1ManyWALWrites is the regression for M1 (fixed in internal/vfs
// ecf258d): every extending MemFS write doubled the file's buffer, so a WAL
// file written ~35 times asked for tens of GiB and the process died. With
// 4 KiB memtables a WAL file now rotates after ~24 appends, so this run
// uses 64 KiB ones and single-row appends to put 200 writes into one file.
func TestM1ManyWALWrites(t *testing.T) {
	cfg := config()
	cfg.MemtableBytes = 64 << 10
	var sched []Action
	for i := 0; i < 200; i++ {
		sched = append(sched, Action{Kind: Append, N: 1})
	}
	sched = append(sched, Action{Kind: RelayStep}, Action{Kind: Crash})
	w, err := run(cfg, 0, sched)
	if err != nil {
		t.Fatalf("%v\ntrace (tail):\n%s", err, w.Trace.Tail(40))
	}
	if w.Coverage.MaxFileWrites < 200 {
		t.Fatalf("one file took only %d writes; the run must go well past the ~35 that exhausted memory", w.Coverage.MaxFileWrites)
	}
}

// TestFailedRetainFloor: a source Retain whose meta.json rename landed but
// whose directory sync failed returns an error and keeps serving its
// victims; a later sync makes the floor durable and, after a crash,
// recovery drops the segments below it. That is retention deleting rows it
// was allowed to delete (everything below the floor was forwarded), so the
// harness must accept it rather than report acked rows as lost. Shrunk from
// the first strict campaign after W3 and W4 were fixed
// (-rapid.seed=5900417140370504016).
func TestFailedRetainFloor(t *testing.T) {
	a := func(n int) Action { return Action{Kind: Append, N: n, Cluster: SourceCluster} }
	step := Action{Kind: RelayStep}
	sched := []Action{step, a(26), a(26), step, a(26), step,
		{Kind: FSFault, Op: vfs.OpSyncDir, N: 1}, step, a(6), {Kind: Retain}, step, a(14), step, a(6), {Kind: Crash}}
	w, err := run(config(), 0, sched)
	if err != nil {
		t.Fatalf("schedule:\n%s%v\ntrace (tail):\n%s", FormatSchedule(sched), err, w.Trace.Tail(40))
	}
	if w.Coverage.FailedRetainFloors == 0 {
		t.Fatalf("the failed Retain's floor never took effect; the schedule no longer reaches the case:\n%s", w.Trace.Tail(40))
	}
}
