package federation_test

// A three-cluster world driven by rapid: real servers (home, east, west) on
// in-memory filesystems and fake clocks, talking through an in-memory
// transport that can cut any node off. Random pushes, partitions, clock
// skews and reads (proxied, fanned out, local) are checked against the
// owners: a read either returns exactly the owner's rows for its filters,
// or says which cluster it could not reach. This is the federation part of
// the simulation property, runnable until sim/ grows three clusters.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/federation"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/server"
)

// memNet delivers HTTP requests to in-process handlers, by host, with no
// sockets. A host that is down refuses like a closed port.
type memNet struct {
	mu       sync.Mutex
	handlers map[string]http.Handler
	down     map[string]bool
}

func (n *memNet) RoundTrip(r *http.Request) (*http.Response, error) { return n.deliver(r, false) }

// reliable is the reference path: the same handlers, never cut off.
type reliable struct{ n *memNet }

func (rt reliable) RoundTrip(r *http.Request) (*http.Response, error) { return rt.n.deliver(r, true) }

func (n *memNet) deliver(r *http.Request, ignoreDown bool) (*http.Response, error) {
	n.mu.Lock()
	h, down := n.handlers[r.URL.Host], n.down[r.URL.Host] && !ignoreDown
	n.mu.Unlock()
	if h == nil || down {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("dial tcp %s: connect: connection refused", r.URL.Host)
	}
	req := r.Clone(r.Context())
	req.RemoteAddr = "192.0.2.10:40000" // not loopback: the jwt layer decides
	req.RequestURI = r.URL.RequestURI()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

var worldKeys = map[string]string{
	"ops":  "world-ops-key-0123456789abcdef0123456789",
	"home": "world-home-key-0123456789abcdef012345678",
	"east": "world-east-key-0123456789abcdef012345678",
	"west": "world-west-key-0123456789abcdef012345678",
}

var worldBase = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

type worldNode struct {
	name string
	srv  *server.Server
	clk  *clock.Fake
	cfg  server.Config
}

type world struct {
	net   *memNet
	ref   http.RoundTripper
	nodes map[string]*worldNode
	// dropEast, when set, makes home's path to east drop the first row of
	// every answer: the canary the property must catch.
	dropEast bool
}

func hostOf(name string) string { return name + ".sim" }

func newWorld(t *testing.T, dropEast bool) *world {
	t.Helper()
	w := &world{
		net:      &memNet{handlers: map[string]http.Handler{}, down: map[string]bool{}},
		nodes:    map[string]*worldNode{},
		dropEast: dropEast,
	}
	w.ref = reliable{w.net}
	var keys []string
	for label, secret := range worldKeys {
		keys = append(keys, fmt.Sprintf(`{"cluster":%q,"secret":%q}`, label, secret))
	}
	sort.Strings(keys)
	policy := `[{"type":"jwt","keys":[` + strings.Join(keys, ",") + `]}]`
	peers := map[string]string{
		"home": peersOf("home", "east", "west"),
		"west": peersOf("west", "home"), // lists home back: no loop
		"east": "",
	}
	for _, name := range []string{"home", "east", "west"} {
		fs := vfs.NewMemFS()
		fs.MkdirAll("/etc")
		vfs.WriteFileAtomic(fs, "/etc/"+name+".key", []byte(worldKeys[name]))
		cfg := server.Config{FS: fs, Clock: clock.NewFake(worldBase), DataDir: "/data", Cluster: name, AuthPolicy: policy}
		if peers[name] != "" {
			vfs.WriteFileAtomic(fs, "/etc/peers.json", []byte(peers[name]))
			cfg.Federation.PeersFile = "/etc/peers.json"
			dial := federation.ClientDial(&http.Client{Transport: w.net})
			if name == "home" {
				dial = w.canaryDial(dial)
			}
			cfg.Federation.Dial = dial
		}
		n := &worldNode{name: name, clk: cfg.Clock.(*clock.Fake), cfg: cfg}
		if err := w.start(n); err != nil {
			t.Fatal(err)
		}
		w.nodes[name] = n
		t.Cleanup(func() { n.srv.Close() })
	}
	return w
}

// start opens n's server on its filesystem (again, after a restart).
func (w *world) start(n *worldNode) error {
	srv, err := server.New(n.cfg)
	if err != nil {
		return err
	}
	if err := srv.Open(context.Background()); err != nil {
		return err
	}
	n.srv = srv
	w.net.mu.Lock()
	w.net.handlers[hostOf(n.name)] = srv.Handler()
	w.net.mu.Unlock()
	return nil
}

func peersOf(self string, names ...string) string {
	var ps []string
	for _, n := range names {
		ps = append(ps, fmt.Sprintf(`{"cluster":%q,"address":"http://%s","key_file":"/etc/%s.key"}`, n, hostOf(n), self))
	}
	return `{"peers":[` + strings.Join(ps, ",") + `]}`
}

func (w *world) canaryDial(next federation.Dial) federation.Dial {
	return func(p federation.PeerConfig, token func(context.Context) (string, error)) federation.Fetcher {
		f := next(p, token)
		if p.Cluster != "east" || !w.dropEast {
			return f
		}
		return federation.FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
			resp, err := f.FetchLogs(ctx, req)
			if err == nil {
				err = federation.Decode(resp)
			}
			if err == nil && len(resp.Entries) > 0 {
				resp.Entries = resp.Entries[1:]
			}
			return resp, err
		})
	}
}

