package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/store"
)

// A replica started with --retention-bytes deletes nothing while it
// follows (its floor is the primary's); once promoted, its retention runs.
func TestReplicaRetentionOnlyAfterPromotion(t *testing.T) {
	ctx := context.Background()
	p := peerPrimary(t, 1)
	r := newTestServer(t, func(c *Config) {
		c.Peer = PeerConfig{ReplicaOf: p.srv.PeerAddr().String(), PSKEnv: auth.Secret(testPeerPSK), NodeName: "r"}
		c.RetentionBytes = 1
	})
	_, err := p.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("a"), entry("b")}})
	for i := 0; err != nil && i < 50; i++ { // the replica may still be subscribing
		time.Sleep(20 * time.Millisecond)
		_, err = p.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("a"), entry("b")}})
	}
	if err != nil {
		t.Fatalf("push with a replica: %v", err)
	}
	st := r.srv.st.Load().s.(*store.Store)
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if s := st.Stats(); s.Segments != 1 || s.FirstSeq != 1 {
		t.Fatalf("a following replica applied its own --retention-bytes: %+v", s)
	}
	if code, body := adminCall(t, r, http.MethodPost, "/replica/promote?force=true"); code != 200 {
		t.Fatalf("forced promote: %d %s", code, body)
	}
	if err := st.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if s := st.Stats(); s.Segments != 0 {
		t.Fatalf("a promoted replica's --retention-bytes deleted nothing: %+v", s)
	}
}
