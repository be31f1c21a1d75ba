package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

func TestLimits(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	big := strings.Repeat("x", MaxRowBytes)
	cases := []struct {
		name string
		rows []Row
		want string
	}{
		{"empty key", []Row{{Data: "x"}}, "key is empty"},
		{"key over 1 KiB", []Row{{Key: "/" + strings.Repeat("k", MaxKeyBytes)}}, "MaxKeyBytes"},
		{"invalid utf-8 key", []Row{{Key: "/a\xff"}}, "not valid UTF-8"},
		{"row over 1 MiB", []Row{{Key: "/a", Data: big}}, "MaxRowBytes"},
		{"batch over 16 MiB", func() []Row {
			rows := make([]Row, 17)
			for i := range rows {
				rows[i] = Row{Key: "/a", Data: big[:MaxRowBytes-100]}
			}
			return rows
		}(), "MaxBatchBytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(context.Background(), Batch{Rows: append([]Row{{Key: "/ok", Data: "fine"}}, tc.rows...)})
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want invalid argument naming %s", err, tc.want)
			}
		})
	}
	if s.LastSeq() != 0 {
		t.Fatalf("rejected batches wrote rows: LastSeq = %d", s.LastSeq())
	}
	// The store is unaffected: a key of exactly the limit works.
	if ack := mustAppend(t, s, []Row{{Key: "/" + strings.Repeat("k", MaxKeyBytes-1)}}); ack.First != 1 {
		t.Fatalf("append after rejections: %+v", ack)
	}
	if ack, err := s.Append(context.Background(), Batch{}); err != nil || ack != (Ack{}) {
		t.Fatalf("empty batch: %+v, %v; want a no-op success", ack, err)
	}
}

