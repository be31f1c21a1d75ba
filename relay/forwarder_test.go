package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"math/rand"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	statePath = "/data/relay/watermark.json"
	dlPath    = "/data/relay/dead-letter.jsonl"
	target    = "https://global.example:8443"
	producer  = "east/store-1"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type harness struct {
	fs    *vfs.MemFS
	clk   *clock.Fake
	src   *memSource
	tgt   *storeTarget
	reg   *prometheus.Registry
	logs  *bytes.Buffer
	pins  []int64
	tweak func(*Config)
}

func newHarness(t tb) *harness {
	t.Helper()
	h := &harness{fs: vfs.NewMemFS(), clk: clock.NewFake(t0), src: &memSource{}, tgt: newStoreTarget(t), logs: &bytes.Buffer{}}
	if err := h.fs.MkdirAll("/data/relay"); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) config() Config {
	cfg := Config{
		Source: h.src, Sink: h.tgt, FS: h.fs, Clock: h.clk, Rand: rand.New(rand.NewSource(1)),
		StatePath: statePath, DeadLetterPath: dlPath, Target: target, Producer: producer, Cluster: "east",
		Options: Options{BatchRows: 100, Backfill: true},
		Pin:     func(seq int64) { h.pins = append(h.pins, seq) },
		Logger:  slog.New(slog.NewTextHandler(h.logs, nil)),
	}
	if h.tweak != nil {
		h.tweak(&cfg)
	}
	return cfg
}

// forwarder makes a new Forwarder, as a restarted process would.
func (h *harness) forwarder(t tb) *Forwarder {
	t.Helper()
	h.reg = prometheus.NewRegistry()
	cfg := h.config()
	cfg.Registerer = h.reg
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// drain steps (advancing the fake clock by each requested delay) until a
// Step succeeds, failing the test after max steps.
func (h *harness) drain(t tb, f *Forwarder, max int) (steps int) {
	t.Helper()
	for i := 1; i <= max; i++ {
		next, err := f.Step(context.Background())
		if err == nil {
			return i
		}
		if errors.Is(err, ErrCorruptWatermark) {
			t.Fatalf("step %d: %v", i, err)
		}
		h.clk.Advance(next)
	}
	t.Fatalf("relay did not catch up in %d steps; status %+v", max, f.Status())
	return max
}

func TestBacklogDrainsInOneStep(t *testing.T) {
	h := newHarness(t)
	h.src.addN(12_345)
	f := h.forwarder(t)
	next, err := f.Step(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if next != DefaultPollInterval {
		t.Errorf("next = %v, want the idle poll interval %v", next, DefaultPollInterval)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 12_345)
	st := f.Status()
	if st.State != StateOK || st.Watermark != 12_345 || st.LagRows != 0 || st.Forwarded != 12_345 || !st.LastSuccess.Equal(t0) {
		t.Errorf("status = %+v", st)
	}
	if js, err := json.Marshal(st); err != nil || !strings.Contains(string(js), `"state":"ok"`) || !strings.Contains(string(js), `"watermark":12345`) {
		t.Errorf("status JSON = %s, %v", js, err)
	}
	if got := testutil.ToFloat64(f.m.up.WithLabelValues(string(StateOK))); got != 1 {
		t.Errorf("finelog_relay_state{state=ok} = %v", got)
	}
	if got := testutil.ToFloat64(f.m.lastSuccess); got != float64(t0.Unix()) {
		t.Errorf("finelog_relay_last_success_timestamp_seconds = %v, want %d", got, t0.Unix())
	}
	if got := testutil.ToFloat64(f.m.forwarded); got != 12_345 {
		t.Errorf("finelog_relay_forwarded_rows_total = %v", got)
	}
	if h.pins[len(h.pins)-1] != 12_345 {
		t.Errorf("last pin = %d, want 12345", h.pins[len(h.pins)-1])
	}
	// The watermark on disk is what a restart resumes from.
	w, err := readWatermark(h.fs, statePath)
	if err != nil || w.Cursor != 12_345 || w.Target != target || w.Producer != producer {
		t.Fatalf("watermark on disk = %+v, %v", w, err)
	}
}

func TestBatchesRespectByteLimit(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.BatchRows = 10_000; c.BatchBytes = 4096 }
	for i := 0; i < 500; i++ {
		h.src.add(store.Row{Key: "/k", Data: strings.Repeat("x", 200)})
	}
	var biggest int
	h.tgt.failWhen = func(b Batch) error { biggest = max(biggest, rowsBytes(b.Rows)); return nil }
	f := h.forwarder(t)
	h.drain(t, f, 1)
	if biggest > 4096 {
		t.Errorf("a push carried %d bytes, limit 4096", biggest)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 500)
}

func TestFirstRunStartsAtSourceCursor(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.Backfill = false }
	h.src.addN(100)
	f := h.forwarder(t)
	h.drain(t, f, 1)
	if n := h.tgt.len(); n != 0 {
		t.Fatalf("without backfill the first run forwarded %d old rows", n)
	}
	// The start point is durable: a restart after more rows arrived must
	// not jump past them.
	h.src.addN(10)
	f = h.forwarder(t)
	h.drain(t, f, 1)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 100, 110)
	if n := h.tgt.len(); n != 10 {
		t.Fatalf("target has %d rows, want the 10 new ones", n)
	}
}

