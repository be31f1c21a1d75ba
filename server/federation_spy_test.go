package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/auth"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
)

// spy stands in for a peer: it records every request exactly as it
// arrived and answers FetchLogs with one row of its own cluster, or with
// the failure its mode asks for.
type spy struct {
	cluster string
	srv     *httptest.Server
	stop    chan struct{} // closed before srv closes: a slow handler returns

	mu       sync.Mutex
	seen     []*http.Request
	lastWait int32                                             // wait_ms of the last FetchLogs
	mode     func(w http.ResponseWriter, r *http.Request) bool // true: answered
}

func newSpy(t *testing.T, cluster string) *spy {
	t.Helper()
	s := &spy{cluster: cluster, stop: make(chan struct{})}
	_, h := loggingpbconnect.NewLogServiceHandler(spyService{s})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Clone(context.Background()))
		mode := s.mode
		s.mu.Unlock()
		if mode != nil && mode(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { close(s.stop) })
	return s
}

func (s *spy) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.seen...)
}

func (s *spy) setMode(m func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

type spyService struct{ s *spy }

func (sp spyService) FetchLogs(ctx context.Context, req *connect.Request[loggingpb.FetchLogsRequest]) (*connect.Response[loggingpb.FetchLogsResponse], error) {
	sp.s.mu.Lock()
	sp.s.lastWait = req.Msg.GetWaitMs()
	sp.s.mu.Unlock()
	return connect.NewResponse(&loggingpb.FetchLogsResponse{
		Entries: []*loggingpb.LogEntry{{Data: "from " + sp.s.cluster, Cluster: sp.s.cluster, Seq: 1, Timestamp: &loggingpb.Timestamp{EpochMs: 1}}},
		Cursor:  1,
	}), nil
}

func (spyService) PushLogs(context.Context, *connect.Request[loggingpb.PushLogsRequest]) (*connect.Response[loggingpb.PushLogsResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("spy"))
}

func (spyService) GetProducerState(context.Context, *connect.Request[loggingpb.GetProducerStateRequest]) (*connect.Response[loggingpb.GetProducerStateResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("spy"))
}

// rawFetch posts a Connect JSON FetchLogs to node the way a careless
// caller might: its token in the Authorization header, in cookies, in the
// query string and in a custom header.
func carelessFetch(t *testing.T, baseURL, body, token string) (int, string) {
	t.Helper()
	q := url.Values{"token": {token}, "access_token": {token}}
	req, err := http.NewRequest(http.MethodPost, baseURL+loggingpbconnect.LogServiceFetchLogsProcedure+"?"+q.Encode(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Cookie", "session="+token+"; finelog_token="+token)
	req.Header.Set("X-Api-Key", token)
	req.Header.Set("X-Forwarded-For", "10.9.9.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func bearerOf(t *testing.T, r *http.Request) string {
	t.Helper()
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		t.Fatalf("peer got no bearer token: %q", r.Header.Get("Authorization"))
	}
	return tok
}

func TestFederationCredentialHygiene(t *testing.T) {
	spyPeer := newSpy(t, "spy")
	eastSpy := newSpy(t, "east") // stands in for east at home, to capture a token addressed to east
	// The real east trusts home's federation key (the same key home uses
	// for the spy): a token captured at the spy must still not work there.
	east := newFedNode(t, "east", map[string]string{"ops": opsKey, "home": homeFedKey}, "", nil)
	home := newFedNode(t, "home", map[string]string{"ops": opsKey, "west": westFedKey}, peersJSON(
		peerEntry("spy", spyPeer.srv.URL, "/etc/home-fed.key", ""),
		peerEntry("east", eastSpy.srv.URL, "/etc/home-fed.key", ""),
	), nil)
	ops, err := auth.Mint(auth.Secret(opsKey), "ops", time.Hour, "", home.clk.Now())
	if err != nil {
		t.Fatal(err)
	}

	code, body := carelessFetch(t, home.http.URL, `{"cluster":"spy"}`, ops)
	if code != 200 || !strings.Contains(body, "from spy") {
		t.Fatalf("proxied read: %d %s", code, body)
	}
	got := spyPeer.requests()
	if len(got) != 1 {
		t.Fatalf("spy saw %d requests, want 1", len(got))
	}
	r := got[0]
	if r.URL.RawQuery != "" {
		t.Errorf("the caller's query string reached the peer: %q", r.URL.RawQuery)
	}
	if len(r.Cookies()) != 0 {
		t.Errorf("cookies reached the peer: %v", r.Cookies())
	}
	for name, vals := range r.Header {
		for _, v := range vals {
			if strings.Contains(v, ops) {
				t.Errorf("the caller's token reached the peer in header %s", name)
			}
		}
		if name == "X-Api-Key" || name == "X-Forwarded-For" {
			t.Errorf("the caller's header %s reached the peer", name)
		}
	}
	if ae := r.Header.Get("Accept-Encoding"); !strings.HasPrefix(ae, "zstd") {
		t.Errorf("proxy asks for %q; zstd first keeps a hop cheap", ae)
	}
	tok := bearerOf(t, r)
	var claims jwt.MapClaims
	if _, err := jwt.NewParser(jwt.WithTimeFunc(home.clk.Now), jwt.WithValidMethods([]string{"HS256"})).
		ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return []byte(homeFedKey), nil }); err != nil {
		t.Fatalf("token the peer got does not verify under home's federation key: %v", err)
	}
	exp, _ := claims.GetExpirationTime()
	if claims["aud"] != "spy" || claims[auth.ProxiedReadClaim] != "home" || claims["sub"] != "jwt cluster ops" {
		t.Errorf("token claims %v: want aud spy, %s home, sub the caller", claims, auth.ProxiedReadClaim)
	}
	if exp == nil || exp.Sub(home.clk.Now()) > auth.MaxDelegationTTL || !exp.After(home.clk.Now()) {
		t.Errorf("token exp %v is not within %v of now %v", exp, auth.MaxDelegationTTL, home.clk.Now())
	}

	// Replayed at another peer that trusts the same key: refused by aud.
	replay := func(path, body, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, east.http.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := replay(loggingpbconnect.LogServiceFetchLogsProcedure, `{"cluster":"east"}`, tok); code != 403 || !strings.Contains(body, "not to this store") {
		t.Errorf("token for the spy replayed at east: %d %s", code, body)
	}

	// A token home addressed to east reads at east, and nothing else.
	if code, body := carelessFetch(t, home.http.URL, `{"cluster":"east"}`, ops); code != 200 || !strings.Contains(body, "from east") {
		t.Fatalf("proxied read of the east spy: %d %s", code, body)
	}
	eastTok := bearerOf(t, eastSpy.requests()[0])
	if code, body := replay(loggingpbconnect.LogServiceFetchLogsProcedure, `{"cluster":"east"}`, eastTok); code != 200 {
		t.Errorf("a token addressed to east does not read at east: %d %s", code, body)
	}
	if code, body := replay(loggingpbconnect.LogServicePushLogsProcedure, `{"key":"/x","entries":[{"data":"forged"}]}`, eastTok); code != 403 || !strings.Contains(body, "FetchLogs only") {
		t.Errorf("push with a delegation token: %d %s", code, body)
	}
	if m := metricsText(t, east); !strings.Contains(m, `finelog_auth_denied_total{reason="delegation_refused"} 2`) ||
		!strings.Contains(m, `finelog_federation_proxied_reads_served_total{by="home"} 1`) {
		t.Errorf("east's metrics do not count the refused and served delegations:\n%s", grepLines(m, "delegation")+grepLines(m, "proxied"))
	}
	if code, _ := replay(loggingpbconnect.LogServiceGetProducerStateProcedure, `{"producer":"x"}`, eastTok); code != 403 {
		t.Errorf("GetProducerState with a delegation token: %d", code)
	}

	// A request that was proxied here is never proxied again.
	before := len(spyPeer.requests())
	inbound, err := auth.MintDelegation(auth.Secret(westFedKey), "west", "home", "jwt cluster ops", 30*time.Second, home.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	code, body = carelessFetch(t, home.http.URL, `{"cluster":"spy"}`, inbound)
	if code != 200 || strings.Contains(body, "from spy") {
		t.Errorf("proxied request for a peer of home: %d %s (want a local answer)", code, body)
	}
	code, body = carelessFetch(t, home.http.URL, `{"cluster":"*"}`, inbound)
	if code != 400 || !strings.Contains(body, "cannot fan out") {
		t.Errorf("proxied request for a fan-out: %d %s", code, body)
	}
	if n := len(spyPeer.requests()); n != before {
		t.Errorf("a proxied request was proxied again (%d new requests at the spy)", n-before)
	}
}

func TestFederationErrorMapping(t *testing.T) {
	sp := newSpy(t, "spy")
	redirected := newSpy(t, "elsewhere")
	home := newFedNode(t, "home", map[string]string{"ops": opsKey}, peersJSON(peerEntry("spy", sp.srv.URL, "/etc/home-fed.key", "")),
		func(c *Config) { c.Federation.PeerTimeout = 300 * time.Millisecond })
	connectErr := func(code connect.Code, msg string) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			connect.NewErrorWriter().Write(w, r, connect.NewError(code, errors.New(msg)))
			return true
		}
	}
	status := func(code int) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, "upstream trouble", code)
			return true
		}
	}
	cases := []struct {
		name string
		mode func(w http.ResponseWriter, r *http.Request) bool
		code connect.Code
		want string
	}{
		{"500 text", status(500), connect.CodeUnavailable, "peer spy (" + sp.srv.URL + ")"},
		{"502", status(502), connect.CodeUnavailable, "peer spy"},
		{"connect internal", connectErr(connect.CodeInternal, "disk on fire"), connect.CodeUnavailable, "disk on fire"},
		{"unauthenticated", connectErr(connect.CodeUnauthenticated, "token signature does not verify"), connect.CodeFailedPrecondition, "federation keys are misconfigured"},
		{"permission denied", connectErr(connect.CodePermissionDenied, "addressed elsewhere"), connect.CodeFailedPrecondition, "federation keys are misconfigured"},
		{"not found", connectErr(connect.CodeNotFound, "no such thing"), connect.CodeNotFound, "peer spy"},
		{"invalid argument", connectErr(connect.CodeInvalidArgument, "bad regex"), connect.CodeInvalidArgument, "bad regex"},
		{"slow peer", func(w http.ResponseWriter, r *http.Request) bool {
			select {
			case <-r.Context().Done():
			case <-sp.stop:
			}
			return true
		}, connect.CodeDeadlineExceeded, "peer spy"},
		// The proxy hands a binary caller the peer's bytes undecoded; they
		// are still checked row by row.
		{"row of another cluster", rawAnswer(&loggingpb.LogEntry{Data: "forged", Cluster: "home", Seq: 4}), connect.CodeUnavailable, `row of cluster "home" (seq 4)`},
		{"string not UTF-8", rawAnswer(&loggingpb.LogEntry{Data: "ok", Cluster: "spy"}, invalidUTF8), connect.CodeUnavailable, "not UTF-8"},
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request) bool {
			http.Redirect(w, r, redirected.srv.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return true
		}, connect.CodeUnavailable, "peer spy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sp.setMode(c.mode)
			_, err := home.ops.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Cluster: "spy"})
			if connect.CodeOf(err) != c.code || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v (%s), want %s containing %q", err, connect.CodeOf(err), c.code, c.want)
			}
			// Fan-out: the same failure is that cluster's status, not the request's.
			resp, err := home.ops.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Cluster: "*"})
			if err != nil || len(resp.Clusters) != 2 || resp.Clusters[1].Code != c.code.String() {
				t.Fatalf("fan-out: %v %v", resp, err)
			}
		})
	}
	// Over Connect's HTTP mapping, unavailable is a 503 naming the peer.
	sp.setMode(status(500))
	ops, err := auth.Mint(auth.Secret(opsKey), "ops", time.Hour, "", home.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if code, body := carelessFetch(t, home.http.URL, `{"cluster":"spy"}`, ops); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, `"code":"unavailable"`) || !strings.Contains(body, "peer spy (") {
		t.Errorf("peer 500 over Connect JSON: %d %s", code, body)
	}
	if n := len(redirected.requests()); n != 0 {
		t.Errorf("the redirect was followed (%d requests at its target)", n)
	}

	t.Run("a long-poll's wait is cut to the caller's deadline", func(t *testing.T) {
		sp.setMode(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
		defer cancel()
		if _, err := home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "spy", WaitMs: 10_000}); err != nil {
			t.Fatal(err)
		}
		sp.mu.Lock()
		wait := sp.lastWait
		sp.mu.Unlock()
		if wait <= 0 || wait >= 600 {
			t.Fatalf("peer was asked to wait %d ms by a caller with 600 ms left", wait)
		}
	})

	t.Run("caller deadline propagates minus a margin", func(t *testing.T) {
		sp.setMode(cases[7].mode) // slow
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		n := len(sp.requests())
		_, err := home.ops.Fetch(ctx, &loggingpb.FetchLogsRequest{Cluster: "spy"})
		if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
			t.Fatalf("got %v", err)
		}
		reqs := sp.requests()
		if len(reqs) <= n {
			t.Fatal("the peer was not called")
		}
		ms, err := strconv.Atoi(reqs[len(reqs)-1].Header.Get("Connect-Timeout-Ms"))
		if err != nil || ms <= 0 || ms >= 250 {
			t.Errorf("peer got Connect-Timeout-Ms %q, want below the caller's 250 ms", reqs[len(reqs)-1].Header.Get("Connect-Timeout-Ms"))
		}
	})
}

