package objstore_test

import (
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

// node is one finelogd's store on a TierFS, driven by hand.
type node struct {
	fs    *vfs.MemFS
	tier  *objstore.Tier
	tfs   *objstore.TierFS
	store *store.Store
}

func describe(fsys vfs.FS, p string) (objstore.Segment, error) {
	sg, err := store.DescribeSegment(fsys, p)
	return objstore.Segment{Name: sg.Name, Path: sg.Path, First: sg.First, Last: sg.Last, Rows: sg.Rows,
		MinEpochMS: sg.MinEpochMS, MaxEpochMS: sg.MaxEpochMS, WrittenMS: sg.WrittenMS, Producers: sg.Producers}, err
}

func openNode(t *rapid.T, fsys *vfs.MemFS, b objstore.Bucket, clk *clock.Fake) *node {
	ctx := context.Background()
	tier, err := objstore.OpenTier(ctx, objstore.TierOptions{FS: fsys, Dir: "/data/objstore", Bucket: b, Clock: clk, MinBackoff: time.Second, MaxBackoff: 4 * time.Second})
	if err != nil {
		t.Fatalf("open tier: %v", err)
	}
	cache, err := objstore.OpenCache(fsys, "/data/objcache", 3*objstore.BlockSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	tfs := objstore.NewTierFS(objstore.TierFSOptions{Local: fsys, Dir: "/data/store", IsSegment: store.IsSegmentName,
		Describe: describe, Tier: tier, Cache: cache, Files: []string{store.ProducersFile}})
	st, err := store.Open(store.Options{FS: tfs, Clock: clk, Dir: "/data/store", MemtableBytes: 1 << 20, TargetSegmentBytes: 64 << 10})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	n := &node{fs: fsys, tier: tier, tfs: tfs, store: st}
	n.reconcile(t)
	return n
}

func (n *node) reconcile(t *rapid.T) {
	segs, err := store.ListSegments(n.fs, "/data/store")
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range segs {
		s, _ := describe(n.fs, sg.Path)
		n.tier.Sealed(s)
	}
}

func readAll(t *rapid.T, st *store.Store) []string {
	var out []string
	var cursor int64
	for {
		res, err := st.Fetch(context.Background(), store.Query{Source: "/", Scope: store.ScopePrefix, Cursor: cursor, MaxLines: store.MaxMaxLines})
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if len(res.Rows) == 0 {
			return out
		}
		for _, r := range res.Rows {
			out = append(out, r.Data)
		}
		cursor = res.Cursor
	}
}

func checkExactlyOnce(t *rapid.T, got []string, acked map[string]bool, what string) {
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
		if seen[g] > 1 {
			t.Fatalf("%s: row %s returned twice", what, g)
		}
	}
	for a := range acked {
		if seen[a] == 0 {
			t.Fatalf("%s: acked row %s missing (%d rows read, %d acked)", what, a, len(got), len(acked))
		}
	}
}

// TestPropertyTieredStoreKeepsEveryAckedRow runs random schedules of
// appends, flushes, compactions, tier steps, bucket faults (500, 503, down,
// torn uploads, lost replies), local evictions and power cuts. After every
// power cut every acknowledged row is readable exactly once, through local
// and remote segments alike; at the end, a store rebuilt from the bucket
// alone returns every row exactly once.
func TestPropertyTieredStoreKeepsEveryAckedRow(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		clk := clock.NewFake(time.Unix(1_700_000_000, 0))
		b := objstore.NewMemBucket("prop")
		b.Clock = clk
		fault := objstore.FaultNone
		b.Fault = func(objstore.Op, string) objstore.Fault { return fault }
		n := openNode(t, vfs.NewMemFS(), b, clk)
		acked := map[string]bool{}
		rowNo := 0
		steps := rapid.IntRange(5, 40).Draw(t, "steps")
		for i := 0; i < steps; i++ {
			switch rapid.IntRange(0, 7).Draw(t, "action") {
			case 0, 1:
				var rows []store.Row
				for k := rapid.IntRange(1, 30).Draw(t, "rows"); k > 0; k-- {
					rowNo++
					rows = append(rows, store.Row{Key: fmt.Sprintf("/k/%d", rowNo%3), Data: fmt.Sprintf("row-%d", rowNo), EpochMS: clk.Now().UnixMilli()})
				}
				if _, err := n.store.Append(ctx, store.Batch{Rows: rows}); err == nil {
					for _, r := range rows {
						acked[r.Data] = true
					}
				}
			case 2:
				n.store.Flush(ctx)
			case 3:
				n.store.Compact(ctx)
			case 4:
				for k := rapid.IntRange(1, 6).Draw(t, "tier steps"); k > 0; k-- {
					n.tier.Step(ctx)
					clk.Advance(5 * time.Second)
				}
			case 5:
				fault = rapid.SampledFrom([]objstore.Fault{objstore.FaultNone, objstore.FaultNone, objstore.FaultInternal,
					objstore.FaultSlowDown, objstore.FaultDown, objstore.FaultTorn, objstore.FaultApplyLoseReply}).Draw(t, "fault")
			case 6:
				segs, _ := store.ListSegments(n.fs, "/data/store")
				for _, sg := range segs {
					s, _ := describe(n.fs, sg.Path)
					if n.tier.Uploaded(s) && rapid.Bool().Draw(t, "evict") {
						if err := n.tfs.Evict(sg.Name); err != nil {
							t.Fatalf("evict %s: %v", sg.Name, err)
						}
					}
				}
			case 7:
				n.store.Abandon()
				n.fs.Crash(rand.New(rand.NewSource(int64(i))))
				fault = objstore.FaultNone
				n = openNode(t, n.fs, b, clk)
				checkExactlyOnce(t, readAll(t, n.store), acked, fmt.Sprintf("after power cut at step %d", i))
			}
		}
		fault = objstore.FaultNone
		checkExactlyOnce(t, readAll(t, n.store), acked, "at the end")
		if err := n.store.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		n.reconcile(t)
		if err := n.tier.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		n.store.Close()
		if _, err := n.tier.Collect(ctx); err != nil {
			t.Fatal(err)
		}

		rebuilt := openNode(t, vfs.NewMemFS(), b, clk)
		defer rebuilt.store.Close()
		checkExactlyOnce(t, readAll(t, rebuilt.store), acked, "rebuilt from the bucket alone")
		if got := len(readAll(t, rebuilt.store)); got != len(acked) {
			t.Fatalf("rebuilt store has %d rows, %d were acked", got, len(acked))
		}
	})
}
