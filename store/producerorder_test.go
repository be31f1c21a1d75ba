package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// gatedFS blocks WAL fdatasyncs while its gate is closed, so a test can
// hold the committer in one commit while it queues the next batches.
type gatedFS struct {
	vfs.FS
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *gatedFS) Create(name string) (vfs.File, error) {
	f, err := g.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return &gatedFile{File: f, fs: g}, nil
}

func (g *gatedFS) close() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedFS) open() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

type gatedFile struct {
	vfs.File
	fs *gatedFS
}

func (f *gatedFile) Sync() error {
	f.fs.mu.Lock()
	gate := f.fs.gate
	f.fs.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return f.File.Sync()
}

// producerBatch is batch [from, from+n) of producer p.
func producerBatch(p string, from, n int) Batch {
	return Batch{Producer: p, FirstSeq: int64(from), LastSeq: int64(from + n - 1), Rows: producerRows(p, from, n)}
}

// storedProducerSeqs counts, per producer seq, the stored rows of p.
func storedProducerSeqs(t *testing.T, s *Store, p string) map[int64]int {
	t.Helper()
	rows, err := s.Scan(context.Background(), 0, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]int{}
	for _, r := range rows {
		var seq int64
		if _, err := fmt.Sscanf(r.Data, "/p/"+p+" line %d", &seq); err == nil {
			seen[seq]++
		}
	}
	return seen
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A batch that reaches the committer before the earlier batch of its
// producer, while that one is also queued, is applied after it instead of
// being refused: the relay need not send it again. No waiting on the
// clock is involved (ProducerOrderWait < 0).
func TestOvertakingBatchWaitsForEarlierOneInAppend(t *testing.T) {
	ctx := context.Background()
	gfs := &gatedFS{FS: vfs.NewMemFS()}
	opts := memOpts(gfs)
	opts.ProducerOrderWait = -1
	s := mustOpen(t, opts)
	defer s.Close()
	if _, err := s.Append(ctx, producerBatch("east", 1, 10)); err != nil {
		t.Fatal(err)
	}
	// Hold the committer in another writer's commit, then queue 21..30
	// ahead of 11..20.
	gfs.close()
	errs := make(chan error, 3)
	go func() { _, err := s.Append(ctx, Batch{Rows: mkRows("/other", 1, 0)}); errs <- err }()
	waitFor(t, "the committer to hold the first commit", func() bool { return s.appenders.Load() == 1 && len(s.commitCh) == 0 })
	go func() { _, err := s.Append(ctx, producerBatch("east", 21, 10)); errs <- err }()
	waitFor(t, "21..30 to be queued", func() bool { return len(s.commitCh) == 1 })
	go func() { _, err := s.Append(ctx, producerBatch("east", 11, 10)); errs <- err }()
	waitFor(t, "11..20 to be queued", func() bool { return len(s.commitCh) == 2 })
	gfs.open()
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Errorf("append: %v (an overtaking batch must wait for the earlier one it overtook)", err)
		}
	}
	if mark, _ := s.ProducerApplied("east"); mark != 30 {
		t.Errorf("producer mark %d, want 30", mark)
	}
	seen := storedProducerSeqs(t, s, "east")
	for seq := int64(1); seq <= 30; seq++ {
		if seen[seq] != 1 {
			t.Errorf("producer seq %d stored %d times, want once", seq, seen[seq])
		}
	}
}

