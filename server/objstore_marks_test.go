package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

func producerRows(from, to int64, tag string) []store.Row {
	var rows []store.Row
	for s := from; s <= to; s++ {
		rows = append(rows, store.Row{Seq: s, Key: "/job/a", Data: fmt.Sprintf("%s-%d", tag, s), EpochMS: 1000})
	}
	return rows
}

// TestTierMarksTravelWithTheirSegment: the worst point for the producer
// marks is a flushed segment renamed into place whose producers.json is
// not written yet. The tier must not put that segment in the bucket's
// manifest without marks covering it; the local disk then dies, and a
// store rebuilt from the bucket alone drops a relay's re-sent batch of
// every uploaded row and keeps every row exactly once.
func TestTierMarksTravelWithTheirSegment(t *testing.T) {
	ctx := context.Background()
	clk, bucket := clock.NewFake(epoch), objstore.NewMemBucket("logs")
	bucket.Clock = clk
	fsys := vfs.NewMemFS()
	var cut atomic.Bool
	fsys.Inject = func(op vfs.Op, name string) error {
		if cut.Load() && op == vfs.OpRename && strings.HasSuffix(name, "/"+store.ProducersFile) {
			return errors.New("power cut before producers.json landed")
		}
		return nil
	}
	e := openTierServer(t, fsys, clk, bucket, ObjectStoreConfig{})
	if _, err := e.st.Append(ctx, store.Batch{Producer: "east", Rows: producerRows(1, 50, "a")}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Append(ctx, store.Batch{Producer: "east", Rows: producerRows(51, 100, "b")}); err != nil {
		t.Fatal(err)
	}
	cut.Store(true)
	if err := e.st.Flush(ctx); err == nil {
		t.Fatal("flush wrote producers.json through the injected cut")
	}
	if segs, _ := store.ListSegments(fsys, "/data/store"); len(segs) != 2 {
		t.Fatalf("want the second segment in place before the cut, have %d segments", len(segs))
	}
	// The tier runs at the worst point: segment durable, marks not.
	e.srv.tier.round(ctx)
	e.srv.tier.round(ctx)
	m, err := objstore.LoadManifest(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if m.Covers(51, 100) {
		t.Fatalf("the bucket's manifest names seqs 51-100 before producers.json covers them: %+v", m.Entries)
	}
	if !m.Covers(1, 50) {
		t.Fatalf("the first segment is not in the bucket: %+v", m.Entries)
	}
	if _, waiting := e.srv.tier.tier.Lag(); waiting == 0 {
		t.Fatal("the held-back segment is not counted in the upload lag")
	}
	uploaded := m.HighestSeq()
	e.st.Abandon()
	e.srv.tier.close(0)

	// The disk is gone: rebuild from the bucket alone.
	r := openTierServer(t, vfs.NewMemFS(), clk, bucket, ObjectStoreConfig{})
	defer r.srv.Close()
	mark, ok := r.st.ProducerApplied("east")
	if !ok || mark < uploaded {
		t.Fatalf("rebuilt producer mark %d (known %v) is below the highest uploaded row %d", mark, ok, uploaded)
	}
	// The relay re-sends everything it never saw acked durably elsewhere.
	if _, err := r.st.Append(ctx, store.Batch{Producer: "east", Rows: producerRows(1, 100, "resent")}); err != nil {
		t.Fatal(err)
	}
	got, err := fetchAll(t, r.st)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, g := range got {
		_, data, _ := strings.Cut(g, ":")
		seen[data[strings.Index(data, "-")+1:]]++
	}
	for s := 1; s <= 100; s++ {
		if n := seen[fmt.Sprint(s)]; n != 1 {
			t.Fatalf("producer row %d stored %d times after rebuild and re-send, want once; rows %v", s, n, got)
		}
	}
}

// TestTierUploadsOnceMarksLand: a segment held back for its marks is
// uploaded by the next flush that writes them, even with no new rows.
func TestTierUploadsOnceMarksLand(t *testing.T) {
	ctx := context.Background()
	clk, bucket := clock.NewFake(epoch), objstore.NewMemBucket("logs")
	bucket.Clock = clk
	fsys := vfs.NewMemFS()
	var cut atomic.Bool
	fsys.Inject = func(op vfs.Op, name string) error {
		if cut.Load() && op == vfs.OpRename && strings.HasSuffix(name, "/"+store.ProducersFile) {
			return vfs.ErrNoSpace
		}
		return nil
	}
	e := openTierServer(t, fsys, clk, bucket, ObjectStoreConfig{})
	defer e.srv.Close()
	if _, err := e.st.Append(ctx, store.Batch{Producer: "east", Rows: producerRows(1, 10, "a")}); err != nil {
		t.Fatal(err)
	}
	cut.Store(true)
	if err := e.st.Flush(ctx); err == nil {
		t.Fatal("flush wrote producers.json through the injected ENOSPC")
	}
	e.srv.tier.round(ctx)
	if m, _ := objstore.LoadManifest(ctx, bucket); m.Covers(1, 10) {
		t.Fatal("uploaded without its marks")
	}
	cut.Store(false)
	if err := e.st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	m, _ := objstore.LoadManifest(ctx, bucket)
	if !m.Covers(1, 10) {
		t.Fatalf("segment not uploaded once producers.json was written: %+v", m.Entries)
	}
	asOf, err := store.ProducersAsOf(m.Files[store.ProducersFile])
	if err != nil || asOf < 10 {
		t.Fatalf("manifest's producers.json is as of %d (%v), want at least 10", asOf, err)
	}
}