func TestStartsFromTargetAppliedMark(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.Backfill = false }
	h.src.addN(100)
	h.tgt.restore(h.src, 60) // the target already has 1..60 (watermark lost)
	f := h.forwarder(t)
	h.drain(t, f, 1)
	// Exactly once: the relay sent 61..100, not the 60 the target had.
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 100)
	if n := h.tgt.len(); n != 100 {
		t.Fatalf("target holds %d rows, want its 60 plus 61..100", n)
	}
}

func TestTargetRepointedReseedsWithWarning(t *testing.T) {
	h := newHarness(t)
	h.src.addN(300)
	old := Watermark{Target: "https://old-global:8443", Producer: producer, Cursor: 250}
	if err := writeWatermark(h.fs, statePath, old); err != nil {
		t.Fatal(err)
	}
	h.tgt.restore(h.src, 120) // the new target has the producer up to 120
	f := h.forwarder(t)
	h.drain(t, f, 1)
	if !strings.Contains(h.logs.String(), "another target") {
		t.Errorf("no warning about the repointed target in logs:\n%s", h.logs)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 120, 300)
	w, err := readWatermark(h.fs, statePath)
	if err != nil || w.Target != target || w.Cursor != 300 {
		t.Fatalf("watermark = %+v, %v; want it rewritten for the new target", w, err)
	}
}

