package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/internal/wirecompress"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 11, 24, 4, 0, 0, 0, time.UTC)

type testEnv struct {
	srv  *Server
	http *httptest.Server
	clk  *clock.Fake
	fs   *vfs.MemFS
	c    *client.Client
}

// newTestServer runs a server on an in-memory FS and a fake clock behind an
// httptest server that speaks HTTP/1.1 and h2c, like finelogd.
func newTestServer(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	e := &testEnv{clk: clock.NewFake(epoch), fs: vfs.NewMemFS()}
	cfg := Config{FS: e.fs, Clock: e.clk, DataDir: "/data", Cluster: "home"}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http = httptest.NewUnstartedServer(srv.Handler())
	e.http.Config.Protocols = new(http.Protocols)
	e.http.Config.Protocols.SetHTTP1(true)
	e.http.Config.Protocols.SetUnencryptedHTTP2(true)
	e.http.Start()
	e.c = client.New(e.http.URL, client.WithRetry(1, 0, 0))
	t.Cleanup(func() {
		e.http.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

func entry(data string) *loggingpb.LogEntry { return &loggingpb.LogEntry{Data: data} }

func TestPushFetchRoundTrip(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	resp, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{
		Key: "/user/job-1/task-0:3",
		Entries: []*loggingpb.LogEntry{
			{Data: "one", Level: loggingpb.LogLevel_LOG_LEVEL_INFO, Timestamp: &loggingpb.Timestamp{EpochMs: 1000}, Source: "stdout"},
			// A level outside the enum must round-trip unchanged.
			{Data: "two", Level: loggingpb.LogLevel(42), Key: "/ignored/because/request/key/wins"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.FirstSeq != 1 || resp.LastSeq != 2 {
		t.Fatalf("push seqs = %d..%d, want 1..2", resp.FirstSeq, resp.LastSeq)
	}
	got, err := e.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/user/job-1/", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 2 {
		t.Fatalf("fetched %d entries, want 2", len(got.Entries))
	}
	one, two := got.Entries[0], got.Entries[1]
	if one.Data != "one" || one.Key != "/user/job-1/task-0:3" || one.AttemptId != 3 || one.Seq != 1 ||
		one.Cluster != "home" || one.Source != "stdout" || one.GetTimestamp().GetEpochMs() != 1000 {
		t.Errorf("first entry = %v", one)
	}
	if two.Level != 42 {
		t.Errorf("level 42 came back as %d", two.Level)
	}
	// A missing timestamp is stamped from the server's (injected) clock.
	if two.GetTimestamp().GetEpochMs() != epoch.UnixMilli() {
		t.Errorf("missing timestamp stamped %d, want the server clock %d", two.GetTimestamp().GetEpochMs(), epoch.UnixMilli())
	}
	if got.Cursor != 2 || got.MaxLinesApplied != 1000 {
		t.Errorf("cursor %d max_lines_applied %d, want 2 and 1000", got.Cursor, got.MaxLinesApplied)
	}
	// The cursor is exclusive: nothing after the last row.
	more, err := e.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/user/job-1/task-0:3", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Cursor: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(more.Entries) != 0 || more.Cursor != 2 {
		t.Errorf("after cursor 2: %d entries, cursor %d; want none and cursor 2", len(more.Entries), more.Cursor)
	}
}

func TestAttemptFromKey(t *testing.T) {
	for key, want := range map[string]int32{
		"/user/job/0:3":   3,
		"/user/job/0":     0,
		"a:b:12":          12,
		"a:12:b":          0,
		"trailing:":       0,
		"neg:-2":          -2,
		"huge:9999999999": 0,
	} {
		if got := attemptFromKey(key); got != want {
			t.Errorf("attemptFromKey(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestPushKeyRules(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()

	// No request key: each entry's own key counts.
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Entries: []*loggingpb.LogEntry{
		{Key: "/a", Data: "to a"}, {Key: "/b", Data: "to b"},
	}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"/a", "/b"} {
		got, err := e.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: k, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Entries) != 1 {
			t.Errorf("key %s: %d entries, want 1", k, len(got.Entries))
		}
	}

	// An entry left without a key rejects the whole batch.
	_, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Entries: []*loggingpb.LogEntry{{Key: "/a", Data: "x"}, entry("no key")}})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "entry 1 has no key") {
		t.Fatalf("entry without key: %v, want invalid_argument naming entry 1", err)
	}
	if e.srv.st.Load().s.LastSeq() != 2 {
		t.Errorf("a rejected batch wrote rows: last seq %d", e.srv.st.Load().s.LastSeq())
	}

	// An empty push is a no-op success.
	resp, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/a"})
	if err != nil || resp.FirstSeq != 0 || resp.LastSeq != 0 {
		t.Fatalf("empty push: %v %v, want success with no seqs", resp, err)
	}
}

func TestFetchPrefixNeedsSource(t *testing.T) {
	e := newTestServer(t, nil)
	_, err := e.c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "source is required") {
		t.Fatalf("PREFIX with empty source: %v, want invalid_argument \"source is required\"", err)
	}
}

func TestClusterStamping(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Cluster: "east", Entries: []*loggingpb.LogEntry{entry("from east")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("local")}}); err != nil {
		t.Fatal(err)
	}
	got, err := e.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/k", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 2 || got.Entries[0].Cluster != "east" || got.Entries[1].Cluster != "home" {
		t.Fatalf("clusters = %v, want east then the server's own (home)", got.Entries)
	}
}

