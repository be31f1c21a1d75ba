package federation

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/finelog/finelog/auth"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/vfs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memCluster is a cluster's rows with the store's paging rules (seq >
// cursor, the first max_lines, or the newest with tail), standing in for a
// peer or the local store.
type memCluster struct {
	name string
	rows []*loggingpb.LogEntry // seq order
}

func (c *memCluster) FetchLogs(_ context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
	limit := int(req.GetMaxLines())
	if limit <= 0 {
		limit = 1000
	}
	var out []*loggingpb.LogEntry
	for _, r := range c.rows {
		if r.Seq > req.GetCursor() && r.Cluster == req.GetCluster() {
			out = append(out, r)
		}
	}
	if req.GetTail() && len(out) > limit {
		out = out[len(out)-limit:]
	} else if len(out) > limit {
		out = out[:limit]
	}
	cursor := req.GetCursor()
	if len(out) > 0 {
		cursor = out[len(out)-1].Seq
	}
	return &loggingpb.FetchLogsResponse{Entries: out, Cursor: cursor, MaxLinesApplied: int32(limit)}, nil
}

// newTestRouter builds a Router over fetchers by cluster name: the one
// named "home" is local, the others are peers (reached through Dial).
func newTestRouter(t *testing.T, fetchers map[string]Fetcher, mod func(*Options), fallback ...string) *Router {
	t.Helper()
	fs := vfs.NewMemFS()
	var peers []string
	for name := range fetchers {
		if name != "home" {
			extra := ""
			for _, f := range fallback {
				if f == name {
					extra = `,"fallback":"local"`
				}
			}
			peers = append(peers, fmt.Sprintf(`{"cluster":%q,"address":"http://%s.invalid","key_file":"/k"%s}`, name, name, extra))
		}
	}
	sort.Strings(peers)
	if err := writeFile(fs, "/k", eastKey); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(fs, "/peers.json", `{"peers":[`+strings.Join(peers, ",")+`]}`); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Cluster:   "home",
		Local:     fetchers["home"],
		PeersFile: "/peers.json",
		FS:        fs,
		Dial: func(p PeerConfig, token func(context.Context) (string, error)) Fetcher {
			return FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
				if _, err := token(ctx); err != nil {
					return nil, err
				}
				return fetchers[p.Cluster].FetchLogs(ctx, req)
			})
		},
	}
	if mod != nil {
		mod(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fanOutExactlyOnce pages a fan-out over fetchers by cluster cursors and
// reports how it differs from every owner's rows exactly once.
func fanOutExactlyOnce(t *testing.T, owners []*memCluster, fetchers map[string]Fetcher, maxLines int32, fallback ...string) error {
	r := newTestRouter(t, fetchers, nil, fallback...)
	want := map[string]bool{}
	for _, c := range owners {
		for _, row := range c.rows {
			want[row.Data] = true
		}
	}
	req := &loggingpb.FetchLogsRequest{Cluster: FanOut, MaxLines: maxLines}
	seen := map[string]int{}
	for page := 0; ; page++ {
		if page > len(want)+2 {
			return fmt.Errorf("paging does not end after %d pages", page)
		}
		resp, err := r.FetchLogs(context.Background(), req)
		if err != nil {
			return err
		}
		if len(resp.Entries) > int(maxLines) {
			return fmt.Errorf("page of %d rows, max_lines %d", len(resp.Entries), maxLines)
		}
		if len(resp.Entries) == 0 {
			break
		}
		for _, e := range resp.Entries {
			seen[e.Data]++
		}
		req.ClusterCursors = map[string]int64{}
		for _, st := range resp.Clusters {
			req.ClusterCursors[st.Cluster] = st.Cursor
		}
	}
	for d := range want {
		if seen[d] != 1 {
			return fmt.Errorf("row %s returned %d times, want once", d, seen[d])
		}
	}
	if len(seen) != len(want) {
		return fmt.Errorf("saw %d distinct rows, the owners hold %d", len(seen), len(want))
	}
	return nil
}

func drawClusters(rt *rapid.T) []*memCluster {
	var out []*memCluster
	for _, name := range []string{"home", "east", "west", "north"} {
		c := &memCluster{name: name}
		n := rapid.IntRange(0, 30).Draw(rt, name+"-rows")
		for i := 1; i <= n; i++ {
			c.rows = append(c.rows, &loggingpb.LogEntry{
				Seq: int64(i), Cluster: name, Data: fmt.Sprintf("%s-%d", name, i),
				Timestamp: &loggingpb.Timestamp{EpochMs: rapid.Int64Range(0, 20).Draw(rt, "ts")},
			})
		}
		out = append(out, c)
	}
	return out
}

// TestFanOutPagingProperty: with any rows (timestamps in any order within
// a cluster) and any page size, paging a fan-out by cluster cursors yields
// every row of every cluster exactly once.
func TestFanOutPagingProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		owners := drawClusters(rt)
		fetchers := map[string]Fetcher{}
		for _, c := range owners {
			fetchers[c.name] = c
		}
		if err := fanOutExactlyOnce(t, owners, fetchers, int32(rapid.IntRange(1, 12).Draw(rt, "max"))); err != nil {
			rt.Fatal(err)
		}
	})
}

