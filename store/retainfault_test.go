package store

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// failRemoves makes MemFS fail every remove of a segment file while on.
func failRemoves(fs *vfs.MemFS) *atomic.Bool {
	on := &atomic.Bool{}
	on.Store(true)
	fs.Inject = func(op vfs.Op, name string) error {
		if on.Load() && op == vfs.OpRemove && strings.Contains(name, segPrefix) && strings.HasSuffix(name, segSuffix) {
			return errors.New("injected: remove failed")
		}
		return nil
	}
	return on
}

func segFiles(t *testing.T, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List("/data")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if _, _, ok := parseSegName(n); ok {
			out = append(out, n)
		}
	}
	return out
}

// W3: Retain's segment remove fails, the process dies, and the store
// reopens. The deleted rows must not come back (the file lies below the
// durable floor), and compaction afterwards must not merge across the gap
// into a segment the store then refuses to open.
func TestFailedRetainRemoveThenCrashCompactReopen(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "close"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			opts := Options{FS: fs, Dir: "/data", Clock: clock.NewFake(t0), RetentionAge: time.Hour, TargetSegmentBytes: 1 << 30}
			s := mustOpen(t, opts)
			ctx := context.Background()
			agedSegments(t, s, 0, 3*time.Hour, 2*time.Hour, 10*time.Minute) // 1..30
			on := failRemoves(fs)
			if err := s.Retain(ctx); err == nil {
				t.Fatal("Retain: want the injected remove error")
			}
			if st := s.Stats(); st.FirstSeq != 21 {
				t.Fatalf("after Retain: %+v; want FirstSeq 21", st)
			}
			on.Store(false)
			// The failed removal must not break compaction in this process.
			agedSegments(t, s, 30, 0, 0, 0) // 31..60
			if err := s.Compact(ctx); err != nil {
				t.Fatalf("Compact after a failed remove: %v", err)
			}
			if rows, err := s.Scan(ctx, 0, 3, 0); err != nil || !equalSeqs(seqsOf(rows), []int64{21, 22, 23}) {
				t.Fatalf("Scan(0, 3) before restart = %v, %v", seqsOf(rows), err)
			}
			if crash {
				s.Abandon()
				fs.Crash(nil)
			} else {
				// A later Retain retries the removal in this process.
				if err := s.Retain(ctx); err != nil {
					t.Fatalf("second Retain: %v", err)
				}
				for _, n := range segFiles(t, fs) {
					if f, _, _ := parseSegName(n); f <= 20 {
						t.Errorf("segment %s below the floor still on disk after a second Retain", n)
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}

			s = mustOpen(t, opts)
			for _, n := range segFiles(t, fs) {
				if f, _, _ := parseSegName(n); f <= 20 {
					t.Errorf("segment %s below the floor (20) still on disk after reopen", n)
				}
			}
			check := func(label string) {
				t.Helper()
				rows, err := s.Scan(ctx, 0, 1000, 0)
				if err != nil {
					t.Fatalf("%s: Scan: %v", label, err)
				}
				if len(rows) == 0 || rows[0].Seq != 21 {
					t.Fatalf("%s: Scan(0) starts at seqs %v; want 21 (rows 1..20 were deleted)", label, seqsOf(rows[:min(3, len(rows))]))
				}
				for i, r := range rows {
					if r.Seq != 21+int64(i) {
						t.Fatalf("%s: row %d has seq %d: seqs not dense", label, i, r.Seq)
					}
				}
				if st := s.Stats(); st.FirstSeq != 21 || st.LastSeq != rows[len(rows)-1].Seq {
					t.Fatalf("%s: stats %+v, rows %d..%d", label, st, rows[0].Seq, rows[len(rows)-1].Seq)
				}
			}
			check("reopen")
			agedSegments(t, s, 60, 0, 0, 0, 0) // 61..100
			if err := s.Compact(ctx); err != nil {
				t.Fatalf("Compact after reopen: %v", err)
			}
			check("compacted")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, opts)
			defer s.Close()
			check("reopen after compaction")
		})
	}
}

// A crash between Retain's meta.json write and its removals leaves segment
// files below the floor: recovery deletes them instead of loading them.
func TestCrashAfterRetainFloorBeforeRemove(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := Options{FS: fs, Dir: "/data", Clock: clock.NewFake(t0), RetentionAge: time.Hour}
	s := mustOpen(t, opts)
	ctx := context.Background()
	agedSegments(t, s, 0, 3*time.Hour, 2*time.Hour, 10*time.Minute)
	// The process "dies" at the first segment remove: nothing after it
	// reaches the disk.
	var dead atomic.Bool
	fs.Inject = func(op vfs.Op, name string) error {
		if dead.Load() || (op == vfs.OpRemove && strings.HasSuffix(name, segSuffix)) {
			dead.Store(true)
			return errKilled
		}
		return nil
	}
	s.Retain(ctx)
	s.Abandon()
	fs.Inject = nil
	fs.Crash(nil)
	if n := len(segFiles(t, fs)); n != 3 {
		t.Fatalf("setup: %d segment files on disk, want all 3", n)
	}
	s = mustOpen(t, opts)
	defer s.Close()
	if n := len(segFiles(t, fs)); n != 1 {
		t.Errorf("%d segment files after recovery, want 1 (two lie below the floor)", n)
	}
	rows, err := s.Scan(ctx, 0, 100, 0)
	if err != nil || len(rows) != 10 || rows[0].Seq != 21 {
		t.Fatalf("Scan(0) = %v, %v; want seqs 21..30", seqsOf(rows), err)
	}
}

// W4: Compact's directory sync fails after the merged segment was renamed
// into place. The merged file must not sit on disk unaccounted for while
// retention and later merges cut across its range: after a crash the store
// must open with every row retention kept, in dense seqs.
func TestCompactDirSyncFailureThenRetainCompactCrash(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := Options{FS: fs, Dir: "/data", Clock: clock.NewFake(t0), RetentionAge: time.Hour, TargetSegmentBytes: 1 << 30}
	s := mustOpen(t, opts)
	ctx := context.Background()
	agedSegments(t, s, 0, 3*time.Hour, 3*time.Hour, 3*time.Hour, 0, 0) // 1..50; 1..30 old
	var fail atomic.Int32
	fail.Store(1)
	fs.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpSyncDir && fail.Add(-1) >= 0 {
			return errors.New("injected: syncdir failed")
		}
		return nil
	}
	if err := s.Compact(ctx); err == nil {
		t.Fatal("Compact: want the injected syncdir error")
	}
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	agedSegments(t, s, 50, 0, 0, 0, 0, 0) // 51..100
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	first := s.Stats().FirstSeq
	s.Abandon()
	fs.Crash(nil)
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	rows, err := s.Scan(ctx, 0, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 || rows[0].Seq != first || rows[len(rows)-1].Seq != 100 || len(rows) != int(101-first) {
		t.Fatalf("after reopen: %d rows, seqs %v..; want dense %d..100", len(rows), seqsOf(rows[:min(3, len(rows))]), first)
	}
}