// jwtEnv runs a server whose policy admits JWTs for cluster "east" only.
func jwtEnv(t *testing.T) (*testEnv, auth.Secret) {
	secret := auth.Secret(bytes.Repeat([]byte("k"), 48))
	e := newTestServer(t, func(c *Config) {
		c.AuthPolicy = `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"/keys/east"}]}]`
		fs := c.FS.(*vfs.MemFS)
		if err := fs.MkdirAll("/keys"); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFileAtomic(fs, "/keys/east", secret); err != nil {
			t.Fatal(err)
		}
	})
	return e, secret
}

func TestIdentityBoundWrites(t *testing.T) {
	e, secret := jwtEnv(t)
	ctx := context.Background()
	minter := auth.NewMinter(secret, "east", "", time.Hour, e.clk)
	c := client.New(e.http.URL, client.WithRetry(1, 0, 0), client.WithToken(func(context.Context) (string, error) { return minter.Token() }))

	// Empty cluster is stamped with the identity's cluster, not the
	// server's.
	if _, err := c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Cluster: "east", Entries: []*loggingpb.LogEntry{entry("b")}}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Cluster: "west", Entries: []*loggingpb.LogEntry{entry("spoofed")}})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("east token writing west rows: %v, want permission_denied", err)
	}
	got, err := c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/k", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 2 || got.Entries[0].Cluster != "east" || got.Entries[1].Cluster != "east" {
		t.Fatalf("rows = %v, want two rows of cluster east", got.Entries)
	}

	// Without a token the jwt-only policy denies, even from loopback.
	_, err = e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{entry("anon")}})
	if connect.CodeOf(err) != connect.CodeUnauthenticated && connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("no token: %v, want unauthenticated or permission_denied", err)
	}
}

func TestHealthOpenMetricsGated(t *testing.T) {
	e, _ := jwtEnv(t)
	resp, err := http.Get(e.http.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var h healthStatus
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || h.Status != "ready" {
		t.Fatalf("health without credentials: %d %+v, want 200 ready", resp.StatusCode, h)
	}
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		resp, err := http.Get(e.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s without credentials: %d, want 401/403", path, resp.StatusCode)
		}
	}
}

