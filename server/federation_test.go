package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/vfs"
)

// Keys of the three-cluster world. Every store trusts the caller "ops";
// east and west trust home's federation key (one key, shared, so a token
// replayed from one at the other must be refused by aud, not by MAC); home
// trusts east's relay key (home is also the global store east relays to).
const (
	opsKey       = "ops-caller-key-0123456789abcdef0123456789"
	homeFedKey   = "home-federation-key-0123456789abcdef012345"
	eastRelayKey = "east-relay-key-0123456789abcdef0123456789"
	westFedKey   = "west-federation-key-0123456789abcdef012345"
)

func writeTestFile(t *testing.T, fs vfs.FS, path, data string) {
	t.Helper()
	if err := fs.MkdirAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(fs, path, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

func jwtPolicy(keys map[string]string) string {
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		admin := ""
		if n == "ops" {
			admin = `,"admin":true` // reads /metrics in these tests
		}
		parts = append(parts, fmt.Sprintf(`{"cluster":%q,"secret":%q%s}`, n, keys[n], admin))
	}
	return `[{"type":"jwt","keys":[` + strings.Join(parts, ",") + `]}]`
}

// fedNode is one in-process finelogd on a loopback port.
type fedNode struct {
	*testEnv
	name   string
	ops    *client.Client // the caller, with an "ops" token
	writer *client.Client // a pusher of this cluster's own rows
}

// writerKey is the key of a cluster's own pushers (a jwt identity writes
// rows of its label's cluster only).
func writerKey(cluster string) string { return cluster + "-writer-key-0123456789abcdef0123456789" }

// newFedNode starts a store named name whose policy trusts keys, with the
// given peers file (empty: none).
func newFedNode(t *testing.T, name string, keys map[string]string, peersJSON string, mod func(*Config)) *fedNode {
	t.Helper()
	keys[name] = writerKey(name)
	e := newTestServer(t, func(c *Config) {
		c.Cluster = name
		c.AuthPolicy = jwtPolicy(keys)
		if peersJSON != "" {
			writeTestFile(t, c.FS, "/etc/peers.json", peersJSON)
			writeTestFile(t, c.FS, "/etc/home-fed.key", homeFedKey+"\n")
			writeTestFile(t, c.FS, "/etc/west-fed.key", westFedKey+"\n")
			c.Federation.PeersFile = "/etc/peers.json"
		}
		if mod != nil {
			mod(c)
		}
	})
	n := &fedNode{testEnv: e, name: name}
	n.ops = client.New(e.http.URL, client.WithRetry(1, 0, 0), client.WithToken(tokenAt(t, e, opsKey, "ops")))
	n.writer = client.New(e.http.URL, client.WithRetry(1, 0, 0), client.WithToken(tokenAt(t, e, writerKey(name), name)))
	return n
}

func tokenAt(t *testing.T, e *testEnv, key, label string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		return auth.Mint(auth.Secret(key), label, time.Hour, "", e.clk.Now())
	}
}

func peersJSON(peers ...string) string { return `{"peers": [` + strings.Join(peers, ",") + `]}` }

func peerEntry(cluster, url, keyFile, extra string) string {
	return fmt.Sprintf(`{"cluster":%q,"address":%q,"key_file":%q%s}`, cluster, url, keyFile, extra)
}

// world is home with peers east (fallback local: home also holds east's
// relayed rows) and west; west lists home back as its peer.
type world struct {
	home, east, west *fedNode
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	w.east = newFedNode(t, "east", map[string]string{"ops": opsKey, "home": homeFedKey, "west": westFedKey}, "", nil)
	w.west = newFedNode(t, "west", map[string]string{"ops": opsKey, "home": homeFedKey}, peersJSON(), nil)
	w.home = newFedNode(t, "home", map[string]string{"ops": opsKey, "east": eastRelayKey, "west": westFedKey}, peersJSON(
		peerEntry("east", w.east.http.URL, "/etc/home-fed.key", `,"fallback":"local"`),
		peerEntry("west", w.west.http.URL, "/etc/home-fed.key", ""),
	), nil)
	// West lists home as its own peer: fan-outs must still count each row once.
	writeTestFile(t, w.west.fs, "/etc/peers.json", peersJSON(peerEntry("home", w.home.http.URL, "/etc/west-fed.key", "")))
	if err := w.west.srv.ReloadPeers(); err != nil {
		t.Fatal(err)
	}
	return w
}

