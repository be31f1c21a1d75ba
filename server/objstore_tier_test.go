package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/storeerr"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

// faultSwitch is a bucket fault a test flips while the tier's goroutine
// runs.
type faultSwitch struct{ v atomic.Int32 }

func (f *faultSwitch) install(b *objstore.MemBucket) {
	b.Fault = func(objstore.Op, string) objstore.Fault { return objstore.Fault(f.v.Load()) }
}

func (f *faultSwitch) set(x objstore.Fault) { f.v.Store(int32(x)) }

type tierEnv struct {
	srv *Server
	st  *store.Store
}

func openTierServer(t *testing.T, fsys vfs.FS, clk clock.Clock, b objstore.Bucket, oc ObjectStoreConfig) tierEnv {
	t.Helper()
	oc.Bucket = b
	oc.ScanInterval = time.Hour // the test drives rounds itself
	srv, err := New(Config{FS: fsys, Clock: clk, DataDir: "/data", ShutdownTimeout: 2 * time.Second, ObjectStore: oc})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := srv.store()
	return tierEnv{srv: srv, st: st.(*store.Store)}
}

func fetchAll(t *testing.T, st *store.Store) ([]string, error) {
	t.Helper()
	res, err := st.Fetch(context.Background(), store.Query{Source: "/job/", Scope: store.ScopePrefix, MaxLines: store.MaxMaxLines})
	var out []string
	for _, r := range res.Rows {
		out = append(out, fmt.Sprintf("%d:%s", r.Seq, r.Data))
	}
	return out, err
}

// TestTierEvictReadRecover: segments uploaded and evicted locally are read
// back from the bucket; with the bucket down such a read is unavailable
// naming the bucket; a new daemon on an empty data dir serves every
// uploaded row, continues the seqs, and still drops a re-sent batch.
func TestTierEvictReadRecover(t *testing.T) {
	ctx := context.Background()
	clk, bucket := clock.NewFake(epoch), objstore.NewMemBucket("logs")
	bucket.Clock = clk
	var fault faultSwitch
	fault.install(bucket)
	fsys := vfs.NewMemFS()
	e := openTierServer(t, fsys, clk, bucket, ObjectStoreConfig{LocalRetentionBytes: 1})
	var want []string
	for b := 0; b < 3; b++ {
		var rows []store.Row
		for i := 0; i < 50; i++ {
			rows = append(rows, store.Row{Seq: int64(b*50 + i + 1), Key: fmt.Sprintf("/job/%d", i%3), Data: fmt.Sprintf("b%d-r%d", b, i), EpochMS: 1000})
		}
		ack, err := e.st.Append(ctx, store.Batch{Producer: "east", Rows: rows})
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
	if err := e.srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	if local, _ := store.ListSegments(fsys, "/data/store"); len(local) != 0 {
		t.Fatalf("%d segments still local after eviction with --local-retention-bytes 1", len(local))
	}
	got, err := fetchAll(t, e.st)
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("read of evicted segments: err %v\n got %v\nwant %v", err, got, want)
	}

	fault.set(objstore.FaultDown)
	_, err = fetchAll(t, e.st)
	var ce *connect.Error
	if !errors.As(storeerr.ToConnect("fetch", err), &ce) || ce.Code() != connect.CodeUnavailable || !strings.Contains(err.Error(), "mem://logs") {
		t.Fatalf("read of a remote-only segment with the bucket down: %v, want unavailable naming the bucket", err)
	}
	fault.set(objstore.FaultNone)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}

	// The local disk is gone: rebuild from the bucket alone.
	r := openTierServer(t, vfs.NewMemFS(), clk, bucket, ObjectStoreConfig{})
	defer r.srv.Close()
	got, err = fetchAll(t, r.st)
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("rebuilt from the bucket: err %v\n got %v\nwant %v", err, got, want)
	}
	if r.st.LastSeq() != 150 {
		t.Fatalf("rebuilt store's last seq = %d, want 150", r.st.LastSeq())
	}
	if mark, ok := r.st.ProducerApplied("east"); !ok || mark != 150 {
		t.Fatalf("producer mark after rebuild = %d, %v; want 150", mark, ok)
	}
	ack, err := r.st.Append(ctx, store.Batch{Producer: "east", Rows: []store.Row{{Seq: 150, Key: "/job/0", Data: "re-sent"}}})
	if err != nil || ack.Last != 0 {
		t.Fatalf("re-sent batch after rebuild: ack %+v err %v, want it dropped", ack, err)
	}
	ack, err = r.st.Append(ctx, store.Batch{Rows: []store.Row{{Key: "/job/0", Data: "new"}}})
	if err != nil || ack.First != 151 {
		t.Fatalf("first append after rebuild: %+v %v, want seq 151", ack, err)
	}
}