// clientAt talks to node as label, minting tokens on clk, over tr.
func clientAt(node string, label string, clk clock.Clock, tr http.RoundTripper) *client.Client {
	return client.New("http://"+hostOf(node), client.WithHTTPClient(&http.Client{Transport: tr}), client.WithRetry(1, 0, 0),
		client.WithToken(func(context.Context) (string, error) {
			return auth.Mint(auth.Secret(worldKeys[label]), label, time.Hour, "", clk.Now())
		}))
}

// worldRequests are the filters reads draw from.
var worldRequests = []*loggingpb.FetchLogsRequest{
	{},
	{Source: "/job/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT},
	{Source: "/job/", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX, Substring: "x"},
	{Source: "(b$)"},
	{Regex: "row [0-4] "},
	{Tail: true, MaxLines: 3},
	{Cursor: 2, MaxLines: 4},
	{MinLevel: "warning"},
}

// check runs one read from reader and compares it with the owners' own
// answers, read over the reliable path with the owner's clock. It returns
// a description of any difference.
func (w *world) check(reader, cluster string, base *loggingpb.FetchLogsRequest) error {
	ctx := context.Background()
	req := proto.Clone(base).(*loggingpb.FetchLogsRequest)
	req.Cluster = cluster
	r := w.nodes[reader]
	resp, err := clientAt(reader, "ops", r.clk, w.net).Fetch(ctx, req)
	owner := func(name string, q *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
		o := w.nodes[name]
		return clientAt(name, "ops", o.clk, w.ref).Fetch(ctx, q)
	}
	peersOfReader := map[string][]string{"home": {"east", "west"}, "west": {"home"}, "east": nil}[reader]
	isPeer := false
	for _, p := range peersOfReader {
		isPeer = isPeer || p == cluster
	}
	switch {
	case cluster == "*":
		if err != nil {
			return fmt.Errorf("fan-out from %s failed as a whole: %v", reader, err)
		}
		byCluster := map[string][]*loggingpb.LogEntry{}
		for _, e := range resp.Entries {
			byCluster[e.Cluster] = append(byCluster[e.Cluster], e)
		}
		for _, st := range resp.Clusters {
			if st.Code != "" {
				if len(byCluster[st.Cluster]) != 0 || (st.Cluster != reader && !strings.Contains(st.Error, "peer "+st.Cluster+" (")) {
					return fmt.Errorf("fan-out from %s: cluster %s failed (%s %s) but the answer does not say so cleanly", reader, st.Cluster, st.Code, st.Error)
				}
				continue
			}
			q := proto.Clone(req).(*loggingpb.FetchLogsRequest)
			q.Cluster, q.MaxLines, q.Tail = st.Cluster, 10000, false
			want, err := owner(st.Cluster, q)
			if err != nil {
				return fmt.Errorf("reference read of %s: %v", st.Cluster, err)
			}
			if req.GetMaxLines() == 0 && !req.GetTail() && !entriesEqual(byCluster[st.Cluster], want.Entries) {
				return fmt.Errorf("fan-out from %s: cluster %s answered %d rows, the owner holds %d", reader, st.Cluster, len(byCluster[st.Cluster]), len(want.Entries))
			}
		}
		return nil
	case isPeer:
		if err != nil {
			code := connect.CodeOf(err)
			if !strings.Contains(err.Error(), "peer "+cluster+" (") || code == connect.CodeInternal || code == connect.CodeUnknown {
				return fmt.Errorf("proxied read of %s from %s: error does not name the peer cleanly: %v", cluster, reader, err)
			}
			return nil
		}
		want, err := owner(cluster, req)
		if err != nil {
			return fmt.Errorf("reference read of %s: %v", cluster, err)
		}
		if !proto.Equal(resp, want) {
			return fmt.Errorf("proxied read of %s from %s (%v): %d rows, the owner answers %d", cluster, reader, req, len(resp.Entries), len(want.Entries))
		}
		return nil
	default:
		if err != nil {
			return fmt.Errorf("local read at %s of %q failed: %v", reader, cluster, err)
		}
		return nil
	}
}

func entriesEqual(a, b []*loggingpb.LogEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// run plays a drawn schedule and returns the first difference.
func (w *world) run(rt *rapid.T) error {
	names := []string{"home", "east", "west"}
	pushes := 0
	for step := rapid.IntRange(5, 25).Draw(rt, "steps"); step > 0; step-- {
		switch rapid.IntRange(0, 10).Draw(rt, "action") {
		case 10:
			// Restart: every acked row must still be there, and reads
			// through the restarted store or of it stay exact.
			n := w.nodes[rapid.SampledFrom(names).Draw(rt, "restart")]
			if err := n.srv.Close(); err != nil {
				return fmt.Errorf("close %s: %v", n.name, err)
			}
			if err := w.start(n); err != nil {
				return fmt.Errorf("restart %s: %v", n.name, err)
			}
		case 0, 1, 2:
			n := w.nodes[rapid.SampledFrom(names).Draw(rt, "push-to")]
			c := clientAt(n.name, n.name, n.clk, w.ref)
			key := rapid.SampledFrom([]string{"/job/a", "/job/b", "/other/b"}).Draw(rt, "key")
			_, err := c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: key, Entries: []*loggingpb.LogEntry{{
				Data:      fmt.Sprintf("%s row %d %s", n.name, pushes, rapid.SampledFrom([]string{"x", "y"}).Draw(rt, "data")),
				Level:     loggingpb.LogLevel(rapid.IntRange(0, 5).Draw(rt, "level")),
				Timestamp: &loggingpb.Timestamp{EpochMs: rapid.Int64Range(1, 50).Draw(rt, "ts")},
			}}})
			if err != nil {
				return fmt.Errorf("push to %s: %v", n.name, err)
			}
			pushes++
		case 3:
			host := hostOf(rapid.SampledFrom(names).Draw(rt, "cut"))
			w.net.mu.Lock()
			w.net.down[host] = !w.net.down[host]
			w.net.mu.Unlock()
		case 4:
			n := w.nodes[rapid.SampledFrom(names).Draw(rt, "skew")]
			n.clk.Set(worldBase.Add(time.Duration(rapid.IntRange(-180, 180).Draw(rt, "skew-s")) * time.Second))
		default:
			reader := rapid.SampledFrom([]string{"home", "west"}).Draw(rt, "reader")
			w.net.mu.Lock()
			readerDown := w.net.down[hostOf(reader)]
			w.net.mu.Unlock()
			if readerDown {
				continue // the caller cannot reach its own store either
			}
			cluster := rapid.SampledFrom([]string{"home", "east", "west", "*", "north"}).Draw(rt, "cluster")
			req := rapid.SampledFrom(worldRequests).Draw(rt, "filters")
			if err := w.check(reader, cluster, req); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestWorldFederatedReadsMatchOwners(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		w := newWorld(t, false)
		if err := w.run(rt); err != nil {
			rt.Fatal(err)
		}
	})
}

// TestWorldCanaryDroppedRows: a proxy path that silently drops one of
// east's rows is caught by the same property.
func TestWorldCanaryDroppedRows(t *testing.T) {
	w := newWorld(t, true)
	c := clientAt("east", "east", w.nodes["east"].clk, w.ref)
	if _, err := c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/job/a", Entries: []*loggingpb.LogEntry{{Data: "1"}, {Data: "2"}}}); err != nil {
		t.Fatal(err)
	}
	for _, cluster := range []string{"east", "*"} {
		err := w.check("home", cluster, &loggingpb.FetchLogsRequest{})
		if err == nil {
			t.Errorf("read of %q through a proxy that drops rows passed the check", cluster)
		}
	}
	if err := w.check("home", "west", &loggingpb.FetchLogsRequest{}); err != nil {
		t.Errorf("the canary is east only, yet west's read failed: %v", err)
	}
}
