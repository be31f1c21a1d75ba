package federation

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	partial  prometheus.Counter
	stale    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_federation_requests_total",
			Help: "FetchLogs calls this store made to peers, by peer and outcome (ok or the Connect code the caller saw).",
		}, []string{"peer", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "finelog_federation_request_seconds",
			Help:    "Latency of FetchLogs calls to peers (long-polls included), by peer.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"peer"}),
		partial: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_federation_fanout_partial_total",
			Help: "Fan-out reads (cluster \"*\") answered without at least one cluster, or with a stale copy of it.",
		}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_federation_stale_answers_total",
			Help: "Reads of an unreachable peer answered from this store's relayed copy (fallback local), by peer.",
		}, []string{"peer"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.latency = register(reg, m.latency)
		m.partial = register(reg, m.partial)
		m.stale = register(reg, m.stale)
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same name (several routers in one test process share a registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