func TestIdempotentBatches(t *testing.T) {
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	ctx := context.Background()
	prow := func(seq int64) Row { return Row{Seq: seq, Key: "/r", Data: "p" + string(rune('0'+seq))} }
	ack, err := s.Append(ctx, Batch{Producer: "east", Rows: []Row{prow(1), prow(2), prow(3)}, FirstSeq: 1, LastSeq: 3})
	if err != nil || ack.First != 1 || ack.Last != 3 || ack.ProducerApplied != 3 {
		t.Fatalf("first batch: %+v %v", ack, err)
	}
	// Exact resend: nothing written.
	ack, err = s.Append(ctx, Batch{Producer: "east", Rows: []Row{prow(1), prow(2), prow(3)}, FirstSeq: 1, LastSeq: 3})
	if err != nil || ack.First != 0 || ack.ProducerApplied != 3 {
		t.Fatalf("duplicate batch: %+v %v", ack, err)
	}
	// Overlap: only 4 and 5 are new.
	ack, err = s.Append(ctx, Batch{Producer: "east", Rows: []Row{prow(2), prow(3), prow(4), prow(5)}})
	if err != nil || ack.First != 4 || ack.Last != 5 || ack.ProducerApplied != 5 {
		t.Fatalf("overlapping batch: %+v %v", ack, err)
	}
	// LastSeq advances the mark past rows the producer filtered out.
	ack, err = s.Append(ctx, Batch{Producer: "east", FirstSeq: 6, LastSeq: 9})
	if err != nil || ack.ProducerApplied != 9 {
		t.Fatalf("empty batch with range: %+v %v", ack, err)
	}
	if _, err := s.Append(ctx, Batch{Producer: "east", Rows: []Row{prow(12), prow(11)}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("decreasing producer seqs: %v, want invalid argument", err)
	}
	// Concurrent resends of the same batch in one group commit: one wins.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Append(ctx, Batch{Producer: "east", Rows: []Row{prow(10)}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if v, ok := s.ProducerApplied("east"); !ok || v != 10 {
		t.Fatalf("ProducerApplied = %d %v, want 10", v, ok)
	}
	if _, ok := s.ProducerApplied("west"); ok {
		t.Fatal("unknown producer reported as known")
	}
	check := func(s *Store, label string) {
		rows := fetchAll(t, s, Query{Source: "/r", Scope: ScopeExact})
		if len(rows) != 6 {
			t.Fatalf("%s: %d rows, want 6 (producer seqs 1-5 and 10 once each)", label, len(rows))
		}
		if v, _ := s.ProducerApplied("east"); v != 10 {
			t.Fatalf("%s: mark %d, want 10", label, v)
		}
	}
	check(s, "live")
	// Crash between apply and ack: the mark is durable with the rows, so the
	// producer's resend after restart is dropped. Also through a flush, and
	// after retention deleted every segment holding the mark.
	s.Abandon()
	fs.Crash(nil)
	s = mustOpen(t, memOpts(fs))
	check(s, "after crash")
	if ack, _ := s.Append(ctx, Batch{Producer: "east", Rows: []Row{prow(10)}}); ack.First != 0 {
		t.Fatalf("resend after crash was applied again: %+v", ack)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	opts := memOpts(fs)
	opts.RetentionBytes = 1
	s = mustOpen(t, opts)
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Segments != 0 {
		t.Fatalf("retention kept %d segments", s.Stats().Segments)
	}
	s.Close()
	s = mustOpen(t, opts)
	defer s.Close()
	if v, _ := s.ProducerApplied("east"); v != 10 || s.LastSeq() != 6 {
		t.Fatalf("after retention deleted everything: mark %d LastSeq %d, want 10 and 6", v, s.LastSeq())
	}
	if ack, _ := s.Append(ctx, Batch{Producer: "east", Rows: []Row{prow(11)}}); ack.First != 7 {
		t.Fatalf("numbering after an emptied store: %+v, want seq 7", ack)
	}
}

func TestDiskFullFailsAppendsAndRecovers(t *testing.T) {
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	defer s.Close()
	mustAppend(t, s, mkRows("/a", 2, 0))
	var full sync.Mutex
	isFull := true
	fs.Inject = func(op vfs.Op, name string) error {
		full.Lock()
		defer full.Unlock()
		if isFull && (op == vfs.OpWrite || op == vfs.OpCreate) {
			return vfs.ErrNoSpace
		}
		return nil
	}
	_, err := s.Append(context.Background(), Batch{Rows: mkRows("/a", 1, 2)})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("append on a full disk: %v, want ErrNoSpace", err)
	}
	if err := s.Flush(context.Background()); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("flush on a full disk: %v, want ErrNoSpace", err)
	}
	if rows := fetchAll(t, s, Query{Source: "/a", Scope: ScopeExact}); len(rows) != 2 {
		t.Fatalf("reads on a full disk: %d rows, want 2", len(rows))
	}
	full.Lock()
	isFull = false
	full.Unlock()
	ack := mustAppend(t, s, mkRows("/a", 1, 2))
	if ack.First != 3 {
		t.Fatalf("append after space returned: %+v, want seq 3", ack)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("flush after space returned: %v", err)
	}
	if rows := fetchAll(t, s, Query{Source: "/a", Scope: ScopeExact}); len(rows) != 3 {
		t.Fatalf("after recovery: %d rows, want 3", len(rows))
	}
}

func TestRealDisk(t *testing.T) {
	dir := t.TempDir()
	opts := Options{FS: vfs.OS{}, Dir: dir + "/store", MemtableBytes: 4 << 10}
	s := mustOpen(t, opts)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := s.Append(ctx, Batch{Rows: mkRows("/w"+string(rune('a'+w)), 5, i*5)}); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, mkRows("/wa", 1, 100))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	defer s.Close()
	if s.LastSeq() != 801 {
		t.Fatalf("LastSeq = %d, want 801", s.LastSeq())
	}
	rows := fetchAll(t, s, Query{Source: "/wa", Scope: ScopeExact})
	if len(rows) != 101 || rows[100].Data != "/wa line 100" {
		t.Fatalf("/wa: %d rows", len(rows))
	}
	for i := 1; i < len(rows); i++ {
		if rows[i].Seq <= rows[i-1].Seq {
			t.Fatal("rows out of seq order")
		}
	}
	if all, _ := s.Scan(ctx, 0, 10000, 0); len(all) != 801 {
		t.Fatalf("Scan: %d rows, want 801", len(all))
	}
}

