package main

// End-to-end test of federated reads (issue 12): three real finelogd
// processes on loopback (home, east, west) with real jwt policies. East
// relays to home (so home holds a copy of east's rows, "fallback": "local");
// west lists home as its own peer. Reads through home must equal direct
// reads of the owner; a fan-out returns every row once; a killed owner is
// named, partial, or stale.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

var fedE2EKeys = map[string]string{
	"ops":  "e2e-ops-key-0123456789abcdef0123456789ab",
	"home": "e2e-home-key-0123456789abcdef0123456789a",
	"east": "e2e-east-key-0123456789abcdef0123456789a",
	"west": "e2e-west-key-0123456789abcdef0123456789a",
}

// fedClient signs its requests with label's key (a jwt identity writes
// rows of its own cluster; "ops" is a reader).
func fedClient(url, label string) *client.Client {
	key := auth.Secret(fedE2EKeys[label])
	return client.New(url, client.WithRetry(1, 0, 0), client.WithToken(func(context.Context) (string, error) {
		return auth.Mint(key, label, time.Hour, "", time.Now())
	}))
}

func writeE2EFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func fedPeers(peers ...string) string { return `{"peers": [` + strings.Join(peers, ",") + `]}` }

func fedPeer(cluster, url, keyFile, extra string) string {
	return fmt.Sprintf(`{"cluster":%q,"address":%q,"key_file":%q%s}`, cluster, url, keyFile, extra)
}