func TestHealthNotReadyWhileStartingAndStopping(t *testing.T) {
	srv, err := New(Config{FS: vfs.NewMemFS(), Clock: clock.NewFake(epoch), DataDir: "/d"})
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
		var h healthStatus
		json.Unmarshal(rec.Body.Bytes(), &h)
		return rec.Code, h.Status
	}
	if code, st := get(); code != 503 || st != "starting" {
		t.Errorf("before open: %d %s, want 503 starting", code, st)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(); code != 200 {
		t.Errorf("after open: %d, want 200", code)
	}
	srv.Close()
	if code, _ := get(); code != 503 {
		t.Errorf("after close: %d, want 503", code)
	}
}

func TestMetricsCountRequests(t *testing.T) {
	e := newTestServer(t, nil)
	if _, err := e.c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/m", Entries: []*loggingpb.LogEntry{entry("x"), entry("y")}}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`finelog_rpc_requests_total{code="ok",procedure="/finelog.logging.LogService/PushLogs",reason=""} 1`,
		"finelog_push_rows_total 2",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestOversizeRequestRejectedServerKeepsServing(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.MaxRequestBytes = 64 << 10 })
	ctx := context.Background()
	big := strings.Repeat("x", 100<<10)
	_, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/big", Entries: []*loggingpb.LogEntry{entry(big)}})
	// It can never succeed: invalid_argument (HTTP 400), not the
	// retryable-looking resource_exhausted (429).
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "65536") {
		t.Fatalf("oversize push: %v, want invalid_argument stating the 65536-byte limit", err)
	}
	t.Logf("oversize error: %v", err)
	if client.Retryable(err) {
		t.Error("an oversize request must not be retried")
	}
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/big", Entries: []*loggingpb.LogEntry{entry("small")}}); err != nil {
		t.Fatalf("push after the oversize one: %v", err)
	}
}

// zstdClient sends zstd, as the relay does to a finelogd that lists it.
func zstdClient() []connect.ClientOption {
	return []connect.ClientOption{
		connect.WithAcceptCompression(wirecompress.Zstd, wirecompress.ZstdDecompressor, wirecompress.ZstdCompressor),
		connect.WithSendCompression(wirecompress.Zstd),
	}
}

// A compressed request is limited by its decompressed size: a body of a few
// hundred bytes that inflates past the limit is refused the same way, and
// nothing of it is stored.
func TestCompressedOversizeRequestRejected(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.MaxRequestBytes = 64 << 10 })
	big := strings.Repeat("x", 4<<20) // compresses to a few KiB
	for name, opts := range map[string][]connect.ClientOption{"gzip": {connect.WithSendGzip()}, "zstd": zstdClient()} {
		c := loggingpbconnect.NewLogServiceClient(client.HTTP1Client(), e.http.URL, opts...)
		_, err := c.PushLogs(context.Background(), connect.NewRequest(&loggingpb.PushLogsRequest{Key: "/bomb", Entries: []*loggingpb.LogEntry{entry(big)}}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "65536-byte limit") {
			t.Errorf("%s: 4 MiB inflating from a small body: %v, want invalid_argument naming the limit", name, err)
		}
	}
	resp, err := e.c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: "/bomb", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil || len(resp.Entries) != 0 {
		t.Fatalf("after refused bombs: %v entries, %v", len(resp.GetEntries()), err)
	}
}