func TestRetentionAgeBytesAndPins(t *testing.T) {
	fs := vfs.NewMemFS()
	clk := clock.NewFake(t0)
	var lost [][3]int64
	opts := Options{FS: fs, Dir: "/data", Clock: clk, RetentionAge: time.Hour,
		OnPinnedLoss: func(pin string, first, last int64) { lost = append(lost, [3]int64{int64(len(pin)), first, last}) }}
	s := mustOpen(t, opts)
	defer s.Close()
	ctx := context.Background()
	// Three segments of 10 rows written 3h, 2h and 10min ago; then
	// WAL-only rows whose client timestamps are ancient (they must not
	// matter).
	agedSegments(t, s, 0, 3*time.Hour, 2*time.Hour, 10*time.Minute)
	old := mkRows("/k", 5, 30)
	for j := range old {
		old[j].EpochMS = 1
	}
	mustAppend(t, s, old)
	s.SetPin("relay", 5) // rows 6.. not forwarded yet
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 3 || st.FirstSeq != 1 {
		t.Fatalf("pin honoured without cap: %+v", st)
	}
	s.SetPin("relay", 10)
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FirstSeq != 11 || st.Segments != 2 {
		t.Fatalf("after the pin moved past segment 1: %+v", st)
	}
	s.SetPin("relay", -1)
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FirstSeq != 21 || st.Segments != 1 || st.LastSeq != 35 {
		t.Fatalf("after unpinning: %+v", st)
	}
	if rows := fetchAll(t, s, Query{Source: "/k", Scope: ScopeExact}); len(rows) != 15 || rows[0].Seq != 21 {
		t.Fatalf("reads after retention: %d rows from %d", len(rows), rows[0].Seq)
	}
	if len(lost) != 0 {
		t.Fatalf("OnPinnedLoss called without a cap: %v", lost)
	}
}

func TestRetentionPinCap(t *testing.T) {
	fs := vfs.NewMemFS()
	var lost [][2]int64
	var lostPin string
	opts := memOpts(fs)
	opts.RetentionBytes = 1
	opts.PinMaxBytes = 1
	opts.OnPinnedLoss = func(pin string, first, last int64) { lostPin = pin; lost = append(lost, [2]int64{first, last}) }
	s := mustOpen(t, opts)
	defer s.Close()
	ctx := context.Background()
	mustAppend(t, s, mkRows("/k", 10, 0))
	s.Flush(ctx)
	s.SetPin("relay", 4)
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Segments != 0 || lostPin != "relay" || len(lost) != 1 || lost[0] != [2]int64{5, 10} {
		t.Fatalf("pin over its cap: segments %d, lost %s %v; want seqs 5..10 reported", s.Stats().Segments, lostPin, lost)
	}
}

func TestCompactionMergesSmallSegments(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	opts.TargetSegmentBytes = 1 << 20
	s := mustOpen(t, opts)
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		mustAppend(t, s, mkRows("/k"+string(rune('a'+i%3)), 50, i*50))
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := fetchAll(t, s, Query{Source: "/k", Scope: ScopePrefix})
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 1 || st.SegmentRows != 300 {
		t.Fatalf("after compaction: %+v, want one segment of 300 rows", st)
	}
	after := fetchAll(t, s, Query{Source: "/k", Scope: ScopePrefix})
	if len(after) != len(before) || after[299] != before[299] || after[0] != before[0] {
		t.Fatal("compaction changed what reads return")
	}
	s.Close()
	names, _ := fs.List("/data")
	var segs int
	for _, n := range names {
		if strings.HasPrefix(n, segPrefix) {
			segs++
		}
	}
	if segs != 1 {
		t.Fatalf("directory holds %d segment files after compaction: %v", segs, names)
	}
}

func TestChangedAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := memOpts(vfs.NewMemFS())
	opts.Registerer = reg
	s := mustOpen(t, opts)
	defer s.Close()
	ch := s.Changed()
	select {
	case <-ch:
		t.Fatal("Changed fired before any append")
	default:
	}
	mustAppend(t, s, mkRows("/k", 3, 0))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed did not fire after an append")
	}
	if n := testutil.ToFloat64(s.metrics.rows); n != 3 {
		t.Fatalf("finelog_store_rows_total = %v, want 3", n)
	}
	if n, err := testutil.GatherAndCount(reg, "finelog_store_fsync_seconds"); err != nil || n != 1 {
		t.Fatalf("fsync histogram: %d %v", n, err)
	}
}

