package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// storeWorld is a source store and a target store, each real and on its
// own MemFS, with a switch that makes the target unreachable.
type storeWorld struct {
	srcFS, dstFS *vfs.MemFS
	src, dst     *store.Store
	down         bool
	downErr      error // what the target answers while down (default: connection refused)
	clk          *clock.Fake
}

func newStoreWorld(t *testing.T) *storeWorld {
	t.Helper()
	w := &storeWorld{srcFS: vfs.NewMemFS(), dstFS: vfs.NewMemFS(), clk: clock.NewFake(t0)}
	w.src = openStore(t, w.srcFS, "/east/store")
	w.dst = openStore(t, w.dstFS, "/global/store")
	t.Cleanup(func() { w.src.Close(); w.dst.Close() })
	if err := w.srcFS.MkdirAll("/east/relay"); err != nil {
		t.Fatal(err)
	}
	return w
}

// crashSource power-cuts the source machine: its store and the relay's
// files lose whatever was not synced, and the store is reopened.
func (w *storeWorld) crashSource(t *testing.T) {
	t.Helper()
	w.src.Close()
	w.srcFS.Crash(rand.New(rand.NewSource(1)))
	w.src = openStore(t, w.srcFS, "/east/store")
}

func (w *storeWorld) refusal() error {
	if w.downErr != nil {
		return w.downErr
	}
	return connect.NewError(connect.CodeUnavailable, errors.New("connection refused"))
}

func (w *storeWorld) Push(ctx context.Context, b Batch) (store.Ack, error) {
	if w.down {
		return store.Ack{}, w.refusal()
	}
	return StoreSink{Store: w.dst}.Push(ctx, b)
}

func (w *storeWorld) ProducerState(ctx context.Context, producer string) (ProducerState, error) {
	if w.down {
		return ProducerState{}, w.refusal()
	}
	return StoreSink{Store: w.dst}.ProducerState(ctx, producer)
}

func (w *storeWorld) forwarder(t *testing.T, backfill bool) *Forwarder {
	t.Helper()
	f, err := New(Config{
		Source: StoreSource{Store: w.src}, Sink: w, FS: w.srcFS, Clock: w.clk, Rand: rand.New(rand.NewSource(1)),
		StatePath: "/east/relay/state.json", DeadLetterPath: "/east/relay/dead-letter.jsonl",
		Target: target, Producer: producer, Cluster: "east",
		Options: Options{BatchRows: 64, Backfill: backfill},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (w *storeWorld) add(t *testing.T, from, n int) {
	t.Helper()
	rows := make([]store.Row, n)
	for i := range rows {
		rows[i] = store.Row{Key: fmt.Sprintf("/job/%d", (from+i)%5), Data: fmt.Sprintf("row-%d", from+i), EpochMS: int64(1_700_000_000_000 + from + i)}
	}
	appendRows(t, w.src, rows)
}

// targetData is the data of every row at the target, in order.
func (w *storeWorld) targetData(t *testing.T) []string {
	t.Helper()
	rows, err := w.dst.Scan(context.Background(), 0, 1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Data
	}
	return out
}

func wantRows(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("row-%d", i))
	}
	return out
}

// The start point is fixed when the relay is enabled, before the target
// ever answered: rows stored while the target is down, across a power cut
// of the source, all arrive once it is up, and those stored before the
// relay was enabled do not (no backfill).
func TestSeedFixedBeforeTargetIsReached(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		state State
	}{
		{"unreachable", nil, StateBackoff},
		{"refusing the credentials", connect.NewError(connect.CodePermissionDenied, errors.New("token audience does not match this layer")), StateAuthFailing},
	} {
		t.Run(tc.name, func(t *testing.T) { testSeedFixedBeforeTargetIsReached(t, tc.err, tc.state) })
	}
}

func testSeedFixedBeforeTargetIsReached(t *testing.T, refusal error, downState State) {
	w := newStoreWorld(t)
	w.add(t, 0, 10) // before the relay was enabled
	w.down, w.downErr = true, refusal
	f := w.forwarder(t, false)
	if err := f.Enable(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.add(t, 10, 100)
	if _, err := f.Step(context.Background()); err == nil {
		t.Fatal("step succeeded with the target down")
	}
	if st := f.Status(); st.LagRows != 100 || st.State != downState {
		t.Fatalf("status with the target down = %+v, want 100 rows of lag", st)
	}
	if got := testutil.ToFloat64(f.m.lagRows); got != 100 {
		t.Fatalf("finelog_relay_lag_rows = %v, want 100", got)
	}

	w.crashSource(t)
	w.add(t, 110, 50)
	f = w.forwarder(t, false) // the restarted process
	if _, err := f.Step(context.Background()); err == nil {
		t.Fatal("step succeeded with the target down")
	}
	if st := f.Status(); st.LagRows != 150 {
		t.Fatalf("after the restart lag = %d, want 150 (every row since the relay was enabled)", st.LagRows)
	}
	w.down = false
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := w.targetData(t), wantRows(10, 160); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("target holds %d rows %v..., want rows 10..159 exactly once", len(got), got[:min(5, len(got))])
	}
	if st := f.Status(); st.LagRows != 0 || st.State != StateOK {
		t.Fatalf("status after forwarding = %+v", st)
	}
}

