package store

import (
	"context"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// agedSegments appends and flushes one 10-row segment per age, oldest first,
// so RetentionAge can delete a chosen prefix of them. Age is by the store's
// clock: each segment is written with the clock set back by its age.
func agedSegments(t *testing.T, s *Store, from int, ages ...time.Duration) {
	t.Helper()
	clk := s.clk.(*clock.Fake)
	now := clk.Now()
	defer clk.Set(now)
	for i, age := range ages {
		clk.Set(now.Add(-age))
		mustAppend(t, s, mkRows("/k", 10, from+i*10))
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// W2: a reader behind the retention floor (a relay whose pin cap was
// exceeded) must get the first surviving rows, not an empty answer forever.
func TestScanBelowRetentionFloor(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := Options{FS: fs, Dir: "/data", Clock: clock.NewFake(t0), RetentionAge: time.Hour}
	s := mustOpen(t, opts)
	defer s.Close()
	ctx := context.Background()
	agedSegments(t, s, 0, 3*time.Hour, 2*time.Hour, 10*time.Minute) // seqs 1..30
	mustAppend(t, s, mkRows("/k", 5, 30))                           // 31..35, memtable only
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FirstSeq != 21 {
		t.Fatalf("retention should have deleted seqs 1..20: %+v", st)
	}
	for _, tc := range []struct {
		after int64
		n     int
		want  []int64
	}{
		{0, 3, []int64{21, 22, 23}},
		{5, 3, []int64{21, 22, 23}},
		{19, 1, []int64{21}},
		{20, 2, []int64{21, 22}},
		{28, 4, []int64{29, 30, 31, 32}}, // segment into memtable
		{35, 4, []int64{}},
	} {
		rows, err := s.Scan(ctx, tc.after, tc.n, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqsOf(rows); !equalSeqs(got, tc.want) {
			t.Errorf("Scan(after=%d, n=%d) = seqs %v, want %v", tc.after, tc.n, got, tc.want)
		}
	}
	// A byte budget still returns at least one row.
	rows, err := s.Scan(ctx, 0, 10, 1)
	if err != nil || !equalSeqs(seqsOf(rows), []int64{21}) {
		t.Fatalf("Scan(0, 10, maxBytes=1) = %v, %v; want seqs [21]", seqsOf(rows), err)
	}
}

// W2 with nothing left in segments: the first surviving rows are in the
// memtable, far above after+n.
func TestScanBelowFloorIntoMemtable(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := Options{FS: fs, Dir: "/data", Clock: clock.NewFake(t0), RetentionAge: time.Hour}
	s := mustOpen(t, opts)
	defer s.Close()
	ctx := context.Background()
	agedSegments(t, s, 0, 3*time.Hour, 2*time.Hour) // seqs 1..20
	mustAppend(t, s, mkRows("/k", 3, 20))           // 21..23
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Scan(ctx, 0, 2, 0)
	if err != nil || !equalSeqs(seqsOf(rows), []int64{21, 22}) {
		t.Fatalf("Scan(0, 2) = %v, %v; want seqs [21 22]", seqsOf(rows), err)
	}
}

// Age retention counts from when the store wrote the rows, by its own clock:
// a client whose clock says 1970 must not have its rows deleted at once, and
// one whose clock says 2100 must not keep them forever. A merge keeps the
// newest of its inputs' times.
func TestRetentionAgeIgnoresClientClocks(t *testing.T) {
	clk := clock.NewFake(t0)
	s := mustOpen(t, Options{FS: vfs.NewMemFS(), Dir: "/data", Clock: clk, RetentionAge: time.Hour})
	defer s.Close()
	ctx := context.Background()
	for _, epoch := range []int64{1, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()} {
		rows := mkRows("/k", 10, int(s.LastSeq()))
		for i := range rows {
			rows[i].EpochMS = epoch
		}
		mustAppend(t, s, rows)
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(40 * time.Minute)
	}
	// t0+80m: the first segment (written at t0) is past the hour whatever
	// its rows say; the second (t0+40m) is not.
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FirstSeq != 11 || st.Segments != 1 {
		t.Fatalf("at t0+80m: %+v; want seqs 1..10 deleted, 11..20 kept", st)
	}
	clk.Advance(30 * time.Minute) // t0+110m: the 2100-stamped rows go too
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 0 {
		t.Fatalf("at t0+110m: %+v; want the future-stamped segment deleted", st)
	}

	// Merged: inputs written 3h and 10min ago make a segment as young as
	// the newer one.
	agedSegments(t, s, 20, 3*time.Hour, 10*time.Minute, 10*time.Minute, 10*time.Minute)
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 1 || st.SegmentRows != 40 {
		t.Fatalf("after compacting old and new: %+v; want one merged segment of 40 rows kept", st)
	}
}
