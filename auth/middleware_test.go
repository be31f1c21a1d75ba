package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log sink safe for the server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type gate struct {
	handler http.Handler
	reg     *prometheus.Registry
	logs    *syncBuffer
	clk     *clock.Fake
	seen    chan Identity
}

// newGate wraps a handler that records the identity it was given.
func newGate(t *testing.T, policy string) *gate {
	t.Helper()
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	p, err := ParsePolicy([]byte(policy), nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{reg: prometheus.NewRegistry(), logs: &syncBuffer{}, clk: clk, seen: make(chan Identity, 100)}
	mw := Middleware(p, MiddlewareOptions{
		Logger:     slog.New(slog.NewJSONHandler(g.logs, nil)),
		Registerer: g.reg,
		Clock:      clk,
	})
	g.handler = mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		g.seen <- id
		w.WriteHeader(http.StatusTeapot)
	}))
	return g
}

func (g *gate) do(method, target, peer string, h http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader("{}"))
	r.RemoteAddr = peer
	for k, v := range h {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	g.handler.ServeHTTP(w, r)
	return w
}

const jwtThenCIDR = `[{"type":"jwt","keys":[{"cluster":"east","secret":"` + testSecret + `"}]},{"type":"cidr","cidrs":["10.0.0.0/8"]}]`

func validToken(t *testing.T, g *gate) string {
	t.Helper()
	tok, err := Mint(Secret(testSecret), "east", time.Hour, "", g.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestMiddlewareAdmitsWithIdentity(t *testing.T) {
	g := newGate(t, jwtThenCIDR)
	w := g.do("GET", "/metrics", "192.0.2.1:5000", bearer(validToken(t, g)))
	if w.Code != http.StatusTeapot {
		t.Fatalf("valid token: status %d, body %s", w.Code, w.Body)
	}
	if id := <-g.seen; id != (Identity{Kind: "jwt", Cluster: "east", Read: ReadAll}) {
		t.Fatalf("identity = %+v", id)
	}
	w = g.do("GET", "/debug/pprof/", "10.3.3.3:5000", nil)
	if w.Code != http.StatusTeapot {
		t.Fatalf("cidr peer: status %d", w.Code)
	}
	if id := <-g.seen; id != (Identity{Kind: "cidr", CIDR: "10.0.0.0/8", Read: ReadAll, Admin: true}) {
		t.Fatalf("identity = %+v", id)
	}
	if got := counterValue(t, g.reg, "finelog_auth_admitted_total", "kind", "jwt"); got != 1 {
		t.Fatalf("admitted{jwt} = %v", got)
	}
}

func TestMiddlewareDenialShapes(t *testing.T) {
	g := newGate(t, jwtThenCIDR)
	expired, err := Mint(Secret(testSecret), "east", time.Minute, "", g.clk.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cidrOnly := newGate(t, `[{"type":"cidr","cidrs":["10.0.0.0/8"]}]`)
	for _, tc := range []struct {
		name       string
		g          *gate
		method     string
		ctype      string
		extra      http.Header
		status     int
		grpcStatus string
		connect    string
		text       string
	}{
		{"plain http unauthenticated", g, "GET", "", nil, 401, "", "", "unauthenticated"},
		{"plain http permission denied", cidrOnly, "GET", "", nil, 403, "", "", "permission denied"},
		{"grpc unauthenticated", g, "POST", "application/grpc", nil, 200, "16", "", ""},
		{"grpc+proto permission denied", cidrOnly, "POST", "application/grpc+proto", nil, 200, "7", "", ""},
		{"grpc-web unauthenticated", g, "POST", "application/grpc-web+proto", nil, 200, "16", "", ""},
		{"connect unary proto", g, "POST", "application/proto", nil, 401, "", "unauthenticated", ""},
		{"connect unary json", cidrOnly, "POST", "application/json", nil, 403, "", "permission_denied", ""},
		{"connect streaming", g, "POST", "application/connect+proto", nil, 401, "", "unauthenticated", ""},
		{"connect get", g, "GET", "", http.Header{"Connect-Protocol-Version": {"1"}}, 401, "", "unauthenticated", ""},
		{"expired token over grpc", g, "POST", "application/grpc", bearer(expired), 200, "16", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.ctype != "" {
				h.Set("Content-Type", tc.ctype)
			}
			for k, v := range tc.extra {
				h[k] = v
			}
			w := tc.g.do(tc.method, "/finelog.logging.LogService/PushLogs", "192.0.2.1:5000", h)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d (body %q)", w.Code, tc.status, w.Body)
			}
			if tc.grpcStatus != "" {
				if got := w.Header().Get("Grpc-Status"); got != tc.grpcStatus {
					t.Fatalf("grpc-status = %q, want %q; headers %v", got, tc.grpcStatus, w.Header())
				}
				if w.Header().Get("Grpc-Message") == "" || w.Body.Len() != 0 {
					t.Fatalf("want a trailers-only response with grpc-message; headers %v body %q", w.Header(), w.Body)
				}
				if ct := w.Header().Get("Content-Type"); ct != tc.ctype {
					t.Fatalf("content-type = %q, want %q", ct, tc.ctype)
				}
			}
			if tc.connect != "" {
				var body struct{ Code, Message string }
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
					t.Fatalf("connect error body %q: %v", w.Body, err)
				}
				if body.Code != tc.connect || body.Message == "" {
					t.Fatalf("connect error = %+v, want code %s", body, tc.connect)
				}
				if ct := w.Header().Get("Content-Type"); ct != "application/json" {
					t.Fatalf("content-type = %q", ct)
				}
			}
			if tc.text != "" && !strings.HasPrefix(w.Body.String(), tc.text) {
				t.Fatalf("body = %q, want prefix %q", w.Body, tc.text)
			}
			if tc.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			select {
			case id := <-tc.g.seen:
				t.Fatalf("denied request reached the handler as %+v", id)
			default:
			}
		})
	}
}

