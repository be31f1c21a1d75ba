package store

import (
	"context"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// agedSegments appends and flushes one 10-row segment per age, oldest first,
// so RetentionAge can delete a chosen prefix of them.
func agedSegments(t *testing.T, s *Store, from int, ages ...time.Duration) {
	t.Helper()
	for i, age := range ages {
		rows := mkRows("/k", 10, from+i*10)
		for j := range rows {
			rows[j].EpochMS = t0.Add(-age).UnixMilli()
		}
		mustAppend(t, s, rows)
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