func TestConnectJSONOverPlainHTTP(t *testing.T) {
	e := newTestServer(t, nil)
	post := func(proc, body string) map[string]any {
		t.Helper()
		resp, err := http.Post(e.http.URL+"/finelog.logging.LogService/"+proc, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", proc, resp.StatusCode, b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	post("PushLogs", `{"key":"/user/job-1/task-0","entries":[{"data":"hello","level":"LOG_LEVEL_WARNING"}]}`)
	m := post("FetchLogs", `{"source":"/user/job-1/task-0","matchScope":"MATCH_SCOPE_EXACT"}`)
	entries, _ := m["entries"].([]any)
	if len(entries) != 1 {
		t.Fatalf("fetch over JSON: %v", m)
	}
	got := entries[0].(map[string]any)
	if got["data"] != "hello" || got["level"] != "LOG_LEVEL_WARNING" {
		t.Fatalf("entry over JSON = %v", got)
	}
}

func TestGRPCOverH2C(t *testing.T) {
	e := newTestServer(t, nil)
	g := client.New(e.http.URL, client.WithGRPC(), client.WithGzip())
	ctx := context.Background()
	if _, err := g.Push(ctx, &loggingpb.PushLogsRequest{Key: "/g", Entries: []*loggingpb.LogEntry{entry("via grpc")}}); err != nil {
		t.Fatal(err)
	}
	got, err := g.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/g", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 1 || got.Entries[0].Data != "via grpc" {
		t.Fatalf("gRPC fetch = %v", got.Entries)
	}
	_, err = g.Fetch(ctx, &loggingpb.FetchLogsRequest{MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("gRPC error code = %v, want invalid_argument", err)
	}
}

func TestProducerPushesAreIdempotent(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	req := &loggingpb.PushLogsRequest{
		Producer: "east-1", Cluster: "east", FirstSeq: 10, LastSeq: 12,
		Entries: []*loggingpb.LogEntry{{Key: "/r", Data: "10", Seq: 10}, {Key: "/r", Data: "12", Seq: 12}},
	}
	first, err := e.c.Push(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.LastSeq-first.FirstSeq != 1 || first.ProducerAppliedSeq != 12 {
		t.Fatalf("first push = %v, want 2 rows and applied 12", first)
	}
	again, err := e.c.Push(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.FirstSeq != 0 || again.LastSeq != 0 || again.ProducerAppliedSeq != 12 {
		t.Fatalf("re-sent push = %v, want nothing appended, applied 12", again)
	}
	applied, known, err := e.c.ProducerState(ctx, "east-1")
	if err != nil || !known || applied != 12 {
		t.Fatalf("producer state = %d %v %v, want 12 known", applied, known, err)
	}
	_, known, err = e.c.ProducerState(ctx, "nobody")
	if err != nil || known {
		t.Fatalf("unknown producer: known=%v err=%v", known, err)
	}
}

// TestLongPollWakesOnAppend: a fetch with wait_ms blocks until a matching
// row lands and then returns it, with no clock movement at all.
func TestLongPollWakesOnAppend(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	type result struct {
		resp *loggingpb.FetchLogsResponse
		err  error
	}
	done := make(chan result, 1)
	park := parked(e)
	go func() {
		resp, err := e.c.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: "/lp", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, WaitMs: 60_000})
		done <- result{resp, err}
	}()
	<-park
	// A row under another key wakes the poll but must not answer it.
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/other", Entries: []*loggingpb.LogEntry{entry("not mine")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/lp", Entries: []*loggingpb.LogEntry{entry("arrived")}}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.resp.Entries) != 1 || r.resp.Entries[0].Data != "arrived" {
		t.Fatalf("long-poll returned %v, want the row that arrived", r.resp.Entries)
	}
}

// TestLongPollTimesOut: with nothing arriving, the poll returns an empty
// page once the (fake) clock passes wait_ms, capped by MaxWait.
func TestLongPollTimesOut(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.MaxWait = 5 * time.Second })
	done := make(chan error, 1)
	park := parked(e)
	go func() {
		resp, err := e.c.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: "/none", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Cursor: 7, WaitMs: 3_600_000})
		if err == nil && (len(resp.Entries) != 0 || resp.Cursor != 7) {
			err = errors.New("timed-out poll returned rows or moved the cursor")
		}
		done <- err
	}()
	<-park
	// Five seconds (the cap), not the hour asked for, end the poll.
	e.clk.Advance(5 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// parked returns a channel that receives each time a long-poll parks.
func parked(e *testEnv) <-chan struct{} {
	c := make(chan struct{}, 16)
	e.srv.onPark = func() { c <- struct{}{} }
	return c
}

func TestLongPollReturnsOnShutdown(t *testing.T) {
	e := newTestServer(t, nil)
	done := make(chan error, 1)
	park := parked(e)
	go func() {
		_, err := e.c.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: "/none", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, WaitMs: 60_000})
		done <- err
	}()
	<-park
	e.srv.beginStop()
	if err := <-done; err != nil {
		t.Fatalf("poll during shutdown: %v, want an empty page", err)
	}
}