// TestFederationHTTPMethods: the RPC paths answer every HTTP method as
// Connect specifies, directly and through the proxy: POST is served; GET
// is for side-effect-free procedures only, which these are not, so it is
// refused with 405 like PUT, DELETE, PATCH and OPTIONS.
func TestFederationHTTPMethods(t *testing.T) {
	w := newWorld(t)
	seed(t, w.east, 2, 1_000_000)
	ops, err := auth.Mint(auth.Secret(opsKey), "ops", time.Hour, "", w.home.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, u, body string) (*http.Response, string) {
		req, _ := http.NewRequest(method, u, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+ops)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	fetch := loggingpbconnect.LogServiceFetchLogsProcedure
	msg := url.QueryEscape(`{"cluster":"east"}`)
	for _, target := range []struct{ name, url string }{{"direct", w.east.http.URL}, {"through the proxy", w.home.http.URL}} {
		t.Run(target.name, func(t *testing.T) {
			resp, body := do(http.MethodPost, target.url+fetch, `{"cluster":"east"}`)
			if resp.StatusCode != 200 || strings.Count(body, `"cluster":"east"`) != 2 {
				t.Errorf("POST: %d %s", resp.StatusCode, body)
			}
			for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
				for _, u := range []string{target.url + fetch, target.url + fetch + "?connect=v1&encoding=json&message=" + msg} {
					resp, _ := do(m, u, "")
					if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
						t.Errorf("%s %s: %d Allow=%q, want 405 Allow=POST", m, u, resp.StatusCode, resp.Header.Get("Allow"))
					}
				}
			}
		})
	}
}

