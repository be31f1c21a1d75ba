package store

import (
	"bytes"
	"context"
	"path"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/finelog/finelog/internal/vfs"
)

// segRowV1 is the segment schema before rows had attributes.
type segRowV1 struct {
	Key       string `parquet:"key,dict"`
	Seq       int64  `parquet:"seq,delta"`
	EpochMS   int64  `parquet:"epoch_ms,delta"`
	Level     int32  `parquet:"level"`
	AttemptID int32  `parquet:"attempt_id"`
	Source    string `parquet:"source,dict"`
	Cluster   string `parquet:"cluster,dict"`
	Data      string `parquet:"data"`
}

// A segment written before attributes existed (no attributes column) opens,
// its rows read with no attributes, and an attributes filter finds none of
// them without failing; new rows with attributes next to it still match.
func TestSegmentWithoutAttributesColumn(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	mustAppend(t, s, mkRows("/k", 5, 0))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	name := s.segs[0].name
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rewriteSegment[segRowV1](t, fs, name)
	b, err := vfs.ReadFile(fs, path.Join("/data", name))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if _, ok := old.Schema().Lookup("attributes", "key_value", "key"); ok {
		t.Fatal("the rewritten segment still has an attributes column")
	}

	s = mustOpen(t, memOpts(fs))
	defer s.Close()
	tagged := mkRows("/k", 1, 5)
	tagged[0].Attributes = mustAttrs(t, map[string]string{"env": "prod"})
	mustAppend(t, s, tagged)
	got := fetchAll(t, s, Query{Source: "/k", Scope: ScopeExact})
	if len(got) != 6 || got[0].Data != "/k line 0" || got[0].Attributes != "" || got[5].Attributes != tagged[0].Attributes {
		t.Fatalf("rows = %+v", got)
	}
	got = fetchAll(t, s, Query{Source: "/k", Scope: ScopeExact, Attributes: tagged[0].Attributes})
	if len(got) != 1 || got[0].Seq != 6 {
		t.Fatalf("attributes filter over an old segment and the memtable: %+v", got)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got = fetchAll(t, s, Query{Source: "/k", Scope: ScopeExact, Attributes: tagged[0].Attributes})
	if len(got) != 1 || got[0].Seq != 6 {
		t.Fatalf("attributes filter over an old and a new segment: %+v", got)
	}
}