// TestMiddlewareIgnoresQueryToken: a token in the query string is never
// read, and never logged.
func TestMiddlewareIgnoresQueryToken(t *testing.T) {
	g := newGate(t, jwtThenCIDR)
	tok := validToken(t, g)
	for _, q := range []string{"access_token", "token", "authorization", "jwt"} {
		w := g.do("GET", "/metrics?"+q+"="+tok, "192.0.2.1:5000", nil)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("?%s=<valid token>: status %d", q, w.Code)
		}
	}
	if strings.Contains(g.logs.String(), tok) || strings.Contains(g.logs.String(), tok[:30]) {
		t.Fatal("log contains the token")
	}
}

func TestMiddlewareMetricsAndRateLimitedLogs(t *testing.T) {
	g := newGate(t, jwtThenCIDR)
	bad := forge(t, map[string]any{"alg": "HS256"}, map[string]any{"exp": 4102444800}, "HS256", []byte(testSecret2))
	for i := 0; i < 100; i++ {
		g.do("POST", "/finelog.logging.LogService/PushLogs", "192.0.2.1:5000", bearer(bad))
	}
	g.do("GET", "/", "192.0.2.1:5000", nil)
	if got := counterValue(t, g.reg, "finelog_auth_denied_total", "reason", "token_signature"); got != 100 {
		t.Fatalf("denied{token_signature} = %v, want 100", got)
	}
	if got := counterValue(t, g.reg, "finelog_auth_denied_total", "reason", "no_credential"); got != 1 {
		t.Fatalf("denied{no_credential} = %v, want 1", got)
	}
	lines := logLines(t, g.logs.String())
	if len(lines) != logBurst {
		t.Fatalf("%d denial lines at one instant, want the burst of %d", len(lines), logBurst)
	}
	for _, l := range lines {
		if l["peer"] != "192.0.2.1:5000" || l["reason"] == "" {
			t.Fatalf("log line lacks peer or reason: %v", l)
		}
	}
	if strings.Contains(g.logs.String(), bad) || strings.Contains(g.logs.String(), strings.Split(bad, ".")[2]) {
		t.Fatal("log contains the token")
	}
	// Time passes; the next line reports how many were suppressed.
	g.clk.Advance(3 * time.Second)
	g.do("GET", "/", "192.0.2.1:5000", bearer(bad))
	lines = logLines(t, g.logs.String())
	last := lines[len(lines)-1]
	if last["suppressed"] != float64(91) {
		t.Fatalf("suppressed = %v, want 91 (line %v)", last["suppressed"], last)
	}
}

func logLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q} in registry", name, label, value)
	return 0
}

// TestMiddlewareRealClients runs the generated Connect client over all three
// protocols against a real HTTP/2 server: a denied call surfaces as the
// right Connect code, an admitted one reaches the service.
func TestMiddlewareRealClients(t *testing.T) {
	clk := clock.NewFake(time.Now())
	jwtOnly, err := ParsePolicy([]byte(`[{"type":"jwt","keys":[{"cluster":"east","secret":"`+testSecret+`"}]}]`), nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	refuseLoopback, err := ParsePolicy([]byte(`[{"type":"cidr","cidrs":["10.0.0.0/8"]}]`), nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Mint(Secret(testSecret), "east", time.Hour, "", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range []struct {
		name   string
		policy *Policy
	}{{"jwt", jwtOnly}, {"cidr", refuseLoopback}} {
		mux := http.NewServeMux()
		mux.Handle(loggingpbconnect.NewLogServiceHandler(loggingpbconnect.UnimplementedLogServiceHandler{}))
		srv := httptest.NewUnstartedServer(Middleware(pc.policy, MiddlewareOptions{Clock: clk})(mux))
		srv.EnableHTTP2 = true
		srv.StartTLS()
		for _, proto := range []struct {
			name string
			opt  []connect.ClientOption
		}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}, {"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}}} {
			c := loggingpbconnect.NewLogServiceClient(srv.Client(), srv.URL, proto.opt...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.PushLogs(ctx, connect.NewRequest(&loggingpb.PushLogsRequest{Key: "k"}))
			want := connect.CodeUnauthenticated
			if pc.name == "cidr" {
				want = connect.CodePermissionDenied
			}
			if connect.CodeOf(err) != want {
				t.Errorf("%s/%s without token: err = %v, want %v", pc.name, proto.name, err, want)
			}
			req := connect.NewRequest(&loggingpb.PushLogsRequest{Key: "k"})
			req.Header().Set("Authorization", "Bearer "+tok)
			_, err = c.PushLogs(ctx, req)
			cancel()
			want = connect.CodeUnimplemented // passed the gate, reached the service
			if pc.name == "cidr" {
				// A bearer is always verified; a cidr-only policy cannot.
				want = connect.CodeUnauthenticated
			}
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != want {
				t.Errorf("%s/%s with token: err = %v, want %v", pc.name, proto.name, err, want)
			}
		}
		srv.Close()
	}
}