// TestFanOutPagingFromACopy: east is down and home holds a relayed copy
// of east's rows (interleaved with home's own in home's seq space). Paging
// a fan-out still yields every row once and ends: the copy's position is
// carried in a copy cursor, never confused with an owner seq.
func TestFanOutPagingFromACopy(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		owners := drawClusters(rt)
		home, east := owners[0], owners[1]
		local := &memCluster{name: "home"}
		hi, ei := 0, 0
		for hi < len(home.rows) || ei < len(east.rows) {
			var r *loggingpb.LogEntry
			if ei < len(east.rows) && (hi == len(home.rows) || rapid.Bool().Draw(rt, "copy-next")) {
				r = proto.Clone(east.rows[ei]).(*loggingpb.LogEntry)
				ei++
			} else {
				r = proto.Clone(home.rows[hi]).(*loggingpb.LogEntry)
				hi++
			}
			r.Seq = int64(len(local.rows) + 1)
			local.rows = append(local.rows, r)
		}
		fetchers := map[string]Fetcher{"home": local}
		for _, c := range owners[2:] {
			fetchers[c.name] = c
		}
		fetchers["east"] = FetcherFunc(func(context.Context, *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("connection refused"))
		})
		if err := fanOutExactlyOnce(t, owners, fetchers, int32(rapid.IntRange(1, 12).Draw(rt, "max")), "east"); err != nil {
			rt.Fatal(err)
		}
	})
}

// TestFanOutCanaryDroppedRows: the property catches a peer path that
// silently drops a row (here: the first row of each of east's answers).
func TestFanOutCanaryDroppedRows(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		owners := drawClusters(rt)
		fetchers := map[string]Fetcher{}
		for _, c := range owners {
			fetchers[c.name] = c
		}
		east := fetchers["east"]
		fetchers["east"] = FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
			resp, err := east.FetchLogs(ctx, req)
			if err == nil && len(resp.Entries) > 0 {
				resp.Entries = resp.Entries[1:]
			}
			return resp, err
		})
		err := fanOutExactlyOnce(t, owners, fetchers, int32(rapid.IntRange(1, 12).Draw(rt, "max")))
		if len(owners[1].rows) > 0 && err == nil {
			rt.Fatalf("a peer that dropped rows of east's %d went unnoticed", len(owners[1].rows))
		}
	})
}

func TestFanOutBoundsConcurrency(t *testing.T) {
	var now, peak atomic.Int32
	slow := FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
		n := now.Add(1)
		defer now.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		return &loggingpb.FetchLogsResponse{Cursor: req.GetCursor()}, nil
	})
	fetchers := map[string]Fetcher{"home": &memCluster{name: "home"}}
	for i := 0; i < 30; i++ {
		fetchers[fmt.Sprintf("p%02d", i)] = slow
	}
	r := newTestRouter(t, fetchers, func(o *Options) { o.MaxInflight = 3 })
	resp, err := r.FetchLogs(context.Background(), &loggingpb.FetchLogsRequest{Cluster: FanOut})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Clusters) != 31 {
		t.Fatalf("%d statuses, want 31", len(resp.Clusters))
	}
	for _, st := range resp.Clusters {
		if st.Code != "" {
			t.Errorf("%s: %s %s", st.Cluster, st.Code, st.Error)
		}
	}
	if p := peak.Load(); p > 3 {
		t.Fatalf("%d peers were called at once, limit 3", p)
	}
}

