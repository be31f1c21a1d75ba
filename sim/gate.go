package sim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/server"
)

// The gate property: over every route the server answers, a request gets
// past the auth gate iff the reference model of the policy (ModelAdmit)
// admits it (and, on the admin routes, as an admin identity); only the open
// routes (openRoutes) admit everyone. "Past the gate" is any answer but 401
// and 403: a denied request is answered by the gate (or the admin check)
// itself, and nothing else behind it answers those codes to the requests
// sent here.

// openRoutes are the paths outside the gate, by design (DESIGN.md "Auth").
var openRoutes = map[string]bool{"/health": true, "/health/relay": true}

// adminRoute: /metrics and /debug/pprof/* need an admin identity on top of
// admission (docs/security.md): a cidr layer (admin unless it says
// otherwise) or a jwt key marked admin, which the generated policies never
// mark.
func adminRoute(path string) bool {
	return path == "/metrics" || strings.HasPrefix(path, "/debug/pprof/")
}

// GateRoutes lists every path the property sends requests to: every RPC
// of the LogService (from the generated descriptor, so a new RPC is covered
// without touching this list), /metrics, each /debug/pprof handler, /health
// and paths the server does not mount, which the gate must answer too.
func GateRoutes() []string {
	var routes []string
	methods := loggingpb.File_finelog_logging_logging_proto.Services().ByName("LogService").Methods()
	for i := 0; i < methods.Len(); i++ {
		routes = append(routes, "/finelog.logging.LogService/"+string(methods.Get(i).Name()))
	}
	return append(routes, "/finelog.logging.LogService/NoSuchMethod", "/metrics",
		"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/profile", "/debug/pprof/symbol", "/debug/pprof/trace",
		"/debug/pprof/heap", "/debug/pprof/goroutine", "/debug/", "/health", "/health/relay", "/health/", "/healthz", "/", "/nope")
}

// GateResult is what one request got.
type GateResult struct {
	Passed bool // answered by something behind the gate (or an open route)
	Code   int
}

// SendThroughGate builds finelogd's server with c's policy on a clock
// reading c.Now and sends one request from c.Peer with c.Header to path.
// The server has no store open: what answers behind the gate is the
// handler itself (an RPC says "starting", pprof and /metrics serve).
func SendThroughGate(c AuthCase, method, path string, defects server.Defects) (GateResult, error) {
	policy := ""
	if len(c.Policy.Layers) > 0 {
		policy = string(c.Policy.JSON())
	}
	srv, err := server.New(server.Config{DataDir: dataDir, Cluster: TargetName, AuthPolicy: policy, Defects: defects,
		FS: vfs.NewMemFS(), Clock: clock.NewFake(c.Now)})
	if err != nil {
		return GateResult{}, fmt.Errorf("server with policy %s: %w", c.Policy, err)
	}
	var body string
	if strings.HasPrefix(path, "/finelog.") {
		method, body = http.MethodPost, "{}"
	}
	req := httptest.NewRequest(method, "http://global"+path, strings.NewReader(body))
	req.RemoteAddr = c.Peer
	for k, vs := range c.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.HasSuffix(path, "/profile") || strings.HasSuffix(path, "/trace") {
		// Admitted, these record for 30 s (1 s) unless the client goes
		// away: this one has gone already.
		ctx, cancel := context.WithCancel(req.Context())
		cancel()
		req = req.WithContext(ctx)
	}
	rec := httptest.NewRecorder()
	start := time.Now()
	srv.Handler().ServeHTTP(rec, req)
	if d := time.Since(start); d > 5*time.Second {
		return GateResult{}, fmt.Errorf("%s %s took %v", method, path, d)
	}
	return GateResult{Passed: rec.Code != http.StatusUnauthorized && rec.Code != http.StatusForbidden, Code: rec.Code}, nil
}

// CheckGate is the gate property for one request.
func CheckGate(c AuthCase, method, path string, defects server.Defects) error {
	got, err := SendThroughGate(c, method, path, defects)
	if err != nil {
		return err
	}
	m := ModelAdmit(c.Policy, c.Peer, c.Header, c.Now)
	want := openRoutes[path] || (m.Admitted && (!adminRoute(path) || m.Identity == "cidr"))
	if got.Passed != want {
		return fmt.Errorf("gate: %s %s from %s, policy %s, token %s: the server answered %d (past the gate: %v), the model %s (%s)",
			method, path, c.Peer, c.Policy, c.Token, got.Code, got.Passed, map[bool]string{true: "admits", false: "denies"}[want], m.Why)
	}
	return nil
}
