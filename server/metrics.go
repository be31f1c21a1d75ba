package server

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
)

// metrics are the server's own series; the store and relay register theirs
// on the same registry.
type metrics struct {
	requests  *prometheus.CounterVec
	inFlight  *prometheus.GaugeVec
	duration  *prometheus.HistogramVec
	pushRows  prometheus.Counter
	pushBytes prometheus.Counter
	fetchRows prometheus.Counter
	busy      prometheus.Counter
	// connRefused: connections closed at accept by the connection caps.
	connRefused prometheus.Counter
	// longPollsShed: long-polls answered at once because the caps were full.
	longPollsShed prometheus.Counter
	clk           clock.Clock
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		clk: s.clk,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_rpc_requests_total",
			Help: "LogService requests by procedure, Connect code and, for resource_exhausted, reason (busy: retry later; disk_full: free space; limit: a per-request limit, permanent).",
		}, []string{"procedure", "code", "reason"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "finelog_rpc_in_flight",
			Help: "LogService requests being served now, from the first byte of the body (parked long-polls included).",
		}, []string{"procedure"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "finelog_rpc_duration_seconds",
			Help:    "LogService request latency by procedure (long-polls include their wait).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"procedure"}),
		pushRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_push_rows_total",
			Help: "Rows accepted by PushLogs and appended to the store.",
		}),
		pushBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_push_data_bytes_total",
			Help: "Bytes of log data (the data field) accepted by PushLogs.",
		}),
		fetchRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_fetch_rows_total",
			Help: "Rows returned by FetchLogs.",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_rpc_busy_rejections_total",
			Help: "Requests refused (resource_exhausted, retryable) because the bytes of requests in flight stayed at --max-inflight-request-bytes for the wait limit.",
		}),
	}
	m.connRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "finelog_connections_refused_total",
		Help: "Connections closed as soon as accepted because --max-connections or --max-connections-per-peer was reached.",
	})
	m.longPollsShed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "finelog_fetch_long_polls_shed_total",
		Help: "Long-polls (wait_ms) answered at once instead of parked because --max-long-polls or --max-long-polls-per-identity was reached.",
	})
	reg.MustRegister(m.connRefused, m.longPollsShed)
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "finelog_ready",
		Help: "1 when finelogd is serving, 0 while starting or stopping.",
	}, func() float64 {
		if state(s.state.Load()) == stateReady {
			return 1
		}
		return 0
	})
	reg.MustRegister(m.requests, m.inFlight, m.duration, m.pushRows, m.pushBytes, m.fetchRows, m.busy, up, buildInfoMetric())
	return m
}

func (m *metrics) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			proc := req.Spec().Procedure
			start := m.clk.Now()
			if seen, ok := ctx.Value(countedKey{}).(*bool); ok {
				*seen = true
			}
			resp, err := next(ctx, req)
			m.duration.WithLabelValues(proc).Observe(m.clk.Now().Sub(start).Seconds())
			code := "ok"
			if err != nil {
				code = connect.CodeOf(err).String()
			}
			m.requests.WithLabelValues(proc, code, exhaustedReason(err)).Inc()
			return resp, err
		}
	}
}

// countInFlight wraps the LogService handler so a request counts from the
// moment it arrives, before its body is read: a slow upload is in flight too.
func (m *metrics) countInFlight(next http.Handler) http.Handler {
	known := map[string]bool{
		loggingpbconnect.LogServicePushLogsProcedure:         true,
		loggingpbconnect.LogServiceFetchLogsProcedure:        true,
		loggingpbconnect.LogServiceGetProducerStateProcedure: true,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proc := r.URL.Path
		if !known[proc] {
			proc = "other" // bounded label cardinality
		}
		g := m.inFlight.WithLabelValues(proc)
		g.Inc()
		defer g.Dec()
		// A request refused before the Connect handler ran (busy) never
		// reaches the interceptor; count it here so requests_total has
		// every resource_exhausted with its reason.
		seen := new(bool)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), countedKey{}, seen)))
		if !*seen && w.Header().Get(client.RetryHeader) == "busy" {
			m.requests.WithLabelValues(proc, connect.CodeResourceExhausted.String(), "busy").Inc()
		}
	})
}
