package server

import (
	"errors"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/internal/buildinfo"
)

// countedKey marks a request's context with a flag the interceptor sets,
// so countInFlight knows whether the request was already counted.
type countedKey struct{}

// exhaustedReason is the reason label of finelog_rpc_requests_total: a full
// disk and a busy server are both resource_exhausted on the wire but call
// for different actions. Empty for every other code.
func exhaustedReason(err error) string {
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		return ""
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		switch ce.Meta().Get(client.RetryHeader) {
		case "busy":
			return "busy"
		case "disk-full":
			return "disk_full"
		}
	}
	return "limit"
}

// buildInfoMetric is finelog_build_info: constant 1, labelled with what the
// binary was built from, so a dashboard shows which version runs where.
func buildInfoMetric() prometheus.Collector {
	bi := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "finelog_build_info",
		Help: "Always 1; the labels say which build of finelogd this is.",
		ConstLabels: prometheus.Labels{
			"version":   bi.Version,
			"revision":  bi.Revision,
			"goversion": bi.GoVersion,
		},
	})
	g.Set(1)
	return g
}
