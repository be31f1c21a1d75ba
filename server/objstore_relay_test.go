package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

// switchableTarget answers 503 until it is pointed at a real handler: a
// relay target that is down, then comes back.
type switchableTarget struct{ h atomic.Pointer[http.Handler] }

func (s *switchableTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	http.Error(w, "target down", http.StatusServiceUnavailable)
}

// TestTierKeepsUnforwardedRows: with an object store, a relay whose target
// is down, --local-retention-bytes evicting every uploaded segment and
// --retention-age past every row, nothing the relay has not forwarded is
// deleted locally or in the bucket; the relay forwards the evicted rows
// (read from the bucket) once the target is back, and only then does
// retention delete them everywhere.
func TestTierKeepsUnforwardedRows(t *testing.T) {
	ctx := context.Background()
	target := newTestServer(t, func(c *Config) { c.Cluster = "global" })
	var sw switchableTarget
	front := httptest.NewServer(&sw)
	defer front.Close()

	clk, bucket := clock.NewFake(epoch), objstore.NewMemBucket("logs")
	bucket.Clock = clk
	fsys := vfs.NewMemFS()
	srv, err := New(Config{FS: fsys, Clock: clk, DataDir: "/data", Cluster: "east", RetentionAge: time.Hour,
		ShutdownTimeout: 2 * time.Second,
		ObjectStore:     ObjectStoreConfig{Bucket: bucket, ScanInterval: time.Hour, LocalRetentionBytes: 1},
		Relay:           RelayConfig{Address: front.URL, Options: relay.Options{Backfill: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ls, _ := srv.store()
	st := ls.(*store.Store)

	const batches, perBatch = 3, 20
	for b := 0; b < batches; b++ {
		var rows []store.Row
		for i := 0; i < perBatch; i++ {
			rows = append(rows, store.Row{Key: "/job/a", Data: fmt.Sprintf("b%d-r%d", b, i), EpochMS: epoch.UnixMilli()})
		}
		if _, err := st.Append(ctx, store.Batch{Rows: rows}); err != nil {
			t.Fatal(err)
		}
		if err := st.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	if local, _ := store.ListSegments(fsys, "/data/store"); len(local) != 0 {
		t.Fatalf("%d segments still local; --local-retention-bytes 1 should evict every uploaded one", len(local))
	}

	// Far past --retention-age, target still down: retention must keep it all.
	clk.Advance(3 * time.Hour)
	if err := st.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := fetchAll(t, st); len(got) != batches*perBatch {
		t.Fatalf("retention with the relay's target down left %d rows, want %d (none forwarded)", len(got), batches*perBatch)
	}
	if m, _ := objstore.LoadManifest(ctx, bucket); !manifestHoldsEvery(m, 1, batches*perBatch) {
		t.Fatalf("the bucket's manifest lost unforwarded rows: %+v", m.Entries)
	}

	// The target comes back: the relay reads the evicted rows from the bucket.
	h := target.srv.Handler()
	sw.h.Store(&h)
	waitFor(t, "every row at the target", func() bool {
		clk.Advance(time.Second)
		resp, err := target.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/job/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, MaxLines: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Entries) == batches*perBatch
	})
	resp, _ := target.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/job/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, MaxLines: 1000})
	for i, e := range resp.Entries {
		if want := fmt.Sprintf("b%d-r%d", i/perBatch, i%perBatch); e.Data != want {
			t.Fatalf("target row %d = %q, want %q", i, e.Data, want)
		}
	}

	// Forwarded: now retention deletes them, locally and in the bucket.
	waitFor(t, "retention to delete the forwarded rows from the bucket", func() bool {
		clk.Advance(time.Second)
		if err := st.Retain(ctx); err != nil {
			t.Fatal(err)
		}
		if err := srv.tier.round(ctx); err != nil {
			t.Fatal(err)
		}
		m, _ := objstore.LoadManifest(ctx, bucket)
		return len(m.Entries) == 0
	})
	for _, n := range bucket.Names() {
		if len(n) > 9 && n[:9] == "segments/" {
			t.Fatalf("forwarded and retained segment %s still in the bucket", n)
		}
	}
}

// manifestHoldsEvery reports whether m's entries together hold every seq of
// [first, last].
func manifestHoldsEvery(m objstore.Manifest, first, last int64) bool {
	for seq := first; seq <= last; seq++ {
		if !m.Covers(seq, seq) {
			return false
		}
	}
	return true
}