// invalidUTF8 marks rawAnswer's entry to carry bytes that are not UTF-8.
var invalidUTF8 = &loggingpb.LogEntry{}

// rawAnswer answers a Connect unary FetchLogs with e encoded by hand, so
// it can carry what a well-behaved encoder would refuse.
func rawAnswer(e *loggingpb.LogEntry, opts ...*loggingpb.LogEntry) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		entry, err := proto.Marshal(e)
		if err != nil {
			panic(err)
		}
		if len(opts) > 0 && opts[0] == invalidUTF8 {
			entry = protowire.AppendString(protowire.AppendTag(entry, 3, protowire.BytesType), "\xff\xfe")
		}
		body := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), entry)
		w.Header().Set("Content-Type", "application/proto")
		w.Write(body)
		return true
	}
}

// TestFederationPeerCompression: each peer is asked for the compression
// its entry names (zstd unless told otherwise; none on a LAN).
func TestFederationPeerCompression(t *testing.T) {
	spies := map[string]*spy{"z": newSpy(t, "z"), "g": newSpy(t, "g"), "n": newSpy(t, "n")}
	home := newFedNode(t, "home", map[string]string{"ops": opsKey}, peersJSON(
		peerEntry("z", spies["z"].srv.URL, "/etc/home-fed.key", ""),
		peerEntry("g", spies["g"].srv.URL, "/etc/home-fed.key", `,"compression":"gzip"`),
		peerEntry("n", spies["n"].srv.URL, "/etc/home-fed.key", `,"compression":"none"`),
	), nil)
	for name, want := range map[string]string{"z": "zstd,gzip", "g": "gzip", "n": "identity"} {
		resp, err := home.ops.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Cluster: name})
		if err != nil || len(resp.Entries) != 1 {
			t.Fatalf("%s: %v %v", name, resp, err)
		}
		if got := spies[name].requests()[0].Header.Get("Accept-Encoding"); got != want {
			t.Errorf("peer %s asked with Accept-Encoding %q, want %q", name, got, want)
		}
	}
}