func TestBadStartsFailClearly(t *testing.T) {
	_, err := New(Config{FS: vfs.NewMemFS(), DataDir: "/d", AuthPolicy: "[]"})
	if err == nil || !strings.Contains(err.Error(), "auth policy") {
		t.Errorf("empty policy: %v, want an auth policy error", err)
	}
	fs := vfs.NewMemFS()
	fs.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpCreate {
			return errors.New("read-only file system")
		}
		return nil
	}
	_, err = New(Config{FS: fs, DataDir: "/ro"})
	if err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("unwritable data dir: %v, want \"not writable\"", err)
	}
}

// TestDiskFullIsRetryableResourceExhausted: a full disk fails the push with
// resource_exhausted marked retryable, reads keep working, and pushes work
// again once space returns.
func TestDiskFullIsRetryableResourceExhausted(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/df", Entries: []*loggingpb.LogEntry{entry("before")}}); err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	full.Store(true)
	e.fs.Inject = func(op vfs.Op, name string) error {
		if full.Load() && (op == vfs.OpWrite || op == vfs.OpSync) {
			return vfs.ErrNoSpace
		}
		return nil
	}
	_, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/df", Entries: []*loggingpb.LogEntry{entry("lost")}})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !client.Retryable(err) {
		t.Fatalf("push on a full disk: %v, want retryable resource_exhausted", err)
	}
	got, err := e.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/df", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil || len(got.Entries) != 1 {
		t.Fatalf("read on a full disk: %v %v, want the one acked row", got, err)
	}
	full.Store(false)
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/df", Entries: []*loggingpb.LogEntry{entry("after")}}); err != nil {
		t.Fatalf("push once space returned: %v", err)
	}
}

// TestProtocolsAndCodecs: every protocol × codec pair a client may use.
func TestProtocolsAndCodecs(t *testing.T) {
	e := newTestServer(t, nil)
	for name, opts := range map[string][]connect.ClientOption{
		"connect+proto":   nil,
		"connect+json":    {connect.WithProtoJSON()},
		"grpc+proto":      {connect.WithGRPC()},
		"grpc+json":       {connect.WithGRPC(), connect.WithProtoJSON()},
		"grpcweb+proto":   {connect.WithGRPCWeb()},
		"grpcweb+json":    {connect.WithGRPCWeb(), connect.WithProtoJSON()},
		"connect+gzip":    {connect.WithSendGzip()},
		"grpc+proto+gzip": {connect.WithGRPC(), connect.WithSendGzip()},
		"connect+zstd":    zstdClient(),
		"grpc+proto+zstd": append(zstdClient(), connect.WithGRPC()),
	} {
		t.Run(name, func(t *testing.T) {
			hc := client.HTTP1Client()
			if strings.HasPrefix(name, "grpc+") {
				hc = client.H2CClient()
			}
			c := loggingpbconnect.NewLogServiceClient(hc, e.http.URL, opts...)
			key := "/codec/" + name
			_, err := c.PushLogs(context.Background(), connect.NewRequest(&loggingpb.PushLogsRequest{Key: key, Entries: []*loggingpb.LogEntry{{Data: "é ✓", Level: 7}}}))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.FetchLogs(context.Background(), connect.NewRequest(&loggingpb.FetchLogsRequest{Source: key, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}))
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Msg.Entries) != 1 || resp.Msg.Entries[0].Data != "é ✓" || resp.Msg.Entries[0].Level != 7 {
				t.Fatalf("fetched %v", resp.Msg.Entries)
			}
		})
	}
}
