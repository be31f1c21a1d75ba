package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// followerWithSegments is a following store holding seqs 1..30 in three
// 10-row segments and 31..35 in the memtable.
func followerWithSegments(t *testing.T, fs vfs.FS) (*Store, Options) {
	t.Helper()
	opts := memOpts(fs)
	opts.Following = true
	s := mustOpen(t, opts)
	for i := range 3 {
		mustAppend(t, s, mkRows("/k", 10, i*10))
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, s, mkRows("/k", 5, 30))
	return s, opts
}

func scanAll(t *testing.T, s *Store) []int64 {
	t.Helper()
	rows, err := s.Scan(context.Background(), 0, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	return seqsOf(rows)
}

func seqRange(first, last int64) []int64 {
	out := []int64{}
	for q := first; q <= last; q++ {
		out = append(out, q)
	}
	return out
}

// A primary's floor rarely falls on the follower's segment boundaries: the
// follower must still serve exactly the rows above it, by every read path,
// and keep that across a restart.
func TestApplyFloorServesOnlyRowsAboveIt(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	s, opts := followerWithSegments(t, fs)
	if err := s.ApplyFloor(ctx, 15); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FirstSeq != 16 || st.Segments != 2 || st.LastSeq != 35 {
		t.Fatalf("after floor 15: %+v; want segment 1..10 deleted, first seq 16, last 35", st)
	}
	if got := scanAll(t, s); !equalSeqs(got, seqRange(16, 35)) {
		t.Fatalf("Scan after floor 15 = %v", got)
	}
	for _, tail := range []bool{false, true} {
		res, err := s.Fetch(ctx, Query{Scope: ScopePrefix, Source: "/k", MaxLines: 100, Tail: tail})
		if err != nil {
			t.Fatal(err)
		}
		if got := seqsOf(res.Rows); !equalSeqs(got, seqRange(16, 35)) {
			t.Fatalf("Fetch(tail=%v) after floor 15 = %v", tail, got)
		}
	}
	// A store that follows this one (a chained standby) jumps the floor
	// and then gets the straddling segment's rows above it only.
	st, err := s.Tail(0)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st.Next(ctx)
	if err != nil || rec.First != 16 || len(rec.Rows) != 0 || rec.Floor != 15 {
		t.Fatalf("first tail record = %+v, %v; want a floor jump to 15", rec, err)
	}
	rec, err = st.Next(ctx)
	if err != nil || rec.First != 16 || len(rec.Rows) == 0 || rec.Rows[0].Seq != 16 {
		t.Fatalf("second tail record = [%d,%d], %v; want rows from 16", rec.First, rec.Last, err)
	}
	st.Close()

	if err := s.ApplyFloor(ctx, 12); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FirstSeq != 16 {
		t.Fatalf("a lower floor moved it back: %+v", st)
	}
	// Into the memtable: rows up to 33 are deleted, 34 and 35 stay.
	if err := s.ApplyFloor(ctx, 33); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, s); !equalSeqs(got, []int64{34, 35}) {
		t.Fatalf("Scan after floor 33 = %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	defer s.Close()
	if got := scanAll(t, s); !equalSeqs(got, []int64{34, 35}) {
		t.Fatalf("Scan after reopen = %v", got)
	}
	if st := s.Stats(); st.FirstSeq != 34 || st.LastSeq != 35 || s.Floor() != 33 {
		t.Fatalf("after reopen: %+v floor %d; want first 34, last 35, floor 33", st, s.Floor())
	}
	if err := s.ApplyFloor(ctx, -1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ApplyFloor(-1) = %v, want ErrInvalidArgument", err)
	}
}

// A floor past everything the store holds empties it and numbering goes on
// above the floor.
func TestApplyFloorPastLastSeq(t *testing.T) {
	ctx := context.Background()
	s, _ := followerWithSegments(t, vfs.NewMemFS())
	defer s.Close()
	if err := s.ApplyFloor(ctx, 50); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.LastSeq != 50 || st.FirstSeq != 0 || st.Segments != 0 {
		t.Fatalf("after floor 50: %+v; want empty at last seq 50", st)
	}
	rows := mkRows("/k", 2, 50)
	rows[0].Seq, rows[1].Seq = 51, 52
	if err := s.ApplyReplicated(ctx, Record{First: 51, Last: 52, Rows: rows, Floor: 50}); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, s); !equalSeqs(got, []int64{51, 52}) {
		t.Fatalf("Scan = %v", got)
	}
}

// While following, the store's own retention settings delete nothing: the
// floor is the primary's. Once promoted they apply.
func TestFollowingStoreRunsNoRetention(t *testing.T) {
	ctx := context.Background()
	opts := memOpts(vfs.NewMemFS())
	opts.Following, opts.RetentionBytes = true, 1
	s := mustOpen(t, opts)
	defer s.Close()
	mustAppend(t, s, mkRows("/k", 10, 0))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 1 || st.FirstSeq != 1 {
		t.Fatalf("a following store ran its own retention: %+v", st)
	}
	s.StopFollowing()
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 0 {
		t.Fatalf("after StopFollowing retention should delete the segment: %+v", st)
	}
}

// Killed at any point of ApplyFloor, the store reopens with either the old
// floor or the new one, never loses a row above the new one, and holds the
// new one if ApplyFloor returned nil.
func TestApplyFloorCrash(t *testing.T) {
	ctx := context.Background()
	for _, floor := range []int64{15, 33} {
		// Dry run: count the operations ApplyFloor performs.
		fs := vfs.NewMemFS()
		s, _ := followerWithSegments(t, fs)
		k := &killer{n: -1}
		fs.Inject = k.inject
		if err := s.ApplyFloor(ctx, floor); err != nil {
			t.Fatal(err)
		}
		fs.Inject = nil
		s.Close()
		total := k.count
		if total < 3 {
			t.Fatalf("ApplyFloor(%d) did only %d fs operations", floor, total)
		}
		for n := 0; n <= total; n++ {
			for _, torn := range []bool{false, true} {
				label := fmt.Sprintf("floor %d, killed after op %d of %d (torn=%v)", floor, n, total, torn)
				fs := vfs.NewMemFS()
				s, opts := followerWithSegments(t, fs)
				fs.Inject = (&killer{n: n}).inject
				err := s.ApplyFloor(ctx, floor)
				s.Abandon()
				fs.Inject = nil
				var rng *rand.Rand
				if torn {
					rng = rand.New(rand.NewSource(int64(n)))
				}
				fs.Crash(rng)
				s2, oerr := Open(opts)
				if oerr != nil {
					t.Fatalf("%s: reopen: %v", label, oerr)
				}
				got := scanAll(t, s2)
				switch {
				case equalSeqs(got, seqRange(floor+1, 35)):
				case err != nil && equalSeqs(got, seqRange(1, 35)):
				default:
					t.Fatalf("%s: ApplyFloor = %v; after reopen seqs %v", label, err, got)
				}
				if st := s2.Stats(); st.LastSeq != 35 {
					t.Fatalf("%s: last seq %d after reopen, want 35", label, st.LastSeq)
				}
				// The interrupted floor can be applied again.
				if err := s2.ApplyFloor(ctx, floor); err != nil {
					t.Fatalf("%s: ApplyFloor again: %v", label, err)
				}
				if got := scanAll(t, s2); !equalSeqs(got, seqRange(floor+1, 35)) {
					t.Fatalf("%s: after retrying the floor: %v", label, got)
				}
				s2.Close()
			}
		}
	}
}
