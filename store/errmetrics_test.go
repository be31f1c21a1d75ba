package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// A failed flush used to be only a log line; an operator alerting on
// /metrics must see it, and the series must exist before the first one.
func TestStoreErrorsAreCounted(t *testing.T) {
	fs := vfs.NewMemFS()
	reg := prometheus.NewRegistry()
	opts := memOpts(fs)
	opts.Registerer = reg
	s := mustOpen(t, opts)
	defer s.Close()
	for _, op := range storeOps {
		if got := testutil.ToFloat64(s.metrics.failures.WithLabelValues(op)); got != 0 {
			t.Fatalf("errors{op=%s} = %v before anything failed", op, got)
		}
	}
	if n, _ := testutil.GatherAndCount(reg, "finelog_store_errors_total"); n != len(storeOps) {
		t.Fatalf("%d finelog_store_errors_total series at open, want %d pre-registered", n, len(storeOps))
	}
	mustAppend(t, s, []Row{{Key: "/k", Data: "x"}})
	fs.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpCreate && strings.Contains(name, segPrefix) {
			return errors.New("injected: disk error")
		}
		return nil
	}
	if err := s.Flush(context.Background()); err == nil {
		t.Fatal("flush with a failing create succeeded")
	}
	if got := testutil.ToFloat64(s.metrics.failures.WithLabelValues("flush")); got != 1 {
		t.Fatalf("errors{op=flush} = %v after a failed flush, want 1", got)
	}
	fs.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpWrite && strings.Contains(name, "wal") {
			return errors.New("injected: disk error")
		}
		return nil
	}
	if _, err := s.Append(context.Background(), Batch{Rows: []Row{{Key: "/k", Data: "y"}}}); err == nil {
		t.Fatal("append with a failing WAL write succeeded")
	}
	if got := testutil.ToFloat64(s.metrics.failures.WithLabelValues("wal_append")); got != 1 {
		t.Fatalf("errors{op=wal_append} = %v after a failed append, want 1", got)
	}
}

func TestRetentionCountsRowsAndBytes(t *testing.T) {
	fs := vfs.NewMemFS()
	clk := clock.NewFake(t0)
	reg := prometheus.NewRegistry()
	opts := memOpts(fs)
	opts.Clock, opts.Registerer, opts.RetentionAge = clk, reg, time.Hour
	s := mustOpen(t, opts)
	defer s.Close()
	ctx := context.Background()
	mustAppend(t, s, []Row{{Key: "/a", Data: "one"}, {Key: "/a", Data: "two"}, {Key: "/b", Data: "three"}})
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	size := s.Stats().SegmentBytes
	clk.Advance(2 * time.Hour)
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Segments != 0 {
		t.Fatalf("retention kept %d segments", s.Stats().Segments)
	}
	if rows := testutil.ToFloat64(s.metrics.retainedRows); rows != 3 {
		t.Errorf("retention deleted rows = %v, want 3", rows)
	}
	if b := testutil.ToFloat64(s.metrics.retainedSize); b != float64(size) || size == 0 {
		t.Errorf("retention deleted bytes = %v, want the segment's %d", b, size)
	}
}

// Write amplification is readable from /metrics: the segment bytes that
// flushes and merges wrote, beside the row bytes appended.
func TestSegmentBytesWrittenAreCounted(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	opts.Registerer = prometheus.NewRegistry()
	opts.TargetSegmentBytes = 1 << 30
	s := mustOpen(t, opts)
	defer s.Close()
	for i := 0; i < 4; i++ {
		mustAppend(t, s, mkRows("/k", 200, i*200))
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	flushed := testutil.ToFloat64(s.metrics.segBytes.WithLabelValues("flush"))
	if on := segBytes(t, fs); flushed != float64(on) {
		t.Fatalf("flush bytes written = %v, want the %d bytes of the 4 flushed segments", flushed, on)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	merged := testutil.ToFloat64(s.metrics.segBytes.WithLabelValues("merge"))
	if n := len(segFiles(t, fs)); n != 1 {
		t.Fatalf("%d segments after compaction, want the 4 merged into 1", n)
	}
	if on := segBytes(t, fs); merged != float64(on) {
		t.Fatalf("merge bytes written = %v, want the %d bytes of the merged segment", merged, on)
	}
}
