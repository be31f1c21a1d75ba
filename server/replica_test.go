package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/auth"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/vfs"
)

const testPeerPSK = "server-test-peer-psk-0123456789abcdef"

func peerPrimary(t *testing.T, acks int) *testEnv {
	return newTestServer(t, func(c *Config) {
		c.Peer = PeerConfig{Listen: "127.0.0.1:0", PSKEnv: auth.Secret(testPeerPSK), NodeName: "p", MinReplicaAcks: acks, AckTimeout: time.Second}
	})
}

func peerReplica(t *testing.T, primary *testEnv) *testEnv {
	return newTestServer(t, func(c *Config) {
		c.Peer = PeerConfig{ReplicaOf: primary.srv.PeerAddr().String(), PSKEnv: auth.Secret(testPeerPSK), NodeName: "r"}
	})
}

func adminCall(t *testing.T, e *testEnv, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.http.URL+path, nil)
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReplicaServerFollowRefusePromote(t *testing.T) {
	ctx := context.Background()
	p := peerPrimary(t, 1)
	// No replica yet: the push is durable on the primary but not acked.
	err := pushPastAckTimeout(t, p, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("a")}})
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("push without a replica: %v, want unavailable", err)
	}
	r := peerReplica(t, p)
	// The ack waits (on the fake clock, which nothing advances) until the
	// replica has subscribed and synced the row.
	resp, err := p.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("b")}})
	if err != nil {
		t.Fatalf("push with a replica: %v", err)
	}
	// Acked means on the replica: readable there at once, same seq.
	got, err := r.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/k", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Cursor: resp.GetFirstSeq() - 1})
	if err != nil || len(got.Entries) == 0 || got.Entries[0].GetData() != "b" || got.Entries[0].GetSeq() != resp.GetFirstSeq() {
		t.Fatalf("replica read after the ack: %v %v", got, err)
	}
	_, err = r.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("c")}})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), p.srv.PeerAddr().String()) {
		t.Fatalf("push to the replica: %v, want failed_precondition naming the primary", err)
	}

	code, body := adminCall(t, r, http.MethodGet, "/replica/status")
	var st ReplicaStatus
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Role != "replica" || st.Following == nil || !st.Following.Connected {
		t.Fatalf("replica status: %d %s", code, body)
	}
	code, body = adminCall(t, p, http.MethodGet, "/replica/status")
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Role != "primary" || len(st.Replicas) != 1 || st.Replicas[0].SyncedSeq != resp.GetLastSeq() {
		t.Fatalf("primary status: %d %s", code, body)
	}
	code, body = adminCall(t, p, http.MethodGet, "/metrics")
	for _, series := range []string{`finelog_peer_handshakes_total{result="ok",role="acceptor"} 1`, "finelog_replicas_connected 1", "finelog_replica_lag_rows 0", `finelog_peer_frames_total{direction="sent"}`} {
		if !strings.Contains(body, series) {
			t.Errorf("primary /metrics lacks %q", series)
		}
	}

	// The primary is up: promotion needs --force.
	code, body = adminCall(t, r, http.MethodPost, "/replica/promote")
	if code != http.StatusConflict || !strings.Contains(body, "still reachable") {
		t.Fatalf("promote while the primary is up: %d %s", code, body)
	}
	code, body = adminCall(t, r, http.MethodPost, "/replica/promote?force=true")
	if code != 200 {
		t.Fatalf("forced promote: %d %s", code, body)
	}
	after, err := r.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("d")}})
	if err != nil || after.GetFirstSeq() != resp.GetLastSeq()+1 {
		t.Fatalf("push after promotion: %v %v, want seq %d", after, err, resp.GetLastSeq()+1)
	}
	code, body = adminCall(t, p, http.MethodPost, "/replica/promote")
	if code != http.StatusConflict || !strings.Contains(body, "not a replica") {
		t.Fatalf("promote on a primary: %d %s", code, body)
	}
}

func TestPeerConfigStartErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer PeerConfig
		want string
	}{
		{"no psk", PeerConfig{Listen: "127.0.0.1:0"}, "no peer PSK"},
		{"short psk", PeerConfig{Listen: "127.0.0.1:0", PSKEnv: auth.Secret("short-secret")}, "12 bytes, need at least 32"},
		{"acks without listen", PeerConfig{ReplicaOf: "127.0.0.1:1", PSKEnv: auth.Secret(testPeerPSK), MinReplicaAcks: 1}, "--min-replica-acks 1 needs --peer-listen"},
		{"small frame", PeerConfig{Listen: "127.0.0.1:0", PSKEnv: auth.Secret(testPeerPSK), MaxFrame: 1 << 20}, "--peer-max-frame"},
		{"flags without port", PeerConfig{PSKFile: "/k"}, "neither --peer-listen nor --replica-of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{FS: vfs.NewMemFS(), DataDir: "/data", Peer: tc.peer})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "short-secret") {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}

// TestReplicaServesLongPoll: a FetchLogs long-poll on a replica answers
// when a row pushed to the primary arrives.
func TestReplicaServesLongPoll(t *testing.T) {
	ctx := context.Background()
	p := peerPrimary(t, 0)
	r := peerReplica(t, p)
	parked := make(chan struct{}, 1)
	r.srv.onPark = func() {
		select {
		case parked <- struct{}{}:
		default:
		}
	}
	got := make(chan *loggingpb.FetchLogsResponse, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := r.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/lp", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, WaitMs: 20000})
		if err != nil {
			errc <- err
			return
		}
		got <- resp
	}()
	select {
	case <-parked:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll never parked")
	}
	if _, err := p.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/lp", Entries: []*loggingpb.LogEntry{entry("arrived")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-got:
		if len(resp.Entries) != 1 || resp.Entries[0].GetData() != "arrived" {
			t.Fatalf("long-poll answered %v", resp.Entries)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the replica's long-poll did not wake for a replicated row")
	}
}
