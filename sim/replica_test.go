package sim

import (
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/peer"
)

// replicaCoverage counts runs that reached the states the properties are
// about, so they cannot pass by never getting there.
type replicaCoverage struct {
	runs, acked, lagging, floors, timeouts, tagFailures, relayDups, refusedIntruders, drained, adopted int
}

// runReplica draws a schedule of pushes, relay steps, link steps (dial,
// ship, deliver either way, drop, cut, partition), intruder actions, time,
// maintenance and crashes of either finelogd, checking after every step
// that the standby holds only rows the primary committed and that only key
// holders completed a handshake; then it loses the primary's disk, promotes
// the standby, checks every acknowledged row is on it once at its seq,
// points the relay at it and checks it adds no duplicates.
func runReplica(rt *rapid.T, cfg ReplicaWorldConfig, cov *replicaCoverage) (*ReplicaWorld, error) {
	w, err := NewReplicaWorld(cfg, rapid.Int64().Draw(rt, "seed"))
	if err != nil {
		return nil, err
	}
	defer w.Close()
	steps := rapid.IntRange(1, 70).Draw(rt, "steps")
	intruderTries := 0
	for range steps {
		var err error
		switch op := rapid.IntRange(0, 24).Draw(rt, "op"); op {
		case 0, 1, 2:
			err = w.Push(rapid.IntRange(1, 30).Draw(rt, "rows"))
		case 3:
			err = w.SourceAppend(rapid.IntRange(1, 20).Draw(rt, "src rows"))
		case 4:
			err = w.RelayStep()
		case 5, 6, 7, 8:
			err = w.Round()
		case 9:
			err = w.Dial()
		case 10:
			err = w.Ship()
		case 11:
			err = w.ToStandby()
		case 12:
			err = w.ToPrimary()
		case 13:
			err = w.Beat()
		case 14:
			w.DropFrame(rapid.Bool().Draw(rt, "to standby"))
		case 15:
			err = w.Cut()
		case 16:
			w.Partition(!w.partitioned)
		case 17:
			err = w.Advance(rapid.SampledFrom([]time.Duration{time.Second, replicaAckTimeout}).Draw(rt, "advance"))
		case 18, 19:
			err = w.Maintain(op == 18)
		case 20:
			if rapid.Bool().Draw(rt, "primary") {
				err = w.CrashPrimary()
			} else {
				err = w.CrashStandby()
			}
		case 21:
			intruderTries++
			err = w.IntruderDial()
		case 22:
			intruderTries++
			err = w.Hijack()
		case 23:
			err = w.Inject()
		case 24:
			w.Partition(false)
		}
		if err != nil {
			return w, harnessError{err}
		}
		if err := w.CheckStandbyCommitted(); err != nil {
			return w, err
		}
		if err := w.CheckOnlyKeyHolders(); err != nil {
			return w, err
		}
	}
	if cov != nil {
		cov.runs++
		cov.acked += min(len(w.Acked), 1)
		if w.link == nil || w.link.pipe.inFlight(1) > 0 || w.S.Store.LastSeq() < w.P.Store.LastSeq() {
			cov.lagging++
		}
		if w.S.Store.Floor() > 0 {
			cov.floors++
		}
		cov.timeouts += min(w.Timeouts, 1)
		cov.tagFailures += min(w.TagFailures, 1)
		cov.adopted += min(w.SegmentsAdopted, 1)
		if intruderTries > 0 && w.IntruderHandshakes == 0 {
			cov.refusedIntruders++
		}
	}
	// A drain would end the ack-before-sync canary's run on the exact-copy
	// check before the disk-loss property it is for.
	if rapid.Bool().Draw(rt, "drain first") && !cfg.Defects.AckBeforeSync {
		if err := w.Drain(); err != nil {
			return w, err
		}
		if cov != nil {
			cov.drained++
		}
	}
	if err := w.LosePrimaryDisk(rapid.Bool().Draw(rt, "standby crashes too")); err != nil {
		return w, harnessError{err}
	}
	if err := w.CheckAckedOnStandby(); err != nil {
		return w, err
	}
	if err := w.RelayIntoPromoted(); err != nil {
		return w, harnessError{err}
	}
	dups, err := w.CheckRelayNoDuplicates()
	if cov != nil {
		cov.relayDups += dups
	}
	return w, err
}

// harnessError is a step that failed as no finelogd should (the world
// could not be driven), as opposed to a property violation.
type harnessError struct{ error }

// TestSimReplica: with --min-replica-acks 1 no acknowledged row is lost
// with the primary's disk (the promoted standby serves each once, at its
// seq); the standby never holds a row the primary did not commit; only
// holders of the PSK complete a handshake or feed the standby; a relay
// pointed at the promoted standby adds no duplicates.
func TestSimReplica(t *testing.T) {
	var cov replicaCoverage
	// Under -race rapid runs 20 schedules per Check, too few to reach every
	// state the coverage asks for: keep drawing batches (each Check with a
	// fresh seed) until it is reached, up to a cap.
	for round := 0; round < 10 && (round == 0 || !cov.reached()); round++ {
		rapid.Check(t, func(rt *rapid.T) {
			w, err := runReplica(rt, ReplicaWorldConfig{}, &cov)
			if err != nil {
				tail := ""
				if w != nil {
					tail = w.Trace.Tail(40)
				}
				rt.Fatalf("%v\ntrace tail:\n%s", err, tail)
			}
		})
	}
	t.Logf("coverage: %+v", cov)
	if !cov.reached() {
		t.Fatalf("coverage: %+v; want runs with acknowledged rows, with the standby behind at the disk loss, with a floor moved onto the standby, with an ack timeout, with a frame refused for its tag, with an intruder refused, with a drain to an exact copy and with a shipped segment adopted", cov)
	}
}

