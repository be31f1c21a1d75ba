package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/storeerr"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

// TestTierRestartsWithBucketDown: a daemon whose segments were all evicted
// restarts while the bucket refuses every request: the store opens from
// the open stubs kept at eviction, takes appends and serves them; a read of
// remote rows is unavailable naming the bucket until it is back, and then
// returns every row. Retention of a segment removes its stub.
func TestTierRestartsWithBucketDown(t *testing.T) {
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
		for i := 0; i < 30; i++ {
			rows = append(rows, store.Row{Key: fmt.Sprintf("/job/%d", i%2), Data: fmt.Sprintf("b%d-%d", b, i), EpochMS: 1000})
		}
		ack, err := e.st.Append(ctx, store.Batch{Rows: rows})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rows {
			want = append(want, fmt.Sprintf("%d:%s", ack.First+int64(i), r.Data))
		}
		e.st.Flush(ctx)
	}
	if err := e.srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	if local, _ := store.ListSegments(fsys, "/data/store"); len(local) != 0 {
		t.Fatalf("%d segments still local", len(local))
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}

	fault.set(objstore.FaultDown)
	r := openTierServer(t, fsys, clk, bucket, ObjectStoreConfig{LocalRetentionBytes: 1})
	ack, err := r.st.Append(ctx, store.Batch{Rows: []store.Row{{Key: "/job/new", Data: "while the bucket is down", EpochMS: 1000}}})
	if err != nil || ack.First != 91 {
		t.Fatalf("append after a restart with the bucket down: %+v %v, want seq 91", ack, err)
	}
	res, err := r.st.Fetch(ctx, store.Query{Source: "/job/new", Scope: store.ScopeExact, MaxLines: 10})
	if err != nil || len(res.Rows) != 1 {
		t.Fatalf("read of the new local row with the bucket down: %v %v", res.Rows, err)
	}
	_, err = fetchAll(t, r.st)
	var ce *connect.Error
	if !errors.As(storeerr.ToConnect("fetch", err), &ce) || ce.Code() != connect.CodeUnavailable || !strings.Contains(err.Error(), "mem://logs") {
		t.Fatalf("read of remote rows with the bucket down: %v, want unavailable naming the bucket", err)
	}
	fault.set(objstore.FaultNone)
	got, err := fetchAll(t, r.st)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "91:while the bucket is down")
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("once the bucket is back:\n got %v\nwant %v", got, want)
	}
	stubs, _ := fsys.List("/data/objstore/stubs")
	if len(stubs) != 3 {
		t.Fatalf("open stubs %v, want one per evicted segment", stubs)
	}
	clk.Advance(10 * time.Minute) // past the backoff the outage caused
	if err := r.srv.Close(); err != nil {
		t.Fatal(err)
	}

	// Retention deletes the old segments everywhere, stubs included.
	srv, err := New(Config{FS: fsys, Clock: clk, DataDir: "/data", RetentionAge: time.Hour, ShutdownTimeout: 2 * time.Second,
		ObjectStore: ObjectStoreConfig{Bucket: bucket, ScanInterval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	clk.Advance(2 * time.Hour)
	ls, _ := srv.store()
	if err := ls.(*store.Store).Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if stubs, _ := fsys.List("/data/objstore/stubs"); len(stubs) != 0 {
		t.Fatalf("open stubs %v left after retention deleted their segments", stubs)
	}
}
