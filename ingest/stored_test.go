package ingest

import (
	"testing"

	"github.com/finelog/finelog/store"
)

// storedAs checks that every row's store attributes are the encoding of its
// attribute map (what the store will keep), then returns copies without
// them so tables can state the map alone.
func storedAs(t *testing.T, rows []Row) []Row {
	t.Helper()
	out := make([]Row, len(rows))
	for i, r := range rows {
		want, err := store.MakeAttributes(r.Attributes)
		if err != nil {
			t.Fatalf("row %d: attributes %v: %v", i, r.Attributes, err)
		}
		if r.Row.Attributes != want {
			t.Fatalf("row %d: stored attributes %v, want %v", i, r.Row.Attributes.Map(), r.Attributes)
		}
		r.Row.Attributes = ""
		out[i] = r
	}
	return out
}
