package sim

import (
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The canaries run the same checkers against deliberately broken worlds and
// assert that a violation IS reported. A harness that passes these worlds
// could not catch the bugs it exists for.

// expectViolation runs sched under cfg and requires an error mentioning
// want from the end-of-run checks plus extra.
func expectViolation(t *testing.T, cfg Config, sched []Action, extra func(*World) error, want string) {
	t.Helper()
	var extras []func(*World) error
	if extra != nil {
		extras = append(extras, extra)
	}
	w, err := run(cfg, 1, sched, extras...)
	if w == nil {
		t.Fatalf("world: %v", err)
	}
	if err == nil {
		t.Fatalf("broken world passed every check; schedule:\n%s\ntrace:\n%s", FormatSchedule(sched), w.Trace.Tail(60))
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("violation reported, but not the expected one (%q):\n%v", want, err)
	}
	t.Logf("caught as expected:\n%v", err)
}

var (
	appendSome = Action{Kind: Append, N: 5}
	step       = Action{Kind: RelayStep}
)

// TestCanarySyncLiesSource: a source disk whose fsync lies loses acked rows
// at the power cut; property 4 must say so.
func TestCanarySyncLiesSource(t *testing.T) {
	cfg := config()
	cfg.SourceSyncLies = true
	expectViolation(t, cfg, []Action{appendSome, appendSome, {Kind: Crash, Node: 0}}, nil, "store east after crash")
}

// TestCanarySyncLiesTarget: a target disk whose fsync lies loses rows it
// acked; the watermark is then ahead of what the target holds (property 3)
// and the target's store check fails (property 4).
func TestCanarySyncLiesTarget(t *testing.T) {
	cfg := config()
	cfg.TargetSyncLies = true
	sched := []Action{appendSome, step, {Kind: Crash, Node: 1}}
	expectViolation(t, cfg, sched, nil, "relay watermark ahead of the target")
	expectViolation(t, cfg, sched, nil, "store global after crash")
}

// TestCanaryAckWithoutStoring: a sink that acks without storing must be
// reported as loss (property 1).
func TestCanaryAckWithoutStoring(t *testing.T) {
	cfg := config()
	cfg.AckWithoutStoring = true
	expectViolation(t, cfg, []Action{appendSome, step, appendSome}, nil, "acked rows missing from the target")
}

// TestCanarySkewBeyondLeeway: a source clock further ahead of the target
// than the leeway makes every token "not yet valid"; the within-leeway
// property must report the refusals.
func TestCanarySkewBeyondLeeway(t *testing.T) {
	cfg := config()
	sched := []Action{{Kind: Skew, Node: 0, D: cfg.Leeway + 5*time.Second}, appendSome, step, {Kind: Advance, D: time.Minute}, step}
	expectViolation(t, cfg, sched, (*World).CheckNoAuthRejections, "refused")
	// Behind by more than the token's refresh margin plus leeway: tokens
	// expire in flight.
	sched = []Action{{Kind: Skew, Node: 1, D: cfg.TokenTTL/3 + cfg.Leeway + time.Minute}, appendSome, step,
		{Kind: Advance, D: cfg.TokenTTL*2/3 - 10*time.Second}, appendSome, step}
	expectViolation(t, cfg, sched, (*World).CheckNoAuthRejections, "refused")
}

// TestCanaryNondeterminism: a relay whose backoff jitter is seeded from
// the wall clock must make the determinism check fail.
func TestCanaryNondeterminism(t *testing.T) {
	cfg := config()
	cfg.WallClockJitter = true
	sched := []Action{appendSome, {Kind: Partition}, step, step, step, {Kind: Heal}, step}
	w1, _ := run(cfg, 1, sched)
	w2, _ := run(cfg, 1, sched)
	if w1 == nil || w2 == nil {
		t.Fatal("world failed to start")
	}
	if w1.Trace.Hash() == w2.Trace.Hash() {
		t.Fatalf("wall-clock jitter went unnoticed: both traces hash to %s", w1.Trace.Hash())
	}
	t.Logf("caught as expected: %s", FirstDiff(w1.Trace, w2.Trace))
}

// TestCanaryGenerated: the same broken worlds under generated schedules
// are caught too, not only under the hand-written ones above.
func TestCanaryGenerated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   func(*Config)
		shape scheduleShape
	}{
		{"sync lies", func(c *Config) { c.SourceSyncLies, c.TargetSyncLies = true, true }, defaultShape},
		{"ack without storing", func(c *Config) { c.AckWithoutStoring = true }, defaultShape},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config()
			tc.cfg(&cfg)
			caught := 0
			runs := 30
			if raceEnabled {
				runs = 10
			}
			for i := 0; i < runs; i++ {
				sched := genSchedule(tc.shape).Example(i)
				if _, err := run(cfg, int64(i), sched); err != nil {
					caught++
				}
			}
			t.Logf("%s: caught in %d of %d generated schedules", tc.name, caught, runs)
			if caught == 0 {
				t.Fatalf("%s went unnoticed in %d generated schedules", tc.name, runs)
			}
		})
	}
	_ = rapid.Int
}
