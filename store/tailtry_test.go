package store

import (
	"context"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// TestTryNextDoesNotWait: TryNext yields what Next would, and at the
// store's end says so at once instead of waiting; a later append is seen.
func TestTryNextDoesNotWait(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Options{FS: vfs.NewMemFS(), Dir: "/d"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Append(ctx, Batch{Rows: []Row{{Key: "/k", Data: "a"}, {Key: "/k", Data: "b"}}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Tail(0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, ok, err := st.TryNext(ctx)
	if err != nil || !ok || rec.First != 1 || rec.Last != 2 || len(rec.Rows) != 2 {
		t.Fatalf("TryNext = [%d,%d] %d rows, ok %v, err %v; want seqs 1..2", rec.First, rec.Last, len(rec.Rows), ok, err)
	}
	if _, ok, err := st.TryNext(ctx); ok || err != nil {
		t.Fatalf("TryNext at the end: ok %v err %v, want not ok and no error", ok, err)
	}
	if _, err := s.Append(ctx, Batch{Rows: []Row{{Key: "/k", Data: "c"}}}); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := st.TryNext(ctx); !ok || err != nil || rec.First != 3 {
		t.Fatalf("TryNext after an append: first %d ok %v err %v, want seq 3", rec.First, ok, err)
	}
}
