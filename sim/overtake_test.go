package sim

import "testing"

// TestCanaryAcceptOvertaking: a target that takes a producer batch
// overtaking an earlier one (dedupe by high-water mark alone) acks the
// earlier batch without storing it; the overtaking check must say so.
func TestCanaryAcceptOvertaking(t *testing.T) {
	cfg := config()
	cfg.Defects.AcceptOvertaking = true
	sched := []Action{{Kind: Overtake, N: 3}, {Kind: Overtake, N: 3}}
	expectViolation(t, cfg, sched, nil, "acked producer batches missing from the target")
}

// TestOvertakeRefusedThenApplied: against the real server the overtaking
// batch is refused (aborted) and lands after the earlier one.
func TestOvertakeRefusedThenApplied(t *testing.T) {
	w, err := run(config(), 1, []Action{{Kind: Overtake, N: 3}, {Kind: Overtake, N: 3}})
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Trace.Tail(40))
	}
	if w.Coverage.GapRefusals == 0 {
		t.Fatalf("the overtaking batch was never refused:\n%s", w.Trace.Tail(20))
	}
	if len(w.batch.acked) != 4 {
		t.Fatalf("%d batches acked, want 4", len(w.batch.acked))
	}
}