func TestCorruptWatermarkStopsRelay(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
	}{
		{"garbage", "{\"target\": \"https://glo"},
		{"empty", ""},
		{"wrong version", `{"version": 7, "target": "` + target + `", "producer": "` + producer + `", "cursor": 5}`},
		{"negative cursor", `{"version": 1, "target": "` + target + `", "producer": "` + producer + `", "cursor": -5}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.src.addN(50)
			h.tgt.restore(h.src, 10)
			if err := vfs.WriteFileAtomic(h.fs, statePath, []byte(tc.data)); err != nil {
				t.Fatal(err)
			}
			f := h.forwarder(t)
			for i := 0; i < 3; i++ {
				next, err := f.Step(context.Background())
				if !errors.Is(err, ErrCorruptWatermark) || !strings.Contains(err.Error(), statePath) {
					t.Fatalf("step %d: err = %v, want ErrCorruptWatermark naming %s", i, err, statePath)
				}
				if next <= 0 {
					t.Fatalf("next = %v", next)
				}
				h.clk.Advance(next)
			}
			st := f.Status()
			if st.State != StateCorruptWatermark || st.Healthy() || !strings.Contains(st.LastError, "watermark") {
				t.Errorf("status = %+v", st)
			}
			if got := testutil.ToFloat64(f.m.up.WithLabelValues(string(StateCorruptWatermark))); got != 1 {
				t.Errorf("finelog_relay_state{state=stopped_corrupt_watermark} = %v", got)
			}
			if h.tgt.len() != 10 {
				t.Fatalf("a stopped relay pushed %d rows", h.tgt.len()-10)
			}
			// The file is left for the operator; removing it resumes from
			// the target's applied mark, not from the source's cursor.
			if data, _ := vfs.ReadFile(h.fs, statePath); string(data) != tc.data {
				t.Fatalf("relay rewrote the corrupt watermark: %q", data)
			}
			if err := h.fs.Remove(statePath); err != nil {
				t.Fatal(err)
			}
			h.drain(t, f, 1)
			checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 10, 50)
		})
	}
}

// failOpenFS makes one path unreadable (permission denied, I/O error).
type failOpenFS struct {
	vfs.FS
	path string
}

func (f failOpenFS) Open(name string) (vfs.File, error) {
	if name == f.path {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return f.FS.Open(name)
}

func TestUnreadableWatermarkStopsRelay(t *testing.T) {
	h := newHarness(t)
	h.src.addN(5)
	if err := writeWatermark(h.fs, statePath, Watermark{Target: target, Producer: producer, Cursor: 2}); err != nil {
		t.Fatal(err)
	}
	h.tweak = func(c *Config) { c.FS = failOpenFS{c.FS, statePath} }
	f := h.forwarder(t)
	_, err := f.Step(context.Background())
	if !errors.Is(err, ErrCorruptWatermark) || !strings.Contains(err.Error(), "permission") {
		t.Fatalf("err = %v", err)
	}
	if h.tgt.len() != 0 {
		t.Fatal("relay pushed despite an unreadable watermark")
	}
}

func TestPoisonRowsDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.BatchRows = 1000 }
	h.src.addN(1000, 137, 800, 801)
	f := h.forwarder(t)
	h.drain(t, f, 1)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 1000)
	recs, torn := readDeadLetters(t, h.fs, dlPath)
	if len(recs) != 3 || torn != 0 {
		t.Fatalf("dead letters = %d records (%d torn), want 3", len(recs), torn)
	}
	for i, want := range []int64{137, 800, 801} {
		d := recs[i]
		if d.Row.Seq != want || !strings.Contains(d.Reason, "invalid_argument") || !strings.Contains(d.Reason, "poison") || d.Producer != producer || d.Target != target {
			t.Errorf("record %d = %+v", i, d)
		}
	}
	st := f.Status()
	if st.DeadLettered != 3 || st.Forwarded != 997 || st.Watermark != 1000 {
		t.Errorf("status = %+v", st)
	}
	if got := testutil.ToFloat64(f.m.deadLettered); got != 3 {
		t.Errorf("finelog_relay_dead_lettered_rows_total = %v", got)
	}
}

func TestAuthFailureRetriesSlowlyAndNeverDrops(t *testing.T) {
	h := newHarness(t)
	h.src.addN(250)
	h.tgt.fail = connect.NewError(connect.CodeUnauthenticated, errors.New("token expired"))
	f := h.forwarder(t)
	for i := 0; i < 20; i++ {
		next, err := f.Step(context.Background())
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("err = %v", err)
		}
		if next < DefaultAuthRetry/2 || next > DefaultAuthRetry {
			t.Fatalf("auth retry delay %v, want within [%v, %v]", next, DefaultAuthRetry/2, DefaultAuthRetry)
		}
		h.clk.Advance(next)
	}
	st := f.Status()
	if st.State != StateAuthFailing || st.Healthy() || st.Failures[ClassAuth] != 20 {
		t.Errorf("status = %+v", st)
	}
	// Permission denied on pushes (after a successful start) is the same.
	h.tgt.fail = nil
	h.tgt.failWhen = func(Batch) error {
		return connect.NewError(connect.CodePermissionDenied, errors.New("cluster east may not push"))
	}
	_, err := f.Step(context.Background())
	if connect.CodeOf(err) != connect.CodePermissionDenied || f.Status().State != StateAuthFailing {
		t.Fatalf("err = %v, state %s", err, f.Status().State)
	}
	h.tgt.failWhen = nil
	h.drain(t, f, 1)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 250)
	if recs, _ := readDeadLetters(t, h.fs, dlPath); len(recs) != 0 {
		t.Fatalf("auth failures dead-lettered %d rows", len(recs))
	}
	if f.Status().State != StateOK {
		t.Fatalf("state after recovery = %s", f.Status().State)
	}
}

func TestUnavailableBacksOffWithFullJitter(t *testing.T) {
	run := func() []time.Duration {
		h := newHarness(t)
		h.src.addN(10)
		h.tgt.fail = connect.NewError(connect.CodeUnavailable, errors.New("no route to host"))
		f := h.forwarder(t)
		var delays []time.Duration
		for i := 0; i < 14; i++ {
			next, err := f.Step(context.Background())
			if err == nil {
				t.Fatal("step succeeded against a down target")
			}
			delays = append(delays, next)
		}
		if f.Status().State != StateBackoff || !f.Status().Healthy() {
			t.Errorf("state = %s", f.Status().State)
		}
		return delays
	}
	a, b := run(), run()
	for i, d := range a {
		ceiling := DefaultMinBackoff << i
		if ceiling > DefaultMaxBackoff || ceiling <= 0 {
			ceiling = DefaultMaxBackoff
		}
		if d < DefaultMinBackoff || d > ceiling {
			t.Errorf("attempt %d: delay %v outside [%v, %v]", i, d, DefaultMinBackoff, ceiling)
		}
		if d != b[i] {
			t.Errorf("attempt %d: same seed gave %v then %v", i, d, b[i])
		}
	}
	if a[len(a)-1] < time.Second {
		t.Errorf("after %d failures the delay is still %v: backoff is not growing", len(a), a[len(a)-1])
	}
}

func TestLostAcksCauseNoDuplicates(t *testing.T) {
	h := newHarness(t)
	h.src.addN(1000)
	h.tgt.loseAck = []bool{false, true, false, true, true, false}
	h.tgt.dropRequest = []bool{false, false, true, false, false, true}
	f := h.forwarder(t)
	h.drain(t, f, 50)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 1000)
}

func TestNonIdempotentDuplicatesBoundedByFailures(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.NonIdempotent = true }
	h.src.addN(1000)
	h.tgt.loseAck = []bool{false, true, false, true}
	f := h.forwarder(t)
	h.drain(t, f, 50)
	dups := 0
	for seq := int64(1); seq <= 1000; seq++ {
		c := h.tgt.counts()[seq]
		if c == 0 {
			t.Fatalf("seq %d lost", seq)
		}
		dups += c - 1
	}
	// Two lost acks: at most two batches (of 100) re-sent.
	if dups == 0 || dups > 2*100 {
		t.Fatalf("%d duplicated rows, want 1..200 for two lost acks", dups)
	}
}

func TestLoopGuardSkipsOtherClusters(t *testing.T) {
	h := newHarness(t)
	h.src.addN(10)
	for i := 0; i < 150; i++ { // a whole batch of relayed-in rows, then a mix
		h.src.add(store.Row{Key: "/k", Data: "from west", Cluster: "west"})
	}
	h.src.add(store.Row{Key: "/k", Data: "ours, labelled", Cluster: "east"})
	h.src.addN(5)
	f := h.forwarder(t)
	h.drain(t, f, 1)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 166)
	st := f.Status()
	if st.Watermark != 166 || st.Filtered != 150 || st.Forwarded != 16 {
		t.Errorf("status = %+v", st)
	}
	for _, r := range h.tgt.rows() {
		if r.Cluster != "east" {
			t.Fatalf("target row %+v not labelled with the source cluster", r)
		}
	}
}

func TestSourceGapIsCountedNotSilent(t *testing.T) {
	h := newHarness(t)
	h.src.addN(100)
	h.src.trim(40) // retention deleted 1..40 before the relay ran
	f := h.forwarder(t)
	h.drain(t, f, 1)
	st := f.Status()
	if st.SourceGap != 40 || st.Watermark != 100 || st.Forwarded != 60 {
		t.Errorf("status = %+v", st)
	}
	if !strings.Contains(h.logs.String(), "first_seq=1 last_seq=40") {
		t.Errorf("gap not logged:\n%s", h.logs)
	}
}

func TestInFlightAdvancesOverContiguousPrefix(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.InFlight = 4 }
	h.src.addN(1000)
	// A poison row that ends a batch and a batch of only other clusters'
	// rows: the target must still see contiguous ranges.
	h.src.addN(100, 100)
	for i := 0; i < 100; i++ {
		h.src.add(store.Row{Key: "/k", Data: "relayed in", Cluster: "west"})
	}
	h.src.addN(250)
	// The target applies a producer's batches only in order (it rejects a
	// gap), which is what makes InFlight > 1 safe.
	h.tgt.refusesGaps = true
	// 201..300 fails twice: the concurrent push and the in-order retry.
	failures := 0
	h.tgt.failWhen = func(b Batch) error {
		if b.FirstSeq == 201 && failures < 2 {
			failures++
			return connect.NewError(connect.CodeUnavailable, errors.New("dropped"))
		}
		return nil
	}
	f := h.forwarder(t)
	_, err := f.Step(context.Background())
	if err == nil {
		t.Fatal("step with a failed batch succeeded")
	}
	// Batches 1..200 may be settled; 201..300 failed, so nothing past 200
	// is committed even if later batches were acked.
	if w := f.Watermark(); w != 200 {
		t.Fatalf("watermark = %d, want 200 (end of the contiguous acked prefix)", w)
	}
	h.drain(t, f, 20)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 1450)
	if st := f.Status(); st.Watermark != 1450 || st.DeadLettered != 1 || st.Filtered != 100 {
		t.Errorf("status = %+v", st)
	}
}

func TestWatermarkWriteFailureRetriesWithoutLoss(t *testing.T) {
	h := newHarness(t)
	h.src.addN(300)
	f := h.forwarder(t)
	h.drain(t, f, 1)
	h.src.addN(300)
	h.fs.Inject = func(op vfs.Op, name string) error {
		if strings.HasPrefix(name, statePath) {
			return vfs.ErrNoSpace
		}
		return nil
	}
	_, err := f.Step(context.Background())
	if !errors.Is(err, vfs.ErrNoSpace) || f.Watermark() != 300 {
		t.Fatalf("err = %v, watermark %d", err, f.Watermark())
	}
	if f.Status().Failures[ClassState] != 1 {
		t.Errorf("failures = %v", f.Status().Failures)
	}
	h.fs.Inject = nil
	h.drain(t, f, 5)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 600)
}

// errCrash is what every filesystem operation returns once the simulated
// process has died.
var errCrash = errors.New("process crashed")

// TestCrashAtEveryDurableStep kills the relay before each filesystem
// operation in turn (so also just after the previous one), power-cuts the
// MemFS (tearing unsynced bytes), restarts a fresh Forwarder on what
// survived, and checks that every row reaches the target exactly once and
// every poison row has a dead-letter record.
func TestCrashAtEveryDurableStep(t *testing.T) {
	for crashAt := 1; ; crashAt++ {
		h := newHarness(t)
		h.tweak = func(c *Config) { c.BatchRows = 64 }
		h.tgt.refusesGaps = true
		h.src.addN(400, 30, 31, 200, 333)
		ops, dead := 0, false
		h.fs.Inject = func(op vfs.Op, name string) error {
			if dead {
				return errCrash
			}
			ops++
			if ops == crashAt {
				dead = true
				return errCrash
			}
			return nil
		}
		f := h.forwarder(t)
		for i := 0; i < 20; i++ {
			_, err := f.Step(context.Background())
			if err == nil || dead {
				break
			}
		}
		if !dead {
			if crashAt == 1 {
				t.Fatal("no filesystem operations observed")
			}
			t.Logf("crashed before each of %d filesystem operations", crashAt-1)
			return
		}
		h.fs.Crash(rand.New(rand.NewSource(int64(crashAt))))
		h.fs.Inject = nil
		h.src.addN(50, 7)
		f = h.forwarder(t)
		h.drain(t, f, 10)
		checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 450)
		if t.Failed() {
			t.Fatalf("crash before filesystem operation %d broke delivery", crashAt)
		}
	}
}

// TestRelayProperty drives the relay through random appends (with poison
// rows and other clusters' rows), steps, lost requests, lost acks, auth
// failures, a full disk and crashes at random filesystem operations (with
// torn writes), against a plain high-water-mark target with one batch in
// flight or an in-order target with up to four. Throughout, the target
// never holds a row twice and the durable watermark never moves back; once
// the faults heal, every row is in the target exactly once or in the
// dead-letter file. Replay a failure with -rapid.seed=N.
func TestRelayProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(rt)
		h.tgt.refusesGaps = rapid.Bool().Draw(rt, "inOrderTarget")
		inFlight := 1
		if h.tgt.refusesGaps {
			inFlight = rapid.IntRange(1, 4).Draw(rt, "inFlight")
		}
		batchRows := rapid.IntRange(1, 40).Draw(rt, "batchRows")
		h.tweak = func(c *Config) { c.BatchRows = batchRows; c.InFlight = inFlight }
		crashRng := rand.New(rand.NewSource(rapid.Int64().Draw(rt, "tearSeed")))
		f := h.forwarder(rt)
		durable := int64(-1)
		diskFull := 0
		for i, n := 0, rapid.IntRange(1, 50).Draw(rt, "actions"); i < n; i++ {
			switch rapid.IntRange(0, 8).Draw(rt, "action") {
			case 0, 1:
				rows := rapid.IntRange(0, 120).Draw(rt, "rows")
				var poison []int
				if rows > 0 && rapid.IntRange(0, 3).Draw(rt, "poisonRoll") == 0 {
					poison = append(poison, rapid.IntRange(1, rows).Draw(rt, "poisonAt"))
				}
				h.src.addN(rows, poison...)
			case 2:
				h.src.add(store.Row{Key: "/k", Data: "relayed in", Cluster: "west"})
			case 3, 4:
				next, _ := f.Step(context.Background())
				h.clk.Advance(next)
			case 5:
				h.tgt.loseAck = append(h.tgt.loseAck, rapid.Bool().Draw(rt, "loseAck"))
				h.tgt.dropRequest = append(h.tgt.dropRequest, rapid.Bool().Draw(rt, "dropRequest"))
			case 6:
				if rapid.Bool().Draw(rt, "authDown") {
					h.tgt.fail = connect.NewError(connect.CodeUnauthenticated, errors.New("token expired"))
				} else {
					h.tgt.fail = nil
				}
			case 7:
				diskFull = rapid.IntRange(0, 6).Draw(rt, "diskFullOps")
				h.fs.Inject = func(vfs.Op, string) error {
					if diskFull > 0 {
						diskFull--
						return vfs.ErrNoSpace
					}
					return nil
				}
			case 8:
				// Crash before the k-th filesystem operation of the next
				// steps (or between steps when they do fewer).
				crashAt := rapid.IntRange(1, 8).Draw(rt, "crashAtOp")
				ops, dead := 0, false
				h.fs.Inject = func(vfs.Op, string) error {
					if dead {
						return errCrash
					}
					if ops++; ops == crashAt {
						dead = true
						return errCrash
					}
					return nil
				}
				for s := 0; s < 4 && !dead; s++ {
					next, _ := f.Step(context.Background())
					h.clk.Advance(next)
				}
				h.fs.Crash(crashRng)
				h.fs.Inject = nil
				f = h.forwarder(rt)
			}
			for seq, c := range h.tgt.counts() {
				if c > 1 {
					rt.Fatalf("seq %d is in the target %d times", seq, c)
				}
			}
			if w, err := readWatermark(h.fs, statePath); err == nil && w != nil {
				if w.Cursor < durable {
					rt.Fatalf("durable watermark moved back from %d to %d", durable, w.Cursor)
				}
				durable = w.Cursor
			}
		}
		h.fs.Inject = nil
		h.tgt.fail, h.tgt.loseAck, h.tgt.dropRequest = nil, nil, nil
		h.drain(rt, f, 20)
		last, _ := h.src.LastSeq(context.Background())
		checkDelivery(rt, h.src, h.tgt, h.fs, dlPath, "east", 0, last)
	})
}

func TestRunStopsOnCancelAndWakesOnChange(t *testing.T) {
	h := newHarness(t)
	changed := make(chan struct{}, 1)
	h.tweak = func(c *Config) {
		c.PollInterval = time.Hour // only a change signal can wake it
		c.Changed = func() <-chan struct{} { return changed }
		c.Linger = 5 * time.Second
	}
	f := h.forwarder(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(10 * time.Second) // a hang guard, not a timing assertion
		for !cond() {
			select {
			case <-deadline:
				t.Fatalf("waiting for %s; status %+v", what, f.Status())
			case <-time.After(time.Millisecond):
			}
		}
	}
	waitFor("the first step", func() bool { d, ok := h.clk.NextDeadline(); return ok && d.Equal(t0.Add(time.Hour)) })

	h.src.addN(42)
	changed <- struct{}{}
	// Run lingers on the fake clock before stepping, so nothing moves
	// until virtual time passes the linger.
	waitFor("the linger timer", func() bool { d, ok := h.clk.NextDeadline(); return ok && d.Equal(t0.Add(5*time.Second)) })
	if w := f.Watermark(); w != 0 {
		t.Fatalf("stepped during the linger: watermark %d", w)
	}
	h.clk.Advance(5 * time.Second)
	waitFor("the rows to be forwarded", func() bool { return f.Watermark() == 42 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v after cancel", err)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 42)
}

func TestNewRejectsBadConfig(t *testing.T) {
	h := newHarness(t)
	for name, mutate := range map[string]func(*Config){
		"no source":      func(c *Config) { c.Source = nil },
		"no sink":        func(c *Config) { c.Sink = nil },
		"no fs":          func(c *Config) { c.FS = nil },
		"no state":       func(c *Config) { c.StatePath = "" },
		"same paths":     func(c *Config) { c.DeadLetterPath = c.StatePath },
		"no target":      func(c *Config) { c.Target = "" },
		"no producer":    func(c *Config) { c.Producer = "" },
		"negative rows":  func(c *Config) { c.BatchRows = -1 },
		"too many bytes": func(c *Config) { c.BatchBytes = store.MaxBatchBytes + 1 },
	} {
		cfg := h.config()
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestDeadLetterAppendSurvivesTornTail(t *testing.T) {
	m := vfs.NewMemFS()
	if err := m.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	f, err := m.Create("/d/dl")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(`{"target":"x","row":{"Seq":1`)) // torn record, no newline
	f.Close()
	if err := appendDeadLetters(m, "/d/dl", []DeadLetter{{Reason: "bad", Row: store.Row{Seq: 2}}}); err != nil {
		t.Fatal(err)
	}
	recs, torn := readDeadLetters(t, m, "/d/dl")
	if len(recs) != 1 || recs[0].Row.Seq != 2 || torn != 1 {
		t.Fatalf("records %+v, torn %d", recs, torn)
	}
}

func TestSourceBehindResumePointStops(t *testing.T) {
	t.Run("watermark ahead", func(t *testing.T) {
		h := newHarness(t)
		h.src.addN(20) // a fresh store reusing the producer id
		if err := writeWatermark(h.fs, statePath, Watermark{Target: target, Producer: producer, Cursor: 5000}); err != nil {
			t.Fatal(err)
		}
		f := h.forwarder(t)
		for i := 0; i < 3; i++ {
			_, err := f.Step(context.Background())
			h.src.addN(3000) // stays stopped even once the store passes the old watermark
			if !errors.Is(err, ErrSourceBehind) || !strings.Contains(err.Error(), "seq 5000") {
				t.Fatalf("step %d: err = %v", i, err)
			}
		}
		if st := f.Status(); st.State != StateSourceBehind || st.Healthy() {
			t.Errorf("status = %+v", st)
		}
		if h.tgt.len() != 0 {
			t.Fatal("relay forwarded from a resume point past the store's end")
		}
	})
	t.Run("target ahead", func(t *testing.T) {
		h := newHarness(t)
		h.src.addN(20)
		h.tgt.restore(h.src, 900)
		f := h.forwarder(t)
		_, err := f.Step(context.Background())
		if !errors.Is(err, ErrSourceBehind) || !strings.Contains(err.Error(), "producer id") {
			t.Fatalf("err = %v", err)
		}
		if _, err := vfs.ReadFile(h.fs, statePath); err == nil {
			t.Fatal("a watermark was seeded past the store's end")
		}
	})
}

func TestStepEndsWhileSourceKeepsGrowing(t *testing.T) {
	h := newHarness(t)
	h.src.addN(1000)
	// Every push lands while 100 more rows arrive: a Step that chased the
	// source's end would never return.
	h.tgt.failWhen = func(Batch) error { h.src.addN(100); return nil }
	f := h.forwarder(t)
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := f.Watermark(); w != 1000 {
		t.Fatalf("watermark = %d, want the source's end when the step began (1000)", w)
	}
	if st := f.Status(); st.LagRows != 1000 {
		t.Errorf("lag = %d rows, want the 1000 that arrived during the step", st.LagRows)
	}
}

func TestLagReportsRowsAndSeconds(t *testing.T) {
	h := newHarness(t)
	f := h.forwarder(t)
	h.drain(t, f, 1)
	h.src.addN(70)
	h.tgt.fail = connect.NewError(connect.CodeUnavailable, errors.New("down"))
	f.Step(context.Background())
	h.clk.Advance(90 * time.Second)
	f.Step(context.Background())
	st := f.Status()
	if st.LagRows != 70 || st.LagSeconds != 90 {
		t.Errorf("lag = %d rows, %v s; want 70 rows, 90 s", st.LagRows, st.LagSeconds)
	}
	if got := testutil.ToFloat64(f.m.lagRows); got != 70 {
		t.Errorf("finelog_relay_lag_rows = %v", got)
	}
	if got := testutil.ToFloat64(f.m.lagSeconds); got != 90 {
		t.Errorf("finelog_relay_lag_seconds = %v", got)
	}
	if got := testutil.ToFloat64(f.m.failures.WithLabelValues(ClassUnavailable)); got != 2 {
		t.Errorf("finelog_relay_failures_total{class=unavailable} = %v", got)
	}
	h.tgt.fail = nil
	h.drain(t, f, 1)
	if st := f.Status(); st.LagRows != 0 || st.LagSeconds != 0 || st.LastError != "" {
		t.Errorf("after catching up: %+v", st)
	}
}

func TestMetricsRegistered(t *testing.T) {
	h := newHarness(t)
	f := h.forwarder(t)
	h.src.addN(3)
	h.drain(t, f, 1)
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"finelog_relay_lag_rows", "finelog_relay_lag_seconds", "finelog_relay_forwarded_rows_total",
		"finelog_relay_failures_total", "finelog_relay_dead_lettered_rows_total", "finelog_relay_last_success_timestamp_seconds"} {
		if !got[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
	// A second relay on the same registry is a configuration error, not a panic.
	cfg := h.config()
	cfg.Registerer = h.reg
	if _, err := New(cfg); err == nil {
		t.Error("New registered duplicate metrics without an error")
	}
}

func TestTargetRejectingEverythingHoldsRows(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(c *Config) { c.MaxDeadLetterRun = 5 }
	h.src.addN(300)
	h.tgt.failWhen = func(Batch) error {
		return connect.NewError(connect.CodeInvalidArgument, errors.New(`cluster "east" is not a valid label`))
	}
	f := h.forwarder(t)
	for i := 0; i < 3; i++ {
		next, err := f.Step(context.Background())
		if !errors.Is(err, ErrTargetRejecting) || !strings.Contains(err.Error(), "not a valid label") {
			t.Fatalf("step %d: err = %v", i, err)
		}
		h.clk.Advance(next)
	}
	st := f.Status()
	if st.State != StateRejecting || st.Healthy() || st.DeadLettered != 5 || st.Watermark != 5 {
		t.Fatalf("status = %+v", st)
	}
	h.tgt.failWhen = nil
	h.drain(t, f, 1)
	if st := f.Status(); st.Forwarded != 295 || st.DeadLettered != 5 || st.Watermark != 300 {
		t.Fatalf("after the target was fixed: %+v", st)
	}
	if recs, _ := readDeadLetters(t, h.fs, dlPath); len(recs) != 5 {
		t.Fatalf("%d dead letters, want 5", len(recs))
	}
}

func TestRunKeepsRetryingACorruptWatermarkUntilFixed(t *testing.T) {
	h := newHarness(t)
	h.src.addN(30)
	h.tgt.restore(h.src, 10)
	if err := vfs.WriteFileAtomic(h.fs, statePath, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	f := h.forwarder(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(10 * time.Second) // hang guard only
		for !cond() {
			select {
			case <-deadline:
				t.Fatalf("waiting for %s; status %+v", what, f.Status())
			case <-time.After(time.Millisecond):
			}
			// Fire whatever timer Run is sleeping on.
			if d, ok := h.clk.NextDeadline(); ok {
				h.clk.Set(d)
			}
		}
	}
	waitFor("the corrupt state", func() bool { return f.Status().State == StateCorruptWatermark })
	if err := h.fs.Remove(statePath); err != nil {
		t.Fatal(err)
	}
	waitFor("the relay to resume", func() bool { return f.Watermark() == 30 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 10, 30)
}

func TestTargetLosingAckedRowsIsReported(t *testing.T) {
	h := newHarness(t)
	h.src.addN(100)
	h.drain(t, h.forwarder(t), 1)
	w, err := readWatermark(h.fs, statePath)
	if err != nil || w.TargetApplied != 100 {
		t.Fatalf("watermark = %+v, %v; want target_applied 100", w, err)
	}
	// The target is restored from an old backup.
	h.tgt.restore(h.src, 40)
	f := h.forwarder(t)
	h.drain(t, f, 1)
	if got := testutil.ToFloat64(f.m.targetLoss); got != 60 {
		t.Errorf("finelog_relay_target_lost_rows_total = %v, want 60", got)
	}
	if !strings.Contains(h.logs.String(), "the target lost rows it had acked") {
		t.Errorf("loss not logged:\n%s", h.logs)
	}
}

// A just-started relay whose target is unreachable must already hold every
// row: otherwise retention on a restarted source deletes rows that were never
// forwarded (found by the simulation, W1 in docs/sim.md).
func TestPinsEverythingBeforeFirstSuccessfulStep(t *testing.T) {
	h := newHarness(t)
	h.src.addN(100)
	f := h.forwarder(t)
	if len(h.pins) != 1 || h.pins[0] != 0 {
		t.Fatalf("pins after New = %v, want [0] (hold everything)", h.pins)
	}
	h.tgt.fail = connect.NewError(connect.CodeUnavailable, errors.New("target down"))
	if _, err := f.Step(context.Background()); err == nil {
		t.Fatal("step against a down target succeeded")
	}
	if h.pins[len(h.pins)-1] != 0 {
		t.Fatalf("pin moved to %d while nothing was forwarded", h.pins[len(h.pins)-1])
	}
}