func (c *replicaCoverage) reached() bool {
	return c.acked > 0 && c.lagging > 0 && c.floors > 0 && c.timeouts > 0 && c.tagFailures > 0 && c.refusedIntruders > 0 && c.drained > 0 && c.adopted > 0
}

// TestSimReplicaDeterministic: the same seed and schedule give the same
// trace, goroutines for handshakes and pushes notwithstanding.
func TestSimReplicaDeterministic(t *testing.T) {
	for seed := range 3 {
		var hashes [2]string
		for i := range hashes {
			w, err := runFixedReplica(int64(seed))
			if err != nil {
				t.Fatal(err)
			}
			hashes[i] = w.Trace.Hash()
		}
		if hashes[0] != hashes[1] {
			t.Fatalf("seed %d: two runs of one schedule traced differently", seed)
		}
	}
}

// runFixedReplica is one hand-written schedule touching every step kind.
func runFixedReplica(seed int64) (*ReplicaWorld, error) {
	w, err := NewReplicaWorld(ReplicaWorldConfig{}, seed)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	steps := []func() error{
		func() error { return w.Push(5) }, w.Dial, w.ToPrimary, w.Ship, w.ToStandby, w.ToPrimary,
		func() error { return w.SourceAppend(12) }, w.RelayStep, w.Ship, w.ToStandby, w.ToPrimary,
		func() error { return w.Push(3) }, func() error { return w.Maintain(false) }, w.Cut, func() error { return w.Advance(replicaAckTimeout) },
		w.Dial, w.ToPrimary, w.Ship, w.Beat, w.ToStandby, w.ToPrimary, w.Inject, w.ToStandby,
		w.IntruderDial, w.Hijack, w.Dial, w.ToStandby, w.Dial, w.ToPrimary, w.Ship, w.ToStandby, w.ToPrimary,
		w.CrashPrimary, func() error { return w.Push(2) }, w.Dial, w.ToPrimary, w.Ship, w.ToStandby, w.ToPrimary,
		func() error { return w.LosePrimaryDisk(true) }, w.RelayIntoPromoted,
	}
	for i, s := range steps {
		if err := s(); err != nil {
			return w, err
		}
		if err := w.CheckStandbyCommitted(); err != nil {
			return w, err
		}
		w.Trace.Addf("step %d done", i)
	}
	if err := w.CheckAckedOnStandby(); err != nil {
		return w, err
	}
	_, err = w.CheckRelayNoDuplicates()
	return w, err
}

// expectReplicaViolation draws schedules under a broken replica port until
// one breaks a property whose message contains one of wants. Under -race rapid
// runs few schedules per Check, so it keeps drawing batches (each Check
// with a fresh seed) up to a cap.
func expectReplicaViolation(t *testing.T, d peer.Defects, wants ...string) {
	t.Helper()
	caught := false
	for round := 0; round < 25 && !caught; round++ {
		rapid.Check(t, func(rt *rapid.T) {
			if caught {
				return // the rest of this batch adds nothing
			}
			_, err := runReplica(rt, ReplicaWorldConfig{Defects: d}, nil)
			if err == nil {
				return
			}
			expected := false
			for _, want := range wants {
				expected = expected || strings.Contains(err.Error(), want)
			}
			// A harness error (a finelogd that no longer opens its data
			// dir) counts only when it names what the canary breaks.
			if !expected {
				rt.Fatalf("a violation, but not an expected one (%q): %v", wants, err)
			}
			if !caught {
				t.Logf("caught as expected: %v", err)
			}
			caught = true
		})
	}
	if !caught {
		t.Fatalf("the broken replica port (%+v) broke no property in any schedule", d)
	}
}

// TestCanaryReplicaAcksBeforeSync: a standby that acks before it writes
// is caught by the disk-loss property.
func TestCanaryReplicaAcksBeforeSync(t *testing.T) {
	expectReplicaViolation(t, peer.Defects{AckBeforeSync: true}, "acknowledged seq")
}

// TestCanaryReplicaSkipsMACCheck: a handshake that takes any MAC lets the
// intruder hold a link: the only-key-holders property says so.
func TestCanaryReplicaSkipsMACCheck(t *testing.T) {
	expectReplicaViolation(t, peer.Defects{SkipMACCheck: true}, "without the PSK completed")
}

// TestCanaryReplicaSkipsTagCheck: untagged frames let a node on the path
// feed the standby rows the primary never wrote. The forged row is caught
// after the step that applies it, or, when the schedule drains first, by
// the drain's exact-copy check (the standby then holds more rows than the
// primary).
func TestCanaryReplicaSkipsTagCheck(t *testing.T) {
	expectReplicaViolation(t, peer.Defects{SkipTagCheck: true}, "which the primary did not commit", "after the drain the standby")
}

// TestCanaryReplicaAdoptsUnchecked: a primary that ships a segment as soon
// as it is sealed and a standby that adopts it without checking that it
// holds the range and that no segment of its own straddles it leave the
// standby with rows twice or at the wrong seqs (reads, the drain's exact
// copy) or with segments that overlap, which it refuses at its next start.
func TestCanaryReplicaAdoptsUnchecked(t *testing.T) {
	expectReplicaViolation(t, peer.Defects{ShipUnchecked: true}, "after the drain the standby", "is on the promoted standby", "which the primary did not commit", "overlap without one containing the other", "standby: reopen store")
}
