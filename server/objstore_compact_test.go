package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

var _ store.TieredFS = (*objstore.TierFS)(nil)

// TestTierCompactionNeverDownloads: compaction merges only segments with a
// local copy. Small segments already evicted to the bucket are left as
// they are (no GET of a segment object), local ones next to them still
// merge, and a segment a merge holds is not evicted under it.
func TestTierCompactionNeverDownloads(t *testing.T) {
	ctx := context.Background()
	clk, bucket := clock.NewFake(epoch), objstore.NewMemBucket("logs")
	bucket.Clock = clk
	var segGets atomic.Int64
	bucket.Fault = func(op objstore.Op, name string) objstore.Fault {
		if op == objstore.OpGet && strings.HasPrefix(name, "segments/") {
			segGets.Add(1)
		}
		return objstore.FaultNone
	}
	fsys := vfs.NewMemFS()
	e := openTierServer(t, fsys, clk, bucket, ObjectStoreConfig{LocalRetentionBytes: 1})
	defer e.srv.Close()
	var want []string
	flushed := func(tag string, n int) {
		for b := 0; b < n; b++ {
			var rows []store.Row
			for i := 0; i < 10; i++ {
				rows = append(rows, store.Row{Key: "/job/a", Data: fmt.Sprintf("%s%d-%d", tag, b, i), EpochMS: 1000})
			}
			ack, err := e.st.Append(ctx, store.Batch{Rows: rows})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range rows {
				want = append(want, fmt.Sprintf("%d:%s", ack.First+int64(i), r.Data))
			}
			if err := e.st.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	flushed("old", 4)
	if err := e.srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	if local, _ := store.ListSegments(fsys, "/data/store"); len(local) != 0 {
		t.Fatalf("%d segments still local after eviction", len(local))
	}
	segGets.Store(0)
	if err := e.st.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if n := segGets.Load(); n != 0 {
		t.Fatalf("compaction of remote-only segments made %d segment GETs, want none", n)
	}
	if n := e.st.Stats().Segments; n != 4 {
		t.Fatalf("remote-only small segments: %d segments after compaction, want the 4 left as they are", n)
	}

	flushed("new", 4) // local, not evicted: no round runs
	if err := e.st.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.st.Stats().Segments; n != 5 {
		t.Fatalf("%d segments after compacting 4 remote and 4 local small ones, want 4 remote + 1 merged", n)
	}
	if n := segGets.Load(); n != 0 {
		t.Fatalf("compaction made %d segment GETs, want none", n)
	}
	got, err := fetchAll(t, e.st)
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after compaction: err %v\n got %v\nwant %v", err, got, want)
	}

	// A segment held by a merge keeps its local copy until released.
	if err := e.srv.tier.round(ctx); err != nil { // uploads the merged output
		t.Fatal(err)
	}
	flushed("held", 1)
	local, _ := store.ListSegments(fsys, "/data/store")
	if len(local) != 1 {
		t.Fatalf("want the one new segment local, have %d", len(local))
	}
	release, ok := e.srv.tier.tfs.HoldLocal([]string{filepath.Join("/data/store", local[0].Name)})
	if !ok {
		t.Fatal("HoldLocal refused a local segment")
	}
	if err := e.srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	if l, _ := store.ListSegments(fsys, "/data/store"); len(l) != 1 {
		t.Fatal("a held segment was evicted")
	}
	release()
	if err := e.srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	if l, _ := store.ListSegments(fsys, "/data/store"); len(l) != 0 {
		t.Fatalf("released segment not evicted: %d local", len(l))
	}
	if _, ok := e.srv.tier.tfs.HoldLocal([]string{filepath.Join("/data/store", local[0].Name)}); ok {
		t.Fatal("HoldLocal accepted a segment that is only in the bucket")
	}
}
