package objstore_test

import (
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

var benchRows = flag.Int("objstore.rows", 1_000_000, "rows in the tiered-read benchmark's store")

type tieredBench struct {
	local, remote *store.Store
	cache         *objstore.Cache
	writeSecs     float64
	uploadSecs    float64
	bytes         int64
}

var tb *tieredBench

// setupTiered writes the same rows into two stores on the OS filesystem:
// one keeps its segments local, the other has uploaded them to an S3
// server on loopback (gofakes3 through minio-go) and evicted every local
// copy, so its reads are ranged GETs through the cache.
func setupTiered(b *testing.B) *tieredBench {
	if tb != nil {
		return tb
	}
	ctx := context.Background()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	b.Cleanup(srv.Close)
	loc, _ := objstore.ParseLocation("s3://bench/finelog?endpoint=" + srv.URL)
	bucket, err := objstore.OpenS3(loc, objstore.Credentials{AccessKeyID: "k", SecretAccessKey: objstore.NewSecret("benchsecret")}, objstore.S3Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := bucket.MakeBucket(ctx); err != nil {
		b.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "objstore-bench-")
	b.Cleanup(func() { os.RemoveAll(dir) })
	fsys := vfs.OS{}
	clk := clock.Real{}
	write := func(d string, sfs vfs.FS) (*store.Store, time.Duration) {
		st, err := store.Open(store.Options{FS: sfs, Clock: clk, Dir: d})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		const batch = 1000
		for i := 0; i < *benchRows; i += batch {
			rows := make([]store.Row, 0, batch)
			for j := i; j < i+batch && j < *benchRows; j++ {
				data := fmt.Sprintf("request %d served in %dms status=200 path=/api/v1/items/%d", j, j%997, j%10007)
				if j == *benchRows/3 {
					data = "rare-needle-xyzzy " + data
				}
				rows = append(rows, store.Row{Key: fmt.Sprintf("/user/job-%d/task-0", j%100), Data: data, EpochMS: 1_700_000_000_000 + int64(j)})
			}
			if _, err := st.Append(ctx, store.Batch{Rows: rows}); err != nil {
				b.Fatal(err)
			}
		}
		if err := st.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := st.Compact(ctx); err != nil {
			b.Fatal(err)
		}
		return st, time.Since(start)
	}
	local, writeDur := write(dir+"/local/store", fsys)

	tier, err := objstore.OpenTier(ctx, objstore.TierOptions{FS: fsys, Dir: dir + "/remote/objstore", Bucket: bucket, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	cache, err := objstore.OpenCache(fsys, dir+"/remote/objcache", 1<<30, nil)
	if err != nil {
		b.Fatal(err)
	}
	tfs := objstore.NewTierFS(objstore.TierFSOptions{Local: fsys, Dir: dir + "/remote/store", IsSegment: store.IsSegmentName,
		Describe: describe, Tier: tier, Cache: cache})
	remote, _ := write(dir+"/remote/store", tfs)
	segs, _ := store.ListSegments(fsys, dir+"/remote/store")
	var total int64
	for _, sg := range segs {
		s, _ := describe(fsys, sg.Path)
		tier.Sealed(s)
		total += sg.Size
	}
	start := time.Now()
	if err := tier.Drain(ctx); err != nil {
		b.Fatal(err)
	}
	upload := time.Since(start)
	for _, sg := range segs {
		if err := tfs.Evict(sg.Name); err != nil {
			b.Fatal(err)
		}
	}
	// Reopen so the store's handles are remote from the start.
	remote.Close()
	if remote, err = store.Open(store.Options{FS: tfs, Clock: clk, Dir: dir + "/remote/store"}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { local.Close(); remote.Close() })
	tb = &tieredBench{local: local, remote: remote, cache: cache, writeSecs: writeDur.Seconds(), uploadSecs: upload.Seconds(), bytes: total}
	return tb
}

// BenchmarkTieredReads: tail-1000 of one key and a rare-substring read,
// on local segments and on remote-only ones with a cold and a warm cache.
// Run: go test ./objstore -run '^$' -bench TieredReads -benchtime 20x -objstore.rows 5000000
func BenchmarkTieredReads(b *testing.B) {
	t := setupTiered(b)
	b.Logf("%d rows, %d segment bytes: write+flush+compact %.2fs (%.1f MB/s of segment), upload %.2fs (%.1f MB/s): upload/write speed ratio %.2f",
		*benchRows, t.bytes, t.writeSecs, float64(t.bytes)/t.writeSecs/1e6, t.uploadSecs, float64(t.bytes)/t.uploadSecs/1e6, t.writeSecs/t.uploadSecs)
	tail := store.Query{Source: "/user/job-7/task-0", Scope: store.ScopeExact, Tail: true, MaxLines: 1000}
	rare := store.Query{Source: "/user/", Scope: store.ScopePrefix, Substring: "rare-needle-xyzzy", MaxLines: 1000}
	for _, q := range []struct {
		name  string
		query store.Query
		want  int
	}{{"tail1000", tail, 1000}, {"rare-substring", rare, 1}} {
		for _, mode := range []string{"local", "remote-cold", "remote-warm"} {
			b.Run(q.name+"/"+mode, func(b *testing.B) {
				st := t.local
				if mode != "local" {
					st = t.remote
				}
				if mode == "remote-warm" {
					st.Fetch(context.Background(), q.query)
				}
				for i := 0; i < b.N; i++ {
					if mode == "remote-cold" {
						b.StopTimer()
						t.cache.Clear()
						b.StartTimer()
					}
					res, err := st.Fetch(context.Background(), q.query)
					if err != nil || len(res.Rows) != q.want {
						b.Fatalf("%d rows, err %v; want %d", len(res.Rows), err, q.want)
					}
				}
			})
		}
	}
}