// TestTierDiskFullNamesTheBucket: the bucket refuses uploads, segments pile
// up locally, and when the disk fills a push fails with a retryable
// resource_exhausted that names the bucket, not a silent drop.
func TestTierDiskFullNamesTheBucket(t *testing.T) {
	ctx := context.Background()
	clk, bucket := clock.NewFake(epoch), objstore.NewMemBucket("logs")
	bucket.Clock = clk
	var fault faultSwitch
	fault.install(bucket)
	var full atomic.Bool
	fsys := vfs.NewMemFS()
	fsys.Inject = func(op vfs.Op, name string) error {
		if full.Load() && op == vfs.OpWrite && strings.HasPrefix(name, "/data/store/") {
			return vfs.ErrNoSpace
		}
		return nil
	}
	e := openTierServer(t, fsys, clk, bucket, ObjectStoreConfig{})
	fault.set(objstore.FaultSlowDown)
	if _, err := e.st.Append(ctx, store.Batch{Rows: []store.Row{{Key: "/job/a", Data: "sealed"}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e.srv.tier.round(ctx)
	full.Store(true)
	_, err := e.st.Append(ctx, store.Batch{Rows: []store.Row{{Key: "/job/a", Data: "no room"}}})
	full.Store(false)
	var ce *connect.Error
	if !errors.As(e.srv.storeError("push", err), &ce) || ce.Code() != connect.CodeResourceExhausted ||
		!strings.Contains(ce.Message(), "mem://logs") || !strings.Contains(ce.Message(), "SlowDown") {
		t.Fatalf("push on a full disk with the bucket refusing: %v", e.srv.storeError("push", err))
	}
	fault.set(objstore.FaultNone)
	clk.Advance(10 * time.Minute) // past the backoff
	if err := e.srv.Close(); err != nil {
		t.Fatalf("close once the bucket is back: %v", err)
	}
	if m, _ := objstore.LoadManifest(ctx, bucket); !m.Covers(1, 1) {
		t.Fatalf("the waiting segment was not uploaded at shutdown: %+v", m.Entries)
	}
}

// TestTierRetentionDeletesFromBucket: --retention-age deletes a segment
// everywhere: locally by the store, then from the manifest and the bucket.
func TestTierRetentionDeletesFromBucket(t *testing.T) {
	ctx := context.Background()
	clk, bucket := clock.NewFake(epoch), objstore.NewMemBucket("logs")
	bucket.Clock = clk
	fsys := vfs.NewMemFS()
	oc := ObjectStoreConfig{Bucket: bucket, ScanInterval: time.Hour}
	srv, err := New(Config{FS: fsys, Clock: clk, DataDir: "/data", RetentionAge: time.Hour, ShutdownTimeout: 2 * time.Second, ObjectStore: oc})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ls, _ := srv.store()
	st := ls.(*store.Store)
	if _, err := st.Append(ctx, store.Batch{Rows: []store.Row{{Key: "/job/a", Data: "old"}}}); err != nil {
		t.Fatal(err)
	}
	st.Flush(ctx)
	if err := srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	m, _ := objstore.LoadManifest(ctx, bucket)
	if len(m.Entries) != 1 {
		t.Fatalf("not uploaded: %+v", m.Entries)
	}
	object := m.Entries[0].Object
	clk.Advance(2 * time.Hour)
	if err := st.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	m, _ = objstore.LoadManifest(ctx, bucket)
	if len(m.Entries) != 0 {
		t.Fatalf("retention left %+v in the bucket's manifest", m.Entries)
	}
	if _, err := bucket.Stat(ctx, object); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("retained segment's object still in the bucket: %v", err)
	}
}
