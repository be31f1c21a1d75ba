package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

func segBytes(t *testing.T, fs vfs.FS) int64 {
	t.Helper()
	var n int64
	for _, name := range segFiles(t, fs) {
		st, err := fs.Stat(path.Join("/data", name))
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// Thousands of producers used to be copied into every segment footer, so
// segments grew with the producer count rather than with the rows. Now the
// producer map has one durable place, and it survives a restart.
func TestSegmentSizeDoesNotGrowWithProducers(t *testing.T) {
	ctx := context.Background()
	sizes := map[int]int64{}
	for _, producers := range []int{1, 2000} {
		fs := vfs.NewMemFS()
		s := mustOpen(t, memOpts(fs))
		name := func(i int) string { return fmt.Sprintf("%0200d", i) }
		var wg sync.WaitGroup
		errc := make(chan error, producers)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < producers; i += 8 {
					if _, err := s.Append(ctx, Batch{Producer: name(i), FirstSeq: 1, LastSeq: 5}); err != nil {
						errc <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		for seg := 0; seg < 3; seg++ {
			mustAppend(t, s, mkRows("/k", 50, seg*50))
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Compact(ctx); err != nil {
			t.Fatal(err)
		}
		sizes[producers] = segBytes(t, fs)
		s.Close()
		s = mustOpen(t, memOpts(fs))
		for _, i := range []int{0, producers - 1} {
			if v, ok := s.ProducerApplied(name(i)); !ok || v != 5 {
				t.Fatalf("%d producers: after reopen producer %d mark %d known %v, want 5", producers, i, v, ok)
			}
		}
		s.Close()
	}
	if d := sizes[2000] - sizes[1]; d > 256 || d < -256 {
		t.Fatalf("segment bytes with 1 producer %d, with 2000 producers %d: segments grow with producers", sizes[1], sizes[2000])
	}
}

func TestProducerLimits(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	long := strings.Repeat("p", MaxProducerBytes+1)
	_, err := s.Append(ctx, Batch{Producer: long, Rows: producerRows("x", 1, 1)})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "MaxProducerBytes") {
		t.Fatalf("producer name of %d bytes: %v, want an invalid argument naming MaxProducerBytes", len(long), err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < MaxProducers; i += 8 {
				if _, err := s.Append(ctx, Batch{Producer: fmt.Sprintf("p%05d", i), FirstSeq: 1, LastSeq: 1}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	_, err = s.Append(ctx, Batch{Producer: "one-too-many", FirstSeq: 1, LastSeq: 1})
	if !errors.Is(err, ErrProducerLimit) || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "MaxProducers") {
		t.Fatalf("producer %d: %v, want ErrProducerLimit naming MaxProducers", MaxProducers+1, err)
	}
	if _, ok := s.ProducerApplied("one-too-many"); ok || s.Stats().Producers != MaxProducers {
		t.Fatalf("the refused producer was remembered (%d producers)", s.Stats().Producers)
	}
	// Known producers keep working.
	if ack, err := s.Append(ctx, Batch{Producer: "p00007", Rows: producerRows("x", 2, 1), FirstSeq: 2}); err != nil || ack.ProducerApplied != 2 {
		t.Fatalf("known producer at the limit: %+v %v", ack, err)
	}
}

// A batch may move its producer's mark past its rows by at most
// MaxProducerSkip: the cross-tenant poisoning batch (no rows, first_seq 2,
// last_seq 1000000) is refused and the mark stays where the rows put it.
func TestProducerSkipBounded(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	if _, err := s.Append(ctx, Batch{Producer: "relay", Rows: producerRows("r", 1, 1), FirstSeq: 1}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		b    Batch
		ok   bool
		mark int64
	}{
		{"poison: empty batch to a million", Batch{Producer: "relay", FirstSeq: 2, LastSeq: 1000000}, false, 1},
		{"rows then a huge skip", Batch{Producer: "relay", Rows: producerRows("r", 2, 3), FirstSeq: 2, LastSeq: 4 + MaxProducerSkip + 1}, false, 1},
		{"skip exactly at the bound", Batch{Producer: "relay", Rows: producerRows("r", 2, 3), FirstSeq: 2, LastSeq: 4 + MaxProducerSkip}, true, 4 + MaxProducerSkip},
		{"new producer starting far out", Batch{Producer: "late", Rows: producerRows("l", 5000000, 2), FirstSeq: 5000000}, true, 5000001},
		{"new producer, empty batch to a million", Batch{Producer: "fresh", LastSeq: 1000000}, false, 0},
		{"new producer, skip from its first seq", Batch{Producer: "fresh2", FirstSeq: 10, LastSeq: 10 + MaxProducerSkip + 1}, false, 0},
	}
	for _, c := range cases {
		_, err := s.Append(ctx, c.b)
		if c.ok != (err == nil) {
			t.Fatalf("%s: err %v, want ok=%v", c.name, err, c.ok)
		}
		if !c.ok && (!errors.Is(err, ErrProducerSkip) || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "MaxProducerSkip")) {
			t.Fatalf("%s: %v, want ErrProducerSkip naming MaxProducerSkip", c.name, err)
		}
		if v, _ := s.ProducerApplied(c.b.Producer); v != c.mark {
			t.Fatalf("%s: mark %d, want %d", c.name, v, c.mark)
		}
	}
}

// Producers idle past RetentionAge are forgotten by Retain, durably; active
// ones are kept.
func TestIdleProducersExpire(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	clk := clock.NewFake(t0)
	opts := Options{FS: fs, Dir: "/data", Clock: clk, RetentionAge: time.Hour}
	s := mustOpen(t, opts)
	if _, err := s.Append(ctx, Batch{Producer: "idle", Rows: producerRows("i", 1, 3)}); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(50 * time.Minute))
	if _, err := s.Append(ctx, Batch{Producer: "busy", Rows: producerRows("b", 1, 3)}); err != nil {
		t.Fatal(err)
	}
	s.Flush(ctx)
	clk.Set(t0.Add(70 * time.Minute))
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.ProducerApplied("idle"); ok {
		t.Fatal("producer idle for 70m with a 1h retention age is still remembered")
	}
	if v, ok := s.ProducerApplied("busy"); !ok || v != 3 {
		t.Fatalf("busy producer: %d %v", v, ok)
	}
	s.Abandon()
	fs.Crash(nil)
	s = mustOpen(t, opts)
	defer s.Close()
	if _, ok := s.ProducerApplied("idle"); ok {
		t.Fatal("forgotten producer is back after a restart")
	}
	if v, ok := s.ProducerApplied("busy"); !ok || v != 3 {
		t.Fatalf("busy producer after restart: %d %v", v, ok)
	}
}

// A store from before producers.json kept marks in meta.json (and segment
// footers); it opens with them and moves them to producers.json.
func TestLegacyMetaProducersRead(t *testing.T) {
	fs := vfs.NewMemFS()
	fs.MkdirAll("/data")
	if err := vfs.WriteFileAtomic(fs, "/data/meta.json", []byte(`{"floor_seq":7,"producers":{"relay-east":42}}`)); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, memOpts(fs))
	if v, ok := s.ProducerApplied("relay-east"); !ok || v != 42 || s.LastSeq() != 7 {
		t.Fatalf("legacy meta: mark %d known %v last %d", v, ok, s.LastSeq())
	}
	s.Close()
	if _, err := fs.Stat("/data/" + producersName); err != nil {
		t.Fatalf("producers.json not written at open: %v", err)
	}
}

// Marks survive a crash at any point of flushes and retention: never below
// an acked mark, never above anything sent. A flush whose producers.json
// write fails keeps the WAL, which still has the marks.
func TestProducerMarksSurviveCrashes(t *testing.T) {
	ctx := context.Background()
	exercised := 0
	defer func() {
		if exercised < 30 {
			t.Errorf("only %d of 60 cases acked a batch before the crash", exercised)
		}
	}()
	for seed := int64(0); seed < 60; seed++ {
		rng := rand.New(rand.NewSource(seed))
		fs := vfs.NewMemFS()
		k := &killer{n: 10 + rng.Intn(120)}
		opened := false
		fs.Inject = func(op vfs.Op, name string) error {
			if opened && seed%3 == 0 && op == vfs.OpRename && strings.HasSuffix(name, producersName) {
				return errKilled // this disk cannot write producers.json
			}
			return k.inject(op, name)
		}
		opts := memOpts(fs)
		var acked, sent int64
		if s, err := Open(opts); err == nil {
			opened = true
			next := int64(1)
			for i := 0; i < 12; i++ {
				n := 1 + rng.Intn(3)
				b := Batch{Producer: "relay", Rows: producerRows("r", int(next), n), FirstSeq: next, LastSeq: next + int64(n)}
				sent = b.LastSeq
				if ack, err := s.Append(ctx, b); err == nil {
					acked = ack.ProducerApplied
					next = b.LastSeq + 1
				}
				if rng.Intn(3) == 0 {
					s.Flush(ctx)
				}
			}
			s.Abandon()
		}
		fs.Inject = nil
		fs.Crash(rng)
		s := mustOpen(t, opts)
		v, _ := s.ProducerApplied("relay")
		if acked > 0 {
			exercised++
		}
		if v < acked || v > sent {
			t.Fatalf("seed %d: mark after crash %d, acked %d, highest sent %d", seed, v, acked, sent)
		}
		s.Close()
	}
}

// A producers.json a lying disk left empty does not keep the rows
// unreadable: the store opens, with the marks the WAL still has.
func TestCorruptProducersFileOpens(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	if _, err := s.Append(ctx, Batch{Producer: "relay", Rows: producerRows("r", 1, 2)}); err != nil {
		t.Fatal(err)
	}
	s.Abandon()
	if err := vfs.WriteFileAtomic(fs, "/data/"+producersName, nil); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, memOpts(fs))
	defer s.Close()
	if v, ok := s.ProducerApplied("relay"); !ok || v != 2 || len(allRows(t, s)) != 2 {
		t.Fatalf("after an empty producers.json: mark %d known %v", v, ok)
	}
}

// Batches that only move a mark (no rows) are sealed and flushed like rows:
// they do not pile up in memory or the WAL, the mark survives a crash, and
// a stream that had not read them before the flush still gets the mark.
func TestMarkOnlyBatchesAreFlushed(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	s := mustOpen(t, opts)
	mustAppend(t, s, mkRows("/k", 3, 0))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.Tail(3)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := s.Append(ctx, Batch{Producer: "other", FirstSeq: 1, LastSeq: 1}); err != nil {
		t.Fatal(err)
	}
	if rec, err := st.Next(ctx); err != nil || len(rec.Marks) != 1 || rec.Marks[0] != (ProducerMark{"other", 1}) {
		t.Fatalf("first mark record: %+v %v", rec, err)
	}
	for i := 1; i <= 2000; i++ {
		if _, err := s.Append(ctx, Batch{Producer: "relay", FirstSeq: int64(i), LastSeq: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	walSize := func() (n int64) {
		for _, f := range walFiles(t, fs) {
			st, _ := fs.Stat(f)
			n += st.Size()
		}
		return n
	}
	before, walBefore := s.Stats(), walSize()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	after, walAfter := s.Stats(), walSize()
	if after.MemtableBytes >= before.MemtableBytes/10 || walAfter >= walBefore/10 {
		t.Fatalf("mark-only batches not flushed: memtable %d -> %d bytes, wal %d -> %d bytes", before.MemtableBytes, after.MemtableBytes, walBefore, walAfter)
	}
	var got int64
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for got < 2000 {
		rec, err := st.Next(nctx)
		if err != nil {
			t.Fatalf("stream after the flush of mark-only batches: mark %d of 2000: %v", got, err)
		}
		if len(rec.Rows) > 0 {
			t.Fatalf("unexpected rows %d..%d", rec.First, rec.Last)
		}
		for _, m := range rec.Marks {
			got = max(got, m.Seq)
		}
	}
	s.Abandon()
	fs.Crash(nil)
	s = mustOpen(t, opts)
	defer s.Close()
	if v, _ := s.ProducerApplied("relay"); v != 2000 {
		t.Fatalf("mark after crash = %d, want 2000", v)
	}
}

// A batch that only moves a mark, right after a flush, sits at the new
// segment's last seq but is not in the marks written with that segment: a
// crash must not lose it.
func TestMarkAtSegmentEndSurvivesCrash(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	s := mustOpen(t, opts)
	if _, err := s.Append(ctx, Batch{Producer: "p", Rows: producerRows("p", 1, 3), FirstSeq: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, Batch{Producer: "p", FirstSeq: 4, LastSeq: 9}); err != nil {
		t.Fatal(err)
	}
	s.Abandon()
	fs.Crash(nil)
	s = mustOpen(t, opts)
	defer s.Close()
	if v, _ := s.ProducerApplied("p"); v != 9 {
		t.Fatalf("mark after crash = %d, want the acked 9", v)
	}
}
