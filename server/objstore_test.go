package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

// TestObjectStoreUploadsOnShutdown pushes rows, shuts down gracefully and
// finds the flushed segment in the bucket's manifest, byte-identical to the
// local file, with the seq range and producer marks a rebuild needs.
func TestObjectStoreUploadsOnShutdown(t *testing.T) {
	fsys, clk, bucket := vfs.NewMemFS(), clock.NewFake(epoch), objstore.NewMemBucket("logs")
	bucket.Clock = clk
	run := func(rows ...string) {
		srv, err := New(Config{FS: fsys, Clock: clk, DataDir: "/data", Cluster: "home", ObjectStore: ObjectStoreConfig{Bucket: bucket}})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		st, _ := srv.store()
		var in []store.Row
		for _, r := range rows {
			in = append(in, store.Row{Key: "/job/a", Data: r, EpochMS: 1000})
		}
		if _, err := st.Append(context.Background(), store.Batch{Rows: in}); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run("one", "two", "three")
	m, err := objstore.LoadManifest(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 1 || m.Entries[0].First != 1 || m.Entries[0].Last != 3 || m.Entries[0].Rows != 3 {
		t.Fatalf("bucket manifest after the first shutdown = %+v", m.Entries)
	}
	run("four")
	m, _ = objstore.LoadManifest(context.Background(), bucket)
	if m.HighestSeq() != 4 || !m.Covers(1, 3) || !m.Covers(4, 4) {
		t.Fatalf("bucket manifest after the second shutdown = %+v", m.Entries)
	}
	local, err := store.ListSegments(fsys, "/data/store")
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range local {
		e, ok := m.FindSegment(sg.Name)
		if !ok {
			continue // merged away since
		}
		data, _ := vfs.ReadFile(fsys, sg.Path)
		rc, err := bucket.GetRange(context.Background(), e.Object, 0, e.Size)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, e.Size+1)
		n, _ := rc.Read(buf)
		rc.Close()
		if string(buf[:n]) != string(data) {
			t.Fatalf("object %s differs from local segment %s", e.Object, sg.Name)
		}
	}
}

func TestObjectStoreConfigErrors(t *testing.T) {
	fsys := vfs.NewMemFS()
	for _, tc := range []struct {
		cfg  ObjectStoreConfig
		want string
	}{
		{ObjectStoreConfig{URL: "http://bucket"}, "scheme must be s3://"},
		{ObjectStoreConfig{URL: "s3://logs", CredentialsFile: "/nope"}, "--object-store-credentials-file"},
	} {
		_, err := New(Config{FS: fsys, DataDir: "/data", ObjectStore: tc.cfg})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestObjectStoreDownIngestContinues: with the bucket refusing every
// request, appends are still acknowledged and durable locally; shutdown
// reports the pending uploads naming the bucket instead of hanging.
func TestObjectStoreDownIngestContinues(t *testing.T) {
	fsys, clk, bucket := vfs.NewMemFS(), clock.NewFake(epoch), objstore.NewMemBucket("logs")
	// A first start records an (empty) manifest locally; from then on the
	// daemon starts without the bucket.
	srv, err := New(Config{FS: fsys, Clock: clk, DataDir: "/data", ObjectStore: ObjectStoreConfig{Bucket: bucket}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := srv.store()
	st.Append(context.Background(), store.Batch{Rows: []store.Row{{Key: "k", Data: "first"}}})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	bucket.Fault = func(objstore.Op, string) objstore.Fault { return objstore.FaultSlowDown }
	srv, err = New(Config{FS: fsys, Clock: clk, DataDir: "/data", ShutdownTimeout: 100 * time.Millisecond, ObjectStore: ObjectStoreConfig{Bucket: bucket}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatalf("start with the bucket down: %v", err)
	}
	st, _ = srv.store()
	if _, err := st.Append(context.Background(), store.Batch{Rows: []store.Row{{Key: "k", Data: "while down"}}}); err != nil {
		t.Fatalf("append with the bucket down: %v", err)
	}
	err = srv.Close()
	if err == nil || !strings.Contains(err.Error(), "mem://logs") || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("close with the bucket down: %v, want pending uploads naming the bucket", err)
	}
	bucket.Fault = nil
	s, err := store.Open(store.Options{FS: fsys, Clock: clk, Dir: "/data/store"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Fetch(context.Background(), store.Query{Source: "k", Scope: store.ScopeExact})
	if err != nil || len(res.Rows) != 2 {
		t.Fatalf("rows after the outage: %v, %v", res.Rows, err)
	}
}