// A crash at any file operation while the relay is being enabled either
// leaves no seed (nothing acked after it yet: Enable had not returned) or
// the seed it wrote; never one that moved forward.
func TestSeedSurvivesCrashAtEveryStep(t *testing.T) {
	for failAt := 1; ; failAt++ {
		w := newStoreWorld(t)
		w.add(t, 0, 10)
		w.down = true
		ops := 0
		w.srcFS.Inject = func(op vfs.Op, name string) error {
			if strings.Contains(name, "/relay/") {
				if ops++; ops >= failAt {
					return errors.New("injected: power cut")
				}
			}
			return nil
		}
		f := w.forwarder(t, false)
		err := f.Enable(context.Background())
		w.srcFS.Inject = nil
		if err == nil {
			// Enable returned: the seed is durable, rows after it count.
			w.add(t, 10, 20)
		}
		w.crashSource(t)
		f = w.forwarder(t, false)
		if err := f.Enable(context.Background()); err != nil {
			t.Fatalf("fail at op %d: enable after restart: %v", failAt, err)
		}
		if err != nil {
			// The daemon refuses to start when Enable fails, so rows are
			// acked only after the restarted relay's Enable.
			w.add(t, 10, 20)
		}
		w.down = false
		if _, err := f.Step(context.Background()); err != nil {
			t.Fatalf("fail at op %d: %v", failAt, err)
		}
		if got, want := w.targetData(t), wantRows(10, 30); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("fail at op %d: target holds %v, want rows 10..29", failAt, got)
		}
		if err == nil && ops < failAt {
			return // every operation of Enable was covered
		}
	}
}

func TestCorruptSeedStopsRelayNamingTheFile(t *testing.T) {
	for name, content := range map[string]string{
		"not json":    "{seed",
		"no target":   `{"version":1,"producer":"east/1","cursor":3}`,
		"bad version": `{"version":9,"target":"x","producer":"east/1","cursor":3}`,
		"negative":    `{"version":1,"target":"x","producer":"east/1","cursor":-1}`,
	} {
		w := newStoreWorld(t)
		if err := vfs.WriteFileAtomic(w.srcFS, "/east/relay/seed.json", []byte(content)); err != nil {
			t.Fatal(err)
		}
		f := w.forwarder(t, false)
		_, err := f.Step(context.Background())
		if !errors.Is(err, ErrCorruptSeed) || !strings.Contains(err.Error(), "/east/relay/seed.json") || !strings.Contains(err.Error(), "remove it") {
			t.Errorf("%s: err = %v, want ErrCorruptSeed naming the file and what to do", name, err)
		}
		if st := f.Status(); st.State != StateCorruptSeed || !st.State.Stopped() || st.Healthy() {
			t.Errorf("%s: state %s, want %s (stopped)", name, st.State, StateCorruptSeed)
		}
	}
}

// Someone else pushes under the relay's producer id with a mark far past
// anything the relay sent (issue 11's poisoning): the relay stops, says
// so, and keeps the rows, instead of reporting ok while the target drops
// them as duplicates.
func TestTargetMarkAheadOfRelayStopsIt(t *testing.T) {
	w := newStoreWorld(t)
	w.add(t, 0, 10)
	f := w.forwarder(t, true)
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The forged batch: no rows, a mark 1000 past the relay's.
	if _, err := w.dst.Append(context.Background(), store.Batch{Producer: producer, FirstSeq: 11, LastSeq: 1010}); err != nil {
		t.Fatal(err)
	}
	w.add(t, 10, 5)
	_, err := f.Step(context.Background())
	if !errors.Is(err, ErrTargetAhead) {
		t.Fatalf("step after the forged mark: err = %v, want ErrTargetAhead", err)
	}
	st := f.Status()
	if st.State != StateTargetAhead || !st.State.Stopped() || st.LagRows != 5 || st.Watermark != 10 {
		t.Fatalf("status = %+v, want stopped_target_ahead holding 5 rows", st)
	}
	if got := testutil.ToFloat64(f.m.targetAhead); got <= 0 {
		t.Fatalf("finelog_relay_target_ahead_seqs = %v", got)
	}
	// It stays stopped: later steps do not push the rows into the void.
	if _, err := f.Step(context.Background()); !errors.Is(err, ErrTargetAhead) {
		t.Fatalf("second step: %v", err)
	}
	// A restarted relay sees the mark past the whole store at once.
	f = w.forwarder(t, true)
	if _, err := f.Step(context.Background()); !errors.Is(err, ErrTargetAhead) {
		t.Fatalf("restarted relay: err = %v, want ErrTargetAhead", err)
	}
}

// While the relay waits out a long retry delay, rows stored meanwhile show
// as lag at once, not only at the next attempt (up to 30 s later).
func TestLagCountsNewRowsWhileBackingOff(t *testing.T) {
	w := newStoreWorld(t)
	w.down, w.downErr = true, connect.NewError(connect.CodeUnauthenticated, errors.New("token expired"))
	f, err := New(Config{
		Source: StoreSource{Store: w.src}, Sink: w, FS: w.srcFS, Clock: w.clk, Rand: rand.New(rand.NewSource(1)),
		StatePath: "/east/relay/state.json", DeadLetterPath: "/east/relay/dead-letter.jsonl",
		Target: target, Producer: producer, Cluster: "east", Changed: w.src.Changed,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second) // hang guard only; the fake clock never moves
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s; status %+v", what, f.Status())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitUntil("auth_failing", func() bool { return f.Status().State == StateAuthFailing })
	w.add(t, 0, 7)
	waitUntil("lag 7", func() bool { return f.Status().LagRows == 7 })
	if got := testutil.ToFloat64(f.m.lagRows); got != 7 {
		t.Fatalf("finelog_relay_lag_rows = %v, want 7", got)
	}
}
