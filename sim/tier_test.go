package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/server"
)

// tierDivisor is the share of -rapid.checks TestSimTier runs: each
// schedule opens a server and store and writes parquet segments, so the
// full count would cost minutes of CI.
const tierDivisor = 2

// runTier draws a schedule of producer appends, flushes, compactions, tier
// rounds, bucket faults, clock advances and power cuts, checking after
// every step that every acked row reads back; then it rebuilds a node from
// the bucket alone and checks every uploaded row is served exactly once.
func runTier(rt *rapid.T, defects server.Defects, cov *TierCoverage) error {
	var retention int64
	if rapid.Bool().Draw(rt, "evict") {
		retention = 1 // evict every uploaded segment
	}
	if defects.EvictUnuploaded {
		retention = 1
	}
	w, err := NewTierWorld(rapid.Int64().Draw(rt, "seed"), retention, defects)
	if err != nil {
		return err
	}
	defer w.Close()
	steps := rapid.IntRange(1, 60).Draw(rt, "steps")
	for i := range steps {
		var err error
		switch op := rapid.IntRange(0, 11).Draw(rt, "op"); op {
		case 0, 1:
			err = w.Append(rapid.IntRange(1, 60).Draw(rt, "rows"))
		case 2:
			err = w.Flush()
		case 3, 4:
			err = w.Round()
		case 5:
			err = w.Compact()
		case 6, 7:
			w.Fault(rapid.IntRange(0, 5).Draw(rt, "fault"), rapid.IntRange(1, 3).Draw(rt, "faults"))
		case 8:
			w.Up()
		case 9:
			w.Advance(time.Duration(rapid.IntRange(1, 300).Draw(rt, "secs")) * time.Second)
		case 10, 11:
			if rapid.IntRange(0, 2).Draw(rt, "crash") == 0 {
				err = w.Crash()
			} else {
				err = w.Round()
			}
		}
		if err != nil {
			return fmt.Errorf("step %d: %w\n%s", i, err, w.Trace.Tail(20))
		}
		if err := w.CheckAcked(); err != nil {
			return fmt.Errorf("step %d: %w\n%s", i, err, w.Trace.Tail(20))
		}
	}
	if rapid.Bool().Draw(rt, "settle") {
		// Half the runs end with the bucket healthy and the tier caught
		// up, so the rebuild has rows to serve; the others lose the disk
		// wherever the schedule left it.
		w.Up()
		for _, step := range []func() error{w.Flush, w.Round, func() error { w.Advance(5 * time.Minute); return nil }, w.Round} {
			if err := step(); err != nil {
				return err
			}
		}
		if err := w.CheckAcked(); err != nil {
			return err
		}
	}
	if err := w.CheckRebuild(); err != nil {
		return err
	}
	if cov != nil {
		cov.Evicted += min(w.Coverage.Evicted, 1)
		cov.BucketFaults += min(w.Coverage.BucketFaults, 1)
		cov.Torn += w.Coverage.Torn
		cov.Crashes += min(w.Coverage.Crashes, 1)
		cov.Rebuilt += min(w.Coverage.Rebuilt, 1)
		cov.TornFirstManifest += w.Coverage.TornFirstManifest
	}
	return nil
}

// TestSimTier: with the object tier on, every acked row stays readable
// across power cuts, bucket faults and local eviction, and a node rebuilt
// from the bucket alone serves every uploaded row exactly once and drops
// the relay's re-sent batches.
func TestSimTier(t *testing.T) {
	scaleChecks(t, tierDivisor)
	var cov TierCoverage
	// Under -race rapid runs few schedules per Check: draw more batches
	// (each with a fresh seed) until the coverage floor is reached, up to
	// a cap.
	for round := 0; round < 10; round++ {
		rapid.Check(t, func(rt *rapid.T) {
			if err := runTier(rt, server.Defects{}, &cov); err != nil {
				rt.Fatal(err)
			}
		})
		if t.Failed() || cov.Evicted > 0 && cov.BucketFaults > 0 && cov.Crashes > 0 && cov.Rebuilt > 0 {
			break
		}
	}
	if cov.Evicted == 0 || cov.BucketFaults == 0 || cov.Crashes == 0 || cov.Rebuilt == 0 {
		t.Fatalf("coverage: runs with reads of evicted segments %d, with bucket faults %d, with crashes %d, with rows rebuilt from the bucket %d; want each > 0",
			cov.Evicted, cov.BucketFaults, cov.Crashes, cov.Rebuilt)
	}
	t.Logf("coverage: %+v", cov)
}

// TestCanaryTierEvictsUnuploaded: a tier that drops a local copy before
// the bucket's manifest holds the segment loses acked rows when the upload
// fails; the acked-rows property must say so.
func TestCanaryTierEvictsUnuploaded(t *testing.T) {
	w, err := NewTierWorld(1, 1, server.Defects{EvictUnuploaded: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(20); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	w.Fault(0, 1) // the bucket is down: the upload fails, the copy goes anyway
	for range 2 { // the first round stops at the failure, the second backs off and evicts
		if err := w.Round(); err != nil {
			t.Fatal(err)
		}
	}
	err = w.CheckAcked()
	if err == nil || !strings.Contains(err.Error(), "acked row") && !strings.Contains(err.Error(), "read back acked rows") {
		t.Fatalf("a tier evicting before upload passed the acked-rows check: %v", err)
	}
	t.Logf("caught as expected: %v", err)
}