// TestFanOutWaitEndsOtherWaits: with wait_ms, the first cluster to get a
// row ends the others' long-polls, and those keep their cursors.
func TestFanOutWaitEndsOtherWaits(t *testing.T) {
	parked := make(chan struct{}, 1)
	blocking := FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
		if req.GetWaitMs() == 0 {
			return &loggingpb.FetchLogsResponse{Cursor: req.GetCursor()}, nil
		}
		parked <- struct{}{}
		<-ctx.Done()
		return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
	})
	arriving := FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
		if req.GetWaitMs() == 0 {
			return &loggingpb.FetchLogsResponse{Cursor: req.GetCursor()}, nil
		}
		<-parked
		return &loggingpb.FetchLogsResponse{Entries: []*loggingpb.LogEntry{{Seq: 8, Cluster: "west", Timestamp: &loggingpb.Timestamp{}}}, Cursor: 8}, nil
	})
	r := newTestRouter(t, map[string]Fetcher{"home": &memCluster{name: "home"}, "east": blocking, "west": arriving}, nil)
	resp, err := r.FetchLogs(context.Background(), &loggingpb.FetchLogsRequest{Cluster: FanOut, WaitMs: 60_000, ClusterCursors: map[string]int64{"east": 5, "west": 7}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 1 {
		t.Fatalf("entries %v", resp.Entries)
	}
	for _, st := range resp.Clusters {
		want := map[string]int64{"home": 0, "east": 5, "west": 8}[st.Cluster]
		if st.Code != "" || st.Cursor != want {
			t.Errorf("%s: code %q cursor %d, want ok at %d", st.Cluster, st.Code, st.Cursor, want)
		}
	}
}

func TestProxiedRequestIsAnsweredLocally(t *testing.T) {
	var peerCalls atomic.Int32
	peer := FetcherFunc(func(context.Context, *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
		peerCalls.Add(1)
		return &loggingpb.FetchLogsResponse{}, nil
	})
	home := &memCluster{name: "east", rows: []*loggingpb.LogEntry{{Seq: 1, Cluster: "east", Data: "home's copy"}}}
	r := newTestRouter(t, map[string]Fetcher{"home": home, "east": peer}, nil)
	ctx := auth.WithDelegation(context.Background(), auth.Delegation{By: "west", Subject: "jwt cluster ops", Verified: true})
	resp, err := r.FetchLogs(ctx, &loggingpb.FetchLogsRequest{Cluster: "east"})
	if err != nil || len(resp.Entries) != 1 || resp.Entries[0].Data != "home's copy" {
		t.Fatalf("proxied request for a peer: %v %v", resp, err)
	}
	if _, err := r.FetchLogs(ctx, &loggingpb.FetchLogsRequest{Cluster: FanOut}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("proxied fan-out: %v", err)
	}
	if _, err := LocalOnly(home).FetchLogs(ctx, &loggingpb.FetchLogsRequest{Cluster: FanOut}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("proxied fan-out at a store without peers: %v", err)
	}
	if n := peerCalls.Load(); n != 0 {
		t.Fatalf("a proxied request reached a peer %d times", n)
	}
	// Without the delegation the same read is proxied.
	if _, err := r.FetchLogs(context.Background(), &loggingpb.FetchLogsRequest{Cluster: "east"}); err != nil || peerCalls.Load() != 1 {
		t.Fatalf("direct read of a peer: %v, %d calls", err, peerCalls.Load())
	}
}

func TestPeerRowsOfAnotherClusterAreRefused(t *testing.T) {
	liar := FetcherFunc(func(context.Context, *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
		return &loggingpb.FetchLogsResponse{Entries: []*loggingpb.LogEntry{{Seq: 1, Cluster: "home", Data: "forged"}}}, nil
	})
	r := newTestRouter(t, map[string]Fetcher{"home": &memCluster{name: "home"}, "east": liar}, nil)
	_, err := r.FetchLogs(context.Background(), &loggingpb.FetchLogsRequest{Cluster: "east"})
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), `row of cluster "home"`) {
		t.Fatalf("peer answering with another cluster's rows: %v", err)
	}
}

func TestPeerErrorNeverInternal(t *testing.T) {
	p := &peer{PeerConfig: PeerConfig{Cluster: "east", Address: "http://e:1"}}
	for c := connect.Code(1); c <= 16; c++ {
		got := connect.CodeOf(peerError("home", p, connect.NewError(c, errors.New("x"))))
		if got == connect.CodeInternal || got == connect.CodeUnknown {
			t.Errorf("peer %s became %s", c, got)
		}
		if !strings.Contains(peerError("home", p, connect.NewError(c, errors.New("x"))).Error(), "peer east (http://e:1)") {
			t.Errorf("peer %s: message does not name the peer", c)
		}
	}
	if got := connect.CodeOf(peerError("home", p, errors.New("dial tcp: connection refused"))); got != connect.CodeUnavailable {
		t.Errorf("transport error became %s", got)
	}
	// A cancellation the caller did not ask for (a dropped connection can
	// surface as one) is the peer being unavailable.
	for _, err := range []error{connect.NewError(connect.CodeCanceled, context.Canceled), context.Canceled} {
		if got := connect.CodeOf(peerError("home", p, err)); got != connect.CodeUnavailable {
			t.Errorf("%v became %s", err, got)
		}
	}
}

func TestDelegationTokenNamesTheCaller(t *testing.T) {
	var got string
	var mu sync.Mutex
	fs := vfs.NewMemFS()
	writeFile(fs, "/k", eastKey)
	writeFile(fs, "/peers.json", `{"peers":[{"cluster":"east","address":"http://e.invalid","key_file":"/k"}]}`)
	r, err := New(Options{Cluster: "home", Local: &memCluster{name: "home"}, PeersFile: "/peers.json", FS: fs,
		Dial: func(_ PeerConfig, token func(context.Context) (string, error)) Fetcher {
			return FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
				tok, err := token(ctx)
				mu.Lock()
				got = tok
				mu.Unlock()
				return &loggingpb.FetchLogsResponse{}, err
			})
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := auth.WithIdentity(context.Background(), auth.Identity{Kind: auth.LayerCIDR, CIDR: "127.0.0.0/8"})
	if _, err := r.FetchLogs(ctx, &loggingpb.FetchLogsRequest{Cluster: "east"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	parts := strings.Split(got, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", got)
	}
	payload, _ := decodeSegment(parts[1])
	for _, want := range []string{`"sub":"cidr 127.0.0.0/8"`, `"aud":"east"`, `"finelog_proxied_read_by":"home"`} {
		if !strings.Contains(payload, want) {
			t.Errorf("token payload %s lacks %s", payload, want)
		}
	}
}

func decodeSegment(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err
}