func TestFederationE2EThreeClusters(t *testing.T) {
	finelogdBinary(t)
	dir := t.TempDir()
	key := func(label string) string { return filepath.Join(dir, label+".key") }
	var layer []string
	for label, secret := range fedE2EKeys {
		writeE2EFile(t, key(label), secret+"\n")
		layer = append(layer, fmt.Sprintf(`{"cluster":%q,"secret_file":%q}`, label, key(label)))
	}
	policy := filepath.Join(dir, "policy.json")
	writeE2EFile(t, policy, `[{"type":"jwt","keys":[`+strings.Join(layer, ",")+`]}]`)

	home := newRelayNode(t, "home", filepath.Join(dir, "home-data"))
	east := newRelayNode(t, "east", filepath.Join(dir, "east-data"))
	west := newRelayNode(t, "west", filepath.Join(dir, "west-data"))
	homePeers, westPeers := filepath.Join(dir, "home-peers.json"), filepath.Join(dir, "west-peers.json")
	// Home starts knowing east only; west is added by SIGHUP below.
	writeE2EFile(t, homePeers, fedPeers(fedPeer("east", east.url(), key("home"), `,"fallback":"local"`)))
	writeE2EFile(t, westPeers, fedPeers(fedPeer("home", home.url(), key("west"), "")))
	home.args = append(home.args, "--cluster", "home", "--auth-policy-file", policy, "--peers-file", homePeers)
	east.args = append(east.args, "--cluster", "east", "--auth-policy-file", policy,
		"--relay-address", home.url(), "--relay-key-file", key("east"))
	west.args = append(west.args, "--cluster", "west", "--auth-policy-file", policy, "--peers-file", westPeers)
	home.start()
	east.start()
	west.start()

	ctx := context.Background()
	ops := map[string]*client.Client{"home": fedClient(home.url(), "ops"), "east": fedClient(east.url(), "ops"), "west": fedClient(west.url(), "ops")}
	for name, n := range map[string]*relayNode{"home": home, "east": east, "west": west} {
		rows := map[string]int{"home": 9, "east": 31, "west": 17}[name]
		w := fedClient(n.url(), name)
		for i := 0; i < rows; i++ {
			_, err := w.Push(ctx, &loggingpb.PushLogsRequest{
				Key: fmt.Sprintf("/user/job-%d/task-%d:%d", i%3, i%2, i%4),
				Entries: []*loggingpb.LogEntry{{
					Data:      fmt.Sprintf("%s line %d %s", name, i, []string{"ok", "warn disk", "error boom"}[i%3]),
					Level:     loggingpb.LogLevel(i % 6),
					Timestamp: &loggingpb.Timestamp{EpochMs: 1_000_000 + int64(i)*10},
				}},
			})
			if err != nil {
				t.Fatalf("push to %s: %v", name, err)
			}
		}
	}

	// SIGHUP: home learns west without a restart.
	writeE2EFile(t, homePeers, fedPeers(
		fedPeer("east", east.url(), key("home"), `,"fallback":"local"`),
		fedPeer("west", west.url(), key("home"), `,"compression":"none"`)))
	home.mu.Lock()
	home.cmd.Process.Signal(syscall.SIGHUP)
	home.mu.Unlock()
	for i := 0; ; i++ {
		resp, err := ops["home"].Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "west"})
		if err == nil && len(resp.Entries) == 17 {
			break
		}
		if i > 1500 {
			t.Fatalf("home never proxied west after SIGHUP: %v %v", resp, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A proxied read equals a direct read of the owner, for every rule.
	exact, prefix, regex := loggingpb.MatchScope_MATCH_SCOPE_EXACT, loggingpb.MatchScope_MATCH_SCOPE_PREFIX, loggingpb.MatchScope_MATCH_SCOPE_REGEX
	for _, owner := range []string{"east", "west"} {
		for i, req := range []*loggingpb.FetchLogsRequest{
			{}, {Source: "/user/job-1/task-1:1", MatchScope: exact}, {Source: "/user/job-2/", MatchScope: prefix},
			{Source: "/user/job-[01]/task-0", MatchScope: regex}, {Regex: "line [12]"}, {Cursor: 7, MaxLines: 5}, {Tail: true, MaxLines: 4},
			{SinceMs: 1_000_100}, {Substring: "warn"}, {MinLevel: "warning"},
			{MinLevel: "ERROR", Substring: "line 1", Source: "/user/", MatchScope: prefix, Cursor: 2, MaxLines: 2},
		} {
			req.Cluster = owner
			direct, err := ops[owner].Fetch(ctx, req)
			if err != nil {
				t.Fatalf("%s request %d direct: %v", owner, i, err)
			}
			proxied, err := ops["home"].Fetch(ctx, req)
			if err != nil {
				t.Fatalf("%s request %d proxied: %v", owner, i, err)
			}
			if !proto.Equal(direct, proxied) || len(direct.Entries) == 0 {
				t.Errorf("%s request %d (%v): proxied %d rows, direct %d rows, equal %v", owner, i, req, len(proxied.Entries), len(direct.Entries), proto.Equal(direct, proxied))
			}
		}
	}

	// Fan-out from home (peers east, west) and from west (peer home, which
	// lists west back): every row of the clusters asked, exactly once.
	for _, from := range []struct {
		name string
		want int
	}{{"home", 9 + 31 + 17}, {"west", 17 + 9}} {
		seen := map[string]int{}
		req := &loggingpb.FetchLogsRequest{Cluster: "*", MaxLines: 9}
		for page := 0; ; page++ {
			resp, err := ops[from.name].Fetch(ctx, req)
			if err != nil || page > 50 {
				t.Fatalf("fan-out from %s page %d: %v", from.name, page, err)
			}
			for _, st := range resp.Clusters {
				if st.Code != "" {
					t.Fatalf("fan-out from %s: %s: %s %s", from.name, st.Cluster, st.Code, st.Error)
				}
			}
			if len(resp.Entries) == 0 {
				break
			}
			for _, e := range resp.Entries {
				seen[fmt.Sprintf("%s/%d", e.Cluster, e.Seq)]++
			}
			req.ClusterCursors = map[string]int64{}
			for _, st := range resp.Clusters {
				req.ClusterCursors[st.Cluster] = st.Cursor
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("fan-out from %s: row %s %d times", from.name, id, n)
			}
		}
		if len(seen) != from.want {
			t.Errorf("fan-out from %s: %d rows, want %d", from.name, len(seen), from.want)
		}
	}

	// Home holds east's relayed copy once the relay caught up.
	for i := 0; ; i++ {
		h, err := east.health()
		if err == nil && h.Relay != nil && h.Relay.LagRows == 0 && h.Relay.Watermark == 31 {
			break
		}
		if i > 3000 {
			t.Fatalf("east's relay did not catch up: %+v %v", h, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// West killed: named for a single read, flagged in a fan-out.
	west.kill()
	_, err := ops["home"].Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "west"})
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "peer west ("+west.url()+")") {
		t.Fatalf("read of killed west: %v", err)
	}
	resp, err := ops["home"].Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "*", MaxLines: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 9+31 || resp.Clusters[2].Cluster != "west" || resp.Clusters[2].Code != "unavailable" {
		t.Fatalf("fan-out with west down: %d rows, clusters %v", len(resp.Entries), resp.Clusters)
	}

	// East killed: home answers from its relayed copy, flagged stale.
	east.kill()
	resp, err = ops["home"].Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east", MaxLines: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 31 || len(resp.Clusters) != 1 || !resp.Clusters[0].Stale || !strings.Contains(resp.Clusters[0].Error, "peer east ("+east.url()+")") {
		t.Fatalf("stale read of east: %d rows, %v", len(resp.Entries), resp.Clusters)
	}
	for i, e := range resp.Entries {
		if e.Cluster != "east" || !strings.HasPrefix(e.Data, fmt.Sprintf("east line %d ", i)) {
			t.Fatalf("stale row %d = %v", i, e)
		}
	}
}
