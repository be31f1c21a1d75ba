package auth

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/internal/clock"
)

// MiddlewareOptions configures Middleware. Every field may be left zero.
type MiddlewareOptions struct {
	// Logger receives denial lines (rate-limited). Nil discards them.
	Logger *slog.Logger
	// Registerer receives finelog_auth_denied_total and
	// finelog_auth_admitted_total. Nil skips registration.
	Registerer prometheus.Registerer
	// Clock drives the log rate limiter. Nil is the wall clock.
	Clock clock.Clock
}

// Denial log rate limit: a burst of logBurst lines, refilled at one line per
// logEvery. A flood of bad requests must not become a flood of log lines
// (that is its own denial of service), but the first ones, and a steady
// trickle after, are what an operator needs. Suppressed lines are counted
// and reported on the next line that gets through.
const (
	logBurst = 10
	logEvery = time.Second
)

// Middleware gates every request through p. Denied requests get 401
// (unauthenticated) or 403 (permission denied), in the caller's protocol:
// gRPC and gRPC-Web get a trailers-only grpc-status response (16 or 7);
// Connect (application/connect+*, application/json, application/proto, or a
// Connect GET) gets the Connect JSON error body with HTTP 401/403; anything
// else gets text. Admitted requests carry the Identity in their context.
// The server mounts /health outside this middleware.
func Middleware(p *Policy, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if p == nil {
		// A gate without a policy is a wiring bug; failing at start beats
		// guessing whether it should admit or deny.
		panic("auth.Middleware: nil policy (use auth.Load, which falls back to loopback only)")
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	denied := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "finelog_auth_denied_total",
		Help: "Requests refused by the auth policy, by reason.",
	}, []string{"reason"})
	admitted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "finelog_auth_admitted_total",
		Help: "Requests admitted by the auth policy, by deciding layer type.",
	}, []string{"kind"})
	if opts.Registerer != nil {
		denied = registerOrReuse(opts.Registerer, denied)
		admitted = registerOrReuse(opts.Registerer, admitted)
	}
	for _, c := range denialCauses {
		denied.WithLabelValues(c.label)
	}
	lim := &logLimiter{clk: clk, tokens: logBurst}
	ew := connect.NewErrorWriter()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v := p.Admit(r.RemoteAddr, r.Header)
			if v.Admitted {
				admitted.WithLabelValues(v.Identity.Kind).Inc()
				next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), v.Identity)))
				return
			}
			denied.WithLabelValues(v.Cause).Inc()
			if ok, suppressed := lim.allow(); ok {
				// Path only: the query string is the client's to fill and
				// may carry a token someone tried to pass there.
				attrs := []any{
					slog.String("peer", r.RemoteAddr),
					slog.String("reason", v.Cause),
					slog.String("detail", v.Reason),
					slog.Int("layer", v.Layer),
					slog.String("code", v.Code.String()),
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
				}
				if suppressed > 0 {
					attrs = append(attrs, slog.Int("suppressed", suppressed))
				}
				logger.Warn("auth: request denied", attrs...)
			}
			writeDenial(w, r, ew, v)
		})
	}
}

// registerOrReuse registers c, or returns the collector already registered
// under the same name (several servers in one test process share a
// registry).
func registerOrReuse(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

type logLimiter struct {
	clk clock.Clock

	mu         sync.Mutex
	tokens     int
	last       time.Time
	suppressed int
}

// allow reports whether a line may be logged now and how many were
// suppressed since the last one that was.
func (l *logLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clk.Now()
	if l.last.IsZero() {
		l.last = now
	}
	if el := now.Sub(l.last); el >= logEvery {
		refill := int(el / logEvery)
		l.tokens = min(logBurst, l.tokens+refill)
		l.last = l.last.Add(time.Duration(refill) * logEvery)
	} else if el < 0 {
		// The clock went backwards: restart the interval, no refill.
		l.last = now
	}
	if l.tokens == 0 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

func writeDenial(w http.ResponseWriter, r *http.Request, ew *connect.ErrorWriter, v Verdict) {
	msg := v.Reason
	if v.Layer > 0 {
		msg += " (policy layer " + strconv.Itoa(v.Layer) + ")"
	}
	if v.Code != CodePermissionDenied {
		w.Header().Set("WWW-Authenticate", `Bearer realm="finelog"`)
	}
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(ct, "application/grpc"):
		// gRPC and gRPC-Web: trailers-only response with grpc-status.
		_ = ew.Write(w, r, connect.NewError(v.Code.ConnectCode(), errors.New(msg)))
	case isConnect(r, ct):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(v.Code.HTTPStatus())
		_ = json.NewEncoder(w).Encode(struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}{v.Code.ConnectCode().String(), msg})
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(v.Code.HTTPStatus())
		_, _ = w.Write([]byte(strings.ReplaceAll(v.Code.String(), "_", " ") + ": " + msg + "\n"))
	}
}

func isConnect(r *http.Request, ct string) bool {
	switch {
	case strings.HasPrefix(ct, "application/connect+"),
		strings.HasPrefix(ct, "application/json"),
		strings.HasPrefix(ct, "application/proto"):
		return true
	case r.Header.Get("Connect-Protocol-Version") != "":
		return true
	case r.Method == http.MethodGet && r.URL.Query().Get("connect") != "":
		return true
	}
	return false
}