// seed pushes n rows into node under a few keys, with levels, sources and
// timestamps that increase with seq (so per-cluster seq order is time order).
func seed(t *testing.T, n *fedNode, rows int, baseMS int64) {
	t.Helper()
	for i := 0; i < rows; i++ {
		_, err := n.writer.Push(context.Background(), &loggingpb.PushLogsRequest{
			Key: fmt.Sprintf("/user/job-%d/task-%d:%d", i%3, i%2, i%4),
			Entries: []*loggingpb.LogEntry{{
				Data:      fmt.Sprintf("%s line %d %s", n.name, i, []string{"ok", "warn disk", "error boom"}[i%3]),
				Source:    []string{"stdout", "stderr"}[i%2],
				Level:     loggingpb.LogLevel(i % 6),
				Timestamp: &loggingpb.Timestamp{EpochMs: baseMS + int64(i)*10},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// fetchRequests covers every FetchLogs rule: scopes, cursor, tail, since,
// substring, level, max_lines.
func fetchRequests(cluster string) []*loggingpb.FetchLogsRequest {
	exact, prefix, regex := loggingpb.MatchScope_MATCH_SCOPE_EXACT, loggingpb.MatchScope_MATCH_SCOPE_PREFIX, loggingpb.MatchScope_MATCH_SCOPE_REGEX
	return []*loggingpb.FetchLogsRequest{
		{Cluster: cluster},
		{Cluster: cluster, Source: "/user/job-1/task-1:1", MatchScope: exact},
		{Cluster: cluster, Source: "/user/job-2/", MatchScope: prefix},
		{Cluster: cluster, Source: "/user/job-[01]/task-0", MatchScope: regex},
		{Cluster: cluster, Source: "(task-1)"},
		{Cluster: cluster, Regex: "line [12]"},
		{Cluster: cluster, Cursor: 7, MaxLines: 5},
		{Cluster: cluster, Tail: true, MaxLines: 4},
		{Cluster: cluster, Tail: true, MaxLines: 3, Source: "/user/job-0/", MatchScope: prefix},
		{Cluster: cluster, SinceMs: 1_000_100},
		{Cluster: cluster, Substring: "warn"},
		{Cluster: cluster, MinLevel: "warning"},
		{Cluster: cluster, MinLevel: "ERROR", Substring: "line 1", Source: "/user/", MatchScope: prefix, Cursor: 2, MaxLines: 2},
	}
}

func TestFederationProxiedReadEqualsDirectRead(t *testing.T) {
	w := newWorld(t)
	seed(t, w.east, 30, 1_000_000)
	seed(t, w.home, 5, 1_000_000) // home's own rows must not leak into a read of east
	ctx := context.Background()
	for i, req := range fetchRequests("east") {
		direct, err := w.east.ops.Fetch(ctx, req)
		if err != nil {
			t.Fatalf("request %d direct: %v", i, err)
		}
		proxied, err := w.home.ops.Fetch(ctx, req)
		if err != nil {
			t.Fatalf("request %d proxied: %v", i, err)
		}
		if !proto.Equal(direct, proxied) {
			t.Errorf("request %d (%v): proxied read differs from a direct read of the owner\nproxied: %v\ndirect:  %v", i, req, proxied, direct)
		}
		if len(direct.Entries) == 0 && i != 6 {
			t.Errorf("request %d matched nothing; the comparison proves little", i)
		}
	}
	// gRPC and Connect JSON callers get the same answer as Connect proto
	// ones (the proxy passes undecoded bytes to binary callers only).
	grpcOps := client.New(w.home.http.URL, client.WithGRPC(), client.WithRetry(1, 0, 0), client.WithToken(tokenAt(t, w.home.testEnv, opsKey, "ops")))
	direct, err := w.east.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east"})
	if err != nil {
		t.Fatal(err)
	}
	viaGRPC, err := grpcOps.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east"})
	if err != nil || !proto.Equal(direct, viaGRPC) {
		t.Errorf("proxied read over gRPC differs: %v", err)
	}
	ops, _ := tokenAt(t, w.home.testEnv, opsKey, "ops")(ctx)
	req, _ := http.NewRequest(http.MethodPost, w.home.http.URL+loggingpbconnect.LogServiceFetchLogsProcedure, strings.NewReader(`{"cluster":"east"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+ops)
	hresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	var viaJSON loggingpb.FetchLogsResponse
	if err := protojson.Unmarshal(body, &viaJSON); err != nil || !proto.Equal(direct, &viaJSON) {
		t.Errorf("proxied read over Connect JSON differs (%v): %s", err, body)
	}

	// The owner's invalid_argument passes through, naming the peer.
	_, err = w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "peer east (http://127.0.0.1:") || !strings.Contains(err.Error(), "source is required") {
		t.Errorf("PREFIX without source through the proxy: %v", err)
	}
	// A cluster that is not a peer is the local filter, exactly as before.
	resp, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "north"})
	if err != nil || len(resp.Entries) != 0 || len(resp.Clusters) != 0 {
		t.Errorf("non-peer cluster: %v %v", resp, err)
	}
}

// fanOutAll pages a fan-out from node through cluster_cursors until no
// cluster has more, returning every row seen.
func fanOutAll(t *testing.T, c *client.Client, base *loggingpb.FetchLogsRequest) []*loggingpb.LogEntry {
	t.Helper()
	req := proto.Clone(base).(*loggingpb.FetchLogsRequest)
	req.Cluster = "*"
	var all []*loggingpb.LogEntry
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("fan-out paging does not end")
		}
		resp, err := c.Fetch(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range resp.Clusters {
			if st.Code != "" || st.Stale {
				t.Fatalf("cluster %s: %s %s (stale %v)", st.Cluster, st.Code, st.Error, st.Stale)
			}
		}
		if len(resp.Entries) == 0 {
			return all
		}
		all = append(all, resp.Entries...)
		req.ClusterCursors = map[string]int64{}
		for _, st := range resp.Clusters {
			req.ClusterCursors[st.Cluster] = st.Cursor
		}
	}
}

type rowID struct {
	cluster string
	seq     int64
}

func TestFederationFanOutReturnsEveryRowOnce(t *testing.T) {
	w := newWorld(t)
	seed(t, w.home, 11, 1_000_005)
	seed(t, w.east, 23, 1_000_000)
	seed(t, w.west, 17, 1_000_003)
	ctx := context.Background()
	// West lists only home as its peer, and home lists west: no loop.
	for _, from := range []struct {
		node   *fedNode
		owners []*fedNode
	}{{w.home, []*fedNode{w.home, w.east, w.west}}, {w.west, []*fedNode{w.west, w.home}}} {
		node := from.node
		for _, base := range []*loggingpb.FetchLogsRequest{{MaxLines: 7}, {MaxLines: 4, Substring: "warn"}, {MaxLines: 1000}} {
			got := fanOutAll(t, node.ops, base)
			var want []*loggingpb.LogEntry
			for _, owner := range from.owners {
				q := proto.Clone(base).(*loggingpb.FetchLogsRequest)
				q.Cluster, q.MaxLines = owner.name, 10000
				resp, err := owner.ops.Fetch(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, resp.Entries...)
			}
			seen := map[rowID]int{}
			for _, e := range got {
				seen[rowID{e.Cluster, e.Seq}]++
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("from %s: row %v returned %d times", node.name, id, n)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("from %s %v: %d rows, the owners hold %d", node.name, base, len(got), len(want))
			}
			byID := map[rowID]*loggingpb.LogEntry{}
			for _, e := range want {
				byID[rowID{e.Cluster, e.Seq}] = e
			}
			for _, e := range got {
				if !proto.Equal(e, byID[rowID{e.Cluster, e.Seq}]) {
					t.Fatalf("row %v differs from the owner's: %v", rowID{e.Cluster, e.Seq}, e)
				}
			}
		}
	}

	// Tail: the newest rows across all clusters, oldest first.
	resp, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "*", Tail: true, MaxLines: 6})
	if err != nil {
		t.Fatal(err)
	}
	all := fanOutAll(t, w.home.ops, &loggingpb.FetchLogsRequest{MaxLines: 1000})
	sort.Slice(all, func(i, j int) bool { return before(all[i], all[j]) })
	want := all[len(all)-6:]
	if len(resp.Entries) != 6 {
		t.Fatalf("tail returned %d rows", len(resp.Entries))
	}
	for i := range want {
		if !proto.Equal(resp.Entries[i], want[i]) {
			t.Fatalf("tail row %d = %v, want %v", i, resp.Entries[i], want[i])
		}
	}
	if got := []string{resp.Clusters[0].Cluster, resp.Clusters[1].Cluster, resp.Clusters[2].Cluster}; strings.Join(got, ",") != "home,east,west" {
		t.Errorf("cluster statuses in order %v, want home (local) first, then peers by name", got)
	}
}

// before is the fan-out order (epoch_ms, cluster, seq).
func before(a, b *loggingpb.LogEntry) bool {
	if a.Timestamp.EpochMs != b.Timestamp.EpochMs {
		return a.Timestamp.EpochMs < b.Timestamp.EpochMs
	}
	if a.Cluster != b.Cluster {
		return a.Cluster < b.Cluster
	}
	return a.Seq < b.Seq
}

func TestFederationFanOutFollowsWithWait(t *testing.T) {
	w := newWorld(t)
	seed(t, w.east, 3, 1_000_000)
	ctx := context.Background()
	first, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "*"})
	if err != nil || len(first.Entries) != 3 {
		t.Fatalf("first page: %v %v", first, err)
	}
	cursors := map[string]int64{}
	for _, st := range first.Clusters {
		cursors[st.Cluster] = st.Cursor
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		seed(t, w.west, 1, 2_000_000)
	}()
	next, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "*", ClusterCursors: cursors, WaitMs: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	if len(next.Entries) != 1 || next.Entries[0].Cluster != "west" {
		t.Fatalf("long-poll across clusters returned %v, want west's new row", next.Entries)
	}
	for _, st := range next.Clusters {
		if st.Code != "" {
			t.Errorf("cluster %s: %s %s (a wait another cluster ended is not a failure)", st.Cluster, st.Code, st.Error)
		}
		if st.Cluster == "east" && st.Cursor != cursors["east"] {
			t.Errorf("east cursor moved from %d to %d with no east row returned", cursors["east"], st.Cursor)
		}
	}
}

func TestFederationOwnerDown(t *testing.T) {
	w := newWorld(t)
	seed(t, w.east, 4, 1_000_000)
	seed(t, w.west, 4, 1_000_000)
	seed(t, w.home, 2, 1_000_000)
	ctx := context.Background()
	// Home also holds a relayed copy of two of east's rows (east's relay
	// identity writes rows of cluster east).
	relayed := client.New(w.home.http.URL, client.WithRetry(1, 0, 0), client.WithToken(tokenAt(t, w.home.testEnv, eastRelayKey, "east")))
	if _, err := relayed.Push(ctx, &loggingpb.PushLogsRequest{Key: "/user/copy", Cluster: "east", Entries: []*loggingpb.LogEntry{{Data: "copy 1"}, {Data: "copy 2"}}}); err != nil {
		t.Fatal(err)
	}
	westURL := w.west.http.URL
	w.west.http.Close()
	w.east.http.Close()

	// West has no fallback: a single-cluster read is unavailable, naming it.
	_, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "west"})
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "peer west ("+westURL+")") {
		t.Fatalf("read of a down peer: %v", err)
	}
	// East has "fallback": "local": the relayed copy, flagged stale.
	resp, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 2 || resp.Entries[0].Data != "copy 1" || len(resp.Clusters) != 1 || !resp.Clusters[0].Stale ||
		resp.Clusters[0].Code != "unavailable" || !strings.Contains(resp.Clusters[0].Error, "peer east") {
		t.Fatalf("fallback read: %v", resp)
	}
	// A long-poll is not served from the copy: it would repeat the snapshot.
	if _, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east", WaitMs: 100}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("long-poll of a down peer with fallback: %v", err)
	}
	// Fan-out: a partial answer, flagged per cluster, never a failure.
	resp, err = w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "*"})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]*loggingpb.ClusterStatus{}
	for _, st := range resp.Clusters {
		status[st.Cluster] = st
	}
	if st := status["home"]; st.Code != "" || st.Cursor == 0 {
		t.Errorf("home: %v", st)
	}
	if st := status["east"]; !st.Stale || st.Code != "unavailable" || st.Cursor >= 0 {
		t.Errorf("east: %v (want stale with a copy cursor, < 0)", st)
	}
	if st := status["west"]; st.Stale || st.Code != "unavailable" || !strings.Contains(st.Error, "peer west ("+westURL+")") {
		t.Errorf("west: %v", st)
	}
	var clusters []string
	for _, e := range resp.Entries {
		clusters = append(clusters, e.Cluster)
	}
	if len(resp.Entries) != 4 || strings.Count(strings.Join(clusters, ","), "east") != 2 {
		t.Errorf("partial fan-out rows: %v", clusters)
	}
	// Paging on continues in the copy: the stale rows are not repeated.
	next, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "*", ClusterCursors: map[string]int64{
		"home": status["home"].Cursor, "east": status["east"].Cursor, "west": status["west"].Cursor}})
	if err != nil || len(next.Entries) != 0 {
		t.Fatalf("second page with east stale: %v %v", next, err)
	}
	// A single read continues in the copy by its copy cursor; a read that
	// continues from an owner cursor cannot, and gets the error.
	stale, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east", MaxLines: 1})
	if err != nil || len(stale.Entries) != 1 || stale.Entries[0].Data != "copy 1" || stale.Cursor >= 0 {
		t.Fatalf("first stale page: %v %v", stale, err)
	}
	stale, err = w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east", MaxLines: 1, Cursor: stale.Cursor})
	if err != nil || len(stale.Entries) != 1 || stale.Entries[0].Data != "copy 2" {
		t.Fatalf("second stale page: %v %v", stale, err)
	}
	if _, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east", Cursor: 3}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("read of a down peer from an owner cursor: %v", err)
	}
	if !strings.Contains(metricsText(t, w.home), `finelog_federation_requests_total{code="unavailable",peer="west"}`) ||
		!strings.Contains(metricsText(t, w.home), "finelog_federation_fanout_partial_total 2") {
		t.Errorf("metrics do not count the failures:\n%s", grepLines(metricsText(t, w.home), "finelog_federation"))
	}
}

func metricsText(t *testing.T, n *fedNode) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.http.URL+"/metrics", nil)
	tok, _ := tokenAt(t, n.testEnv, opsKey, "ops")(context.Background())
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestFederationKeyMisconfigured(t *testing.T) {
	east := newFedNode(t, "east", map[string]string{"ops": opsKey}, "", nil) // does not know home's key
	home := newFedNode(t, "home", map[string]string{"ops": opsKey}, peersJSON(peerEntry("east", east.http.URL, "/etc/home-fed.key", "")), nil)
	_, err := home.ops.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Cluster: "east"})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "federation keys are misconfigured") || !strings.Contains(err.Error(), "peer east") {
		t.Fatalf("peer refusing the delegation token: %v", err)
	}
}

func TestFederationReloadKeepsPeersOnBadFile(t *testing.T) {
	w := newWorld(t)
	seed(t, w.east, 2, 1_000_000)
	writeTestFile(t, w.home.fs, "/etc/peers.json", `{"peers": [{"cluster": "east", "address": "ftp://x"}]}`)
	if err := w.home.srv.ReloadPeers(); err == nil || !strings.Contains(err.Error(), "scheme must be http or https") {
		t.Fatalf("bad reload: %v", err)
	}
	resp, err := w.home.ops.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Cluster: "east"})
	if err != nil || len(resp.Entries) != 2 {
		t.Fatalf("after a bad reload east must still be proxied: %v %v", resp, err)
	}
	writeTestFile(t, w.home.fs, "/etc/peers.json", peersJSON())
	if err := w.home.srv.ReloadPeers(); err != nil {
		t.Fatal(err)
	}
	resp, err = w.home.ops.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Cluster: "east"})
	if err != nil || len(resp.Entries) != 0 {
		t.Fatalf("after removing east, a read of east is the local filter: %v %v", resp, err)
	}
}

func TestFederationStartErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no cluster", func(c *Config) { c.Cluster = ""; c.Federation.PeersFile = "/p" }, "needs --cluster"},
		{"missing file", func(c *Config) { c.Federation.PeersFile = "/nope.json" }, "peers file /nope.json"},
		{"flags without file", func(c *Config) { c.Federation.MaxInflight = 3 }, "--peers-file is not"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{FS: vfs.NewMemFS(), DataDir: "/data", Cluster: "home"}
			c.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want %q", err, c.want)
			}
		})
	}
}

func TestFederationProxiedLongPoll(t *testing.T) {
	w := newWorld(t)
	seed(t, w.east, 2, 1_000_000)
	ctx := context.Background()
	go func() {
		time.Sleep(200 * time.Millisecond)
		seed(t, w.east, 1, 2_000_000)
	}()
	resp, err := w.home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east", Cursor: 2, WaitMs: 10_000})
	if err != nil || len(resp.Entries) != 1 || resp.Entries[0].Seq != 3 {
		t.Fatalf("proxied long-poll: %v %v", resp, err)
	}
}

// TestFederationReadScope: a caller whose key may read only west may
// proxy to west, not to east, and may not fan out; home applies the scope
// before anything reaches a peer.
func TestFederationReadScope(t *testing.T) {
	w := newWorld(t)
	seed(t, w.east, 2, 1_000_000)
	seed(t, w.west, 3, 1_000_000)
	const scopedKey = "scoped-reader-key-0123456789abcdef0123456"
	pol := `[{"type":"jwt","keys":[{"cluster":"reader","secret":"` + scopedKey + `","read":["west"]},` +
		`{"cluster":"home","secret":"` + writerKey("home") + `"},{"cluster":"west","secret":"` + westFedKey + `"}]}]`
	home := newFedNode(t, "home", map[string]string{}, peersJSON(
		peerEntry("east", w.east.http.URL, "/etc/home-fed.key", ""),
		peerEntry("west", w.west.http.URL, "/etc/home-fed.key", ""),
	), func(c *Config) { c.AuthPolicy = pol })
	reader := client.New(home.http.URL, client.WithRetry(1, 0, 0), client.WithToken(tokenAt(t, home.testEnv, scopedKey, "reader")))
	ctx := context.Background()
	if resp, err := reader.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "west"}); err != nil || len(resp.Entries) != 3 {
		t.Fatalf("scoped read of west: %v %v", resp, err)
	}
	if resp, err := reader.Fetch(ctx, &loggingpb.FetchLogsRequest{}); err != nil || len(resp.Entries) != 3 {
		t.Fatalf("scoped read naming no cluster reads its one cluster, west: %v %v", resp, err)
	}
	before := metricsOf(t, w.east)
	if _, err := reader.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "east"}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("scoped read of east: %v", err)
	}
	if _, err := reader.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "*"}); connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "fan-out") {
		t.Fatalf("scoped fan-out: %v", err)
	}
	if after := metricsOf(t, w.east); after != before {
		t.Errorf("a refused read reached east (proxied reads served %q -> %q)", before, after)
	}
}

// metricsOf is east's count of proxied reads served.
func metricsOf(t *testing.T, n *fedNode) string {
	t.Helper()
	return grepLines(metricsText(t, n), "finelog_federation_proxied_reads_served_total{")
}
