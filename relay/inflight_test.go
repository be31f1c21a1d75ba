package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A target that refuses overtaking batches gets InFlight batches at once,
// and every row still arrives exactly once.
func TestInFlightAgainstGapRefusingTarget(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.InFlight = 4 }
	h.tgt.refusesGaps = true
	// Hold each push briefly until a second one has been in flight, so the
	// test sees concurrency whenever the relay offers it.
	h.tgt.beforePush = func(int32) {
		for deadline := time.Now().Add(200 * time.Millisecond); h.tgt.maxActive.Load() < 2 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	h.src.addN(2000)
	f := h.forwarder(t)
	h.drain(t, f, 10)
	// Once more so the primed relay (the first round is always one batch)
	// pushes a full round.
	h.src.addN(1000)
	h.drain(t, f, 10)
	if m := h.tgt.maxActive.Load(); m < 2 {
		t.Fatalf("at most %d push in flight, want up to 4", m)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 3000)
}

// Against a target that does not say it refuses gaps (an older finelogd),
// InFlight > 1 falls back to one batch at a time, and says so.
func TestInFlightFallsBackWithoutGapRefusal(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.InFlight = 4 }
	h.src.addN(3000)
	f := h.forwarder(t)
	h.drain(t, f, 10)
	h.src.addN(1000)
	h.drain(t, f, 10)
	if m := h.tgt.maxActive.Load(); m != 1 {
		t.Fatalf("%d pushes in flight against a target that does not refuse gaps, want 1", m)
	}
	if !strings.Contains(h.logs.String(), "pushing one batch at a time") {
		t.Errorf("fallback not logged:\n%s", h.logs)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 4000)
}

// When the target's mark goes back under a running relay (it lost rows it
// had acked), its refusals make the relay ask it again: the loss is
// reported and forwarding resumes instead of retrying the refused batch
// forever.
func TestAbortedBatchReResolvesTargetMark(t *testing.T) {
	h := newHarness(t)
	h.tgt.refusesGaps = true
	h.src.addN(500)
	f := h.forwarder(t)
	h.drain(t, f, 10)
	// The target loses everything past seq 300 (say, restored from an
	// older backup).
	h.tgt.restore(h.src, 300)
	h.src.addN(100)
	if _, err := f.Step(context.Background()); err == nil {
		t.Fatal("push past the target's mark was accepted; want it refused")
	}
	h.drain(t, f, 10)
	if !strings.Contains(h.logs.String(), "the target lost rows it had acked") {
		t.Errorf("target loss not reported:\n%s", h.logs)
	}
	if got := testutil.ToFloat64(f.m.targetLoss); got != 200 {
		t.Errorf("target loss counter = %v, want 200", got)
	}
	if w := f.Watermark(); w != 600 {
		t.Fatalf("watermark %d, want 600: forwarding did not resume", w)
	}
	if n := h.tgt.len(); n != 400 {
		t.Fatalf("target holds %d rows, want 400 (300 kept + the 100 new)", n)
	}
}