func TestBackgroundFlushAndClose(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	opts.Background = true
	opts.MemtableBytes = 8 << 10
	s := mustOpen(t, opts)
	for i := 0; i < 20; i++ {
		mustAppend(t, s, mkRows("/k", 20, i*20))
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Segments == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Stats().Segments == 0 {
		t.Fatal("a full memtable was not flushed in the background")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), Batch{Rows: mkRows("/k", 1, 0)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
	if _, err := s.Fetch(context.Background(), Query{Source: "/k", Scope: ScopeExact}); !errors.Is(err, ErrClosed) {
		t.Fatalf("fetch after close: %v, want ErrClosed", err)
	}
	for name, step := range map[string]func(context.Context) error{"Flush": s.Flush, "Compact": s.Compact, "Retain": s.Retain} {
		if err := step(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("%s after close: %v, want ErrClosed", name, err)
		}
	}
	s = mustOpen(t, memOpts(fs))
	defer s.Close()
	if st := s.Stats(); st.LastSeq != 400 || st.MemtableRows != 0 {
		t.Fatalf("after Close flushed: %+v", st)
	}
}

// TestIngestStallsForFlush: with background flushing, memtables never hold
// much more than maxHeldMemtables × MemtableBytes however fast appends come.
func TestIngestStallsForFlush(t *testing.T) {
	opts := memOpts(vfs.NewMemFS())
	opts.Background = true
	opts.MemtableBytes = 32 << 10
	s := mustOpen(t, opts)
	defer s.Close()
	var peak int64
	for i := 0; i < 200; i++ {
		mustAppend(t, s, mkRows("/k", 50, i*50))
		peak = max(peak, s.Stats().MemtableBytes)
	}
	if limit := (maxHeldMemtables + 1) * opts.MemtableBytes; peak > limit {
		t.Fatalf("memtables peaked at %d bytes, bound is about %d", peak, limit)
	}
	if rows := fetchAll(t, s, Query{Source: "/k", Scope: ScopeExact}); len(rows) != 10000 {
		t.Fatalf("%d rows readable, want 10000", len(rows))
	}
}

// TestConcurrentReadsDuringMaintenance: readers run while appends, flushes,
// compactions and retention change the segment set under them (run with
// -race). Every read sees a dense, ordered prefix-consistent answer.
func TestConcurrentReadsDuringMaintenance(t *testing.T) {
	opts := memOpts(vfs.NewMemFS())
	opts.TargetSegmentBytes = 1 << 20
	opts.RetentionBytes = 64 << 10
	s := mustOpen(t, opts)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for ctx.Err() == nil {
				rows, err := s.Scan(ctx, 0, 500, 0)
				if err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
				for i := 1; i < len(rows); i++ {
					if rows[i].Seq != rows[i-1].Seq+1 {
						t.Errorf("Scan returned seqs %d then %d", rows[i-1].Seq, rows[i].Seq)
						return
					}
				}
				res, err := s.Fetch(ctx, Query{Source: "/k", Scope: ScopePrefix, Tail: r%2 == 0, MaxLines: 50, Substring: "line"})
				if err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
				for i := 1; i < len(res.Rows); i++ {
					if res.Rows[i].Seq <= res.Rows[i-1].Seq {
						t.Error("Fetch rows out of order")
						return
					}
				}
			}
		}(r)
	}
	for i := 0; i < 40; i++ {
		mustAppend(t, s, mkRows("/k"+string(rune('a'+i%3)), 40, i*40))
		if i%3 == 0 {
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if i%8 == 0 {
			if err := s.Compact(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := s.Retain(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancel()
	wg.Wait()
}

// TestMergeFanInBounded: many small segments are merged at most
// maxMergeFanIn at a time (each input costs a row reader's page buffers),
// and repeated compaction still folds them all together.
func TestMergeFanInBounded(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		mustAppend(t, s, mkRows("/k", 20, i*20))
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if run := s.pickCompaction(); len(run) < minMergeRun || len(run) > maxMergeFanIn {
		t.Fatalf("picked %d inputs, want %d..%d", len(run), minMergeRun, maxMergeFanIn)
	} else {
		for _, sg := range run {
			sg.release()
		}
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments > 4 {
		t.Fatalf("%d segments after Compact, want the 40 folded into a few", st.Segments)
	}
	if rows := fetchAll(t, s, Query{Source: "/k", Scope: ScopeExact}); len(rows) != 800 {
		t.Fatalf("%d rows after compaction, want 800", len(rows))
	}
}

// TestProducerGapRefused: a producer batch that starts past the applied
// mark + 1 is refused, not applied, so the earlier batch it overtook is not
// dropped as a duplicate when it arrives. This is what lets a relay keep
// several batches in flight.
func TestProducerGapRefused(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	ctx := context.Background()
	batch := func(first, last int64) Batch {
		b := Batch{Producer: "east", FirstSeq: first, LastSeq: last}
		for q := first; q <= last; q++ {
			b.Rows = append(b.Rows, Row{Seq: q, Key: "/r", Data: fmt.Sprint("p", q)})
		}
		return b
	}
	// An unknown producer may start anywhere (a relay that starts at the
	// source's current end).
	if _, err := s.Append(ctx, batch(101, 110)); err != nil {
		t.Fatal(err)
	}
	// 121..130 overtakes 111..120: refused, nothing written.
	_, err := s.Append(ctx, batch(121, 130))
	if !errors.Is(err, ErrProducerGap) || !strings.Contains(err.Error(), "121") || !strings.Contains(err.Error(), "110") {
		t.Fatalf("overtaking batch: err = %v; want ErrProducerGap naming seq 121 and mark 110", err)
	}
	if v, _ := s.ProducerApplied("east"); v != 110 {
		t.Fatalf("mark moved to %d on a refused batch", v)
	}
	// In order they both apply.
	for _, b := range []Batch{batch(111, 120), batch(121, 130)} {
		if _, err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// A batch without FirstSeq (an older client) is not checked.
	if _, err := s.Append(ctx, Batch{Producer: "east", Rows: []Row{{Seq: 200, Key: "/r", Data: "p200"}}}); err != nil {
		t.Fatal(err)
	}
	// Reaching back is fine (a resend overlapping applied rows).
	if ack, err := s.Append(ctx, batch(195, 201)); err != nil || ack.Last-ack.First != 0 {
		t.Fatalf("batch reaching back: %+v %v; want only seq 201 applied", ack, err)
	}
	if rows := fetchAll(t, s, Query{Source: "/r", Scope: ScopeExact}); len(rows) != 32 {
		t.Fatalf("%d rows, want 32 (101..130, 200, 201)", len(rows))
	}
	// In one group commit, a batch refused beside an accepted one leaves the
	// accepted one acked: run many concurrent pairs.
	var wg sync.WaitGroup
	var refused atomic.Int32
	for i := 0; i < 16; i++ {
		first := int64(300 + 20*i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := s.Append(ctx, batch(first, first+19))
				if err == nil {
					return
				}
				if !errors.Is(err, ErrProducerGap) {
					t.Error(err)
					return
				}
				refused.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	// 202..299 is covered by an empty range batch so 300 can follow.
	if _, err := s.Append(ctx, Batch{Producer: "east", FirstSeq: 202, LastSeq: 299}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if v, _ := s.ProducerApplied("east"); v != 619 {
		t.Fatalf("mark %d after the concurrent batches, want 619", v)
	}
	if rows := fetchAll(t, s, Query{Source: "/r", Scope: ScopeExact}); len(rows) != 32+320 {
		t.Fatalf("%d rows, want %d: a refused batch was lost or doubled", len(rows), 32+320)
	}
	t.Logf("%d refusals while 16 batches raced", refused.Load())
}

// TestPinsHeldFromOpen: a pin named in Options.Pins holds every row from
// Open on, before its owner calls SetPin, so a retention pass that runs
// first cannot delete rows the owner (the relay) has not forwarded.
func TestPinsHeldFromOpen(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	s := mustOpen(t, opts)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		mustAppend(t, s, mkRows("/k", 10, i*10))
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	opts.RetentionBytes = 1
	opts.Pins = []string{"relay"}
	s = mustOpen(t, opts)
	defer s.Close()
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FirstSeq != 1 || st.Segments != 3 {
		t.Fatalf("retention before the owner pinned: %+v; want every segment kept", st)
	}
	s.SetPin("relay", 20)
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FirstSeq != 21 {
		t.Fatalf("after SetPin(20): first seq %d, want 21", st.FirstSeq)
	}
}
