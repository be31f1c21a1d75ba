package relay

import (
	"context"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

func TestLoadProducerID(t *testing.T) {
	m := vfs.NewMemFS()
	m.MkdirAll("/r")
	id, err := LoadProducerID(m, "/r/producer", "east")
	if err != nil || !strings.HasPrefix(id, "east/") || len(id) != len("east/")+16 {
		t.Fatalf("id = %q, %v", id, err)
	}
	m.Crash(nil) // the id must be durable once returned
	again, err := LoadProducerID(m, "/r/producer", "east")
	if err != nil || again != id {
		t.Fatalf("after crash: %q, %v; want %q", again, err, id)
	}
	if _, err := LoadProducerID(m, "/r/producer", "west"); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Fatalf("cluster renamed: err = %v", err)
	}
	other := vfs.NewMemFS()
	other.MkdirAll("/r")
	if id2, _ := LoadProducerID(other, "/r/producer", "east"); id2 == id {
		t.Fatal("two stores got the same producer id")
	}
}

func openStore(t testing.TB, fsys vfs.FS, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(store.Options{FS: fsys, Dir: dir, Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func appendRows(t testing.TB, st *store.Store, rows []store.Row) {
	t.Helper()
	for len(rows) > 0 {
		n := min(len(rows), 5000)
		if _, err := st.Append(context.Background(), store.Batch{Rows: rows[:n]}); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
}