// An overtaking batch with no earlier batch here yet waits up to
// ProducerOrderWait for it: it is applied once the earlier one arrives,
// and refused (ErrProducerGap, nothing written) when none comes in time.
func TestOvertakingBatchWaitsForTheEarlierOneToArrive(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	s := mustOpen(t, Options{FS: vfs.NewMemFS(), Dir: "/data", Clock: clk, ProducerOrderWait: time.Second})
	defer s.Close()
	if _, err := s.Append(ctx, producerBatch("east", 1, 10)); err != nil {
		t.Fatal(err)
	}

	late := make(chan error, 1)
	go func() { _, err := s.Append(ctx, producerBatch("east", 21, 10)); late <- err }()
	waitFor(t, "21..30 to wait", func() bool { return clk.Pending() == 1 })
	if _, err := s.Append(ctx, producerBatch("east", 11, 10)); err != nil {
		t.Fatal(err)
	}
	if err := <-late; err != nil {
		t.Fatalf("21..30 after 11..20 arrived: %v, want it applied", err)
	}
	if mark, _ := s.ProducerApplied("east"); mark != 30 {
		t.Fatalf("producer mark %d, want 30", mark)
	}

	go func() { _, err := s.Append(ctx, producerBatch("east", 41, 10)); late <- err }()
	waitFor(t, "41..50 to wait", func() bool { return clk.Pending() == 1 })
	clk.Advance(time.Second)
	if err := <-late; !errors.Is(err, ErrProducerGap) {
		t.Fatalf("41..50 with 31..40 never sent: %v, want ErrProducerGap once ProducerOrderWait passed", err)
	}
	if mark, _ := s.ProducerApplied("east"); mark != 30 {
		t.Fatalf("producer mark %d after the refusal, want 30", mark)
	}
	if last := s.LastSeq(); last != 30 {
		t.Fatalf("store last seq %d after the refusal, want 30 (nothing written)", last)
	}
}

// Whatever order a producer's consecutive batches (and re-sends of
// applied ones) reach the store in, concurrently, each is acked and every
// row is stored exactly once.
func TestProducerBatchesInAnyOrderStoredOnce(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		// The fake clock never moves: a batch waits for the earlier ones
		// as long as it takes, so the outcome does not depend on timing.
		s, err := Open(Options{FS: vfs.NewMemFS(), Dir: "/data", Clock: clock.NewFake(t0), ProducerOrderWait: time.Hour})
		if err != nil {
			rt.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Append(ctx, producerBatch("east", 1, 5)); err != nil {
			rt.Fatal(err)
		}
		n := rapid.IntRange(1, 8).Draw(rt, "batches")
		var batches []Batch
		for i := 0; i < n; i++ {
			batches = append(batches, producerBatch("east", 6+5*i, 5))
		}
		resends := rapid.IntRange(0, 2).Draw(rt, "resends")
		for i := 0; i < resends; i++ {
			batches = append(batches, producerBatch("east", 1, 5))
		}
		order := rapid.Permutation(batches).Draw(rt, "order")
		var wg sync.WaitGroup
		errs := make([]error, len(order))
		for i, b := range order {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.Append(ctx, b)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				rt.Fatalf("batch %d..%d: %v", order[i].FirstSeq, order[i].LastSeq, err)
			}
		}
		last := int64(5 + 5*n)
		if mark, _ := s.ProducerApplied("east"); mark != last {
			rt.Fatalf("producer mark %d, want %d", mark, last)
		}
		rows, err := s.Scan(ctx, 0, 1<<20, 0)
		if err != nil {
			rt.Fatal(err)
		}
		if int64(len(rows)) != last {
			rt.Fatalf("store holds %d rows, want %d (each once)", len(rows), last)
		}
		seen := map[string]bool{}
		for _, r := range rows {
			if seen[r.Data] {
				rt.Fatalf("row %q stored twice", r.Data)
			}
			seen[r.Data] = true
		}
	})
}

// Closing the store ends a wait for an earlier batch: the waiting Append
// answers ErrClosed at once, not when ProducerOrderWait runs out.
func TestOrderWaitEndsAtClose(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	s := mustOpen(t, Options{FS: vfs.NewMemFS(), Dir: "/data", Clock: clk, ProducerOrderWait: time.Hour})
	if _, err := s.Append(ctx, producerBatch("east", 1, 10)); err != nil {
		t.Fatal(err)
	}
	late := make(chan error, 1)
	go func() { _, err := s.Append(ctx, producerBatch("east", 21, 10)); late <- err }()
	waitFor(t, "21..30 to wait", func() bool { return clk.Pending() == 1 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-late:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting append after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting append outlived Close")
	}
}
