package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

// TestReplicaAdoptsSegmentsIntoItsObjectTier: a replica finelogd adopts
// the primary's flushed segment instead of writing its own (the metric
// says so), and its object tier uploads the adopted segment with the
// producer marks as of it, as it would one of its own.
func TestReplicaAdoptsSegmentsIntoItsObjectTier(t *testing.T) {
	ctx := context.Background()
	p := peerPrimary(t, 0)
	bucket := objstore.NewMemBucket("logs")
	r := newTestServer(t, func(c *Config) {
		c.Peer = PeerConfig{ReplicaOf: p.srv.PeerAddr().String(), PSKEnv: auth.Secret(testPeerPSK), NodeName: "r"}
		c.ObjectStore = ObjectStoreConfig{Bucket: bucket, ScanInterval: time.Hour}
	})
	bucket.Clock = r.clk
	ps, _ := p.srv.store()
	rs, _ := r.srv.store()
	prim, rep := ps.(*store.Store), rs.(*store.Store)
	for i := range 3 {
		a, b := entry("a"), entry("b")
		a.Seq, b.Seq = int64(2*i+1), int64(2*i+2)
		if _, err := p.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/job/a", Entries: []*loggingpb.LogEntry{a, b},
			Producer: "relay-1", FirstSeq: int64(2*i + 1), LastSeq: int64(2*i + 2)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := prim.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A record after the flush: the link ships the segment once it has
	// sent it (an idle link would at its next beat, on a clock nothing
	// advances here).
	if _, err := p.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/job/a", Entries: []*loggingpb.LogEntry{entry("c")}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(metricsBody(t, r), `finelog_replica_segments_total{result="adopted"} 1`) {
		if time.Now().After(deadline) {
			t.Fatalf("the replica adopted no segment; replica stats %+v", rep.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := rep.Stats(); st.Segments != 1 || st.SegmentRows != 6 {
		t.Fatalf("replica after adopting: %+v", st)
	}
	if !strings.Contains(metricsBody(t, p), `finelog_replica_segments_total{result="sent"} 1`) {
		t.Fatal("the primary does not count the segment it sent")
	}
	if err := r.srv.tier.round(ctx); err != nil {
		t.Fatal(err)
	}
	infos, err := store.ListSegments(r.fs, "/data/store")
	if err != nil || len(infos) != 1 {
		t.Fatalf("replica segments on disk: %+v %v", infos, err)
	}
	m := r.srv.tier.tier.Manifest()
	if _, ok := m.FindSegment(infos[0].Name); !ok {
		t.Fatalf("the adopted segment %s is not in the replica's bucket manifest", infos[0].Name)
	}
	if _, ok := m.Files["producers.json"]; !ok {
		t.Fatal("the replica's manifest has no producer marks for the adopted segment")
	}
	if mark, ok := rep.ProducerApplied("relay-1"); !ok || mark != 6 {
		t.Fatalf("replica's mark for relay-1: %d %v, want 6", mark, ok)
	}
}

func metricsBody(t *testing.T, e *testEnv) string {
	t.Helper()
	_, body := adminCall(t, e, "GET", "/metrics")
	return body
}
