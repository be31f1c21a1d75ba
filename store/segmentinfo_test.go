package store

import (
	"context"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

func TestListSegmentsReadsFooters(t *testing.T) {
	fsys := vfs.NewMemFS()
	s, err := Open(Options{Dir: "/d", FS: fsys, Clock: clock.NewFake(time.UnixMilli(5_000))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Append(ctx, Batch{Rows: []Row{{Key: "k", Data: "a", EpochMS: 1000}, {Key: "k", Data: "b", EpochMS: 3000}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, Batch{Producer: "east", Rows: []Row{{Seq: 41, Key: "k", Data: "c", EpochMS: 2000}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	segs, err := ListSegments(fsys, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 {
		t.Fatalf("got %d segments, want 1", len(segs))
	}
	g := segs[0]
	if g.First != 1 || g.Last != 3 || g.Rows != 3 || g.MinEpochMS != 1000 || g.MaxEpochMS != 3000 || g.Size == 0 || g.Name != segName(1, 3) {
		t.Fatalf("segment info = %+v", g)
	}
}
