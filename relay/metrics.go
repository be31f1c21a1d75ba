package relay

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Failure classes, the values of finelog_relay_failures_total{class}.
const (
	ClassUnavailable      = "unavailable"       // target unreachable, timing out, overloaded, or an unexpected code: retried with backoff
	ClassAuth             = "auth"              // unauthenticated / permission_denied: retried slowly, state auth_failing
	ClassInvalidArgument  = "invalid_argument"  // a batch the target rejected; split and dead-lettered
	ClassSource           = "source"            // reading the local store failed
	ClassState            = "state"             // writing the watermark or dead-letter file failed
	ClassCorruptWatermark = "corrupt_watermark" // the relay is stopped until the operator fixes the watermark
	ClassSourceBehind     = "source_behind"     // the local store is behind the resume point (reset store, reused producer id)
	ClassTargetIsSource   = "target_is_source"  // the relay is pushing into its own store
	ClassCorruptSeed      = "corrupt_seed"      // the relay is stopped until the operator fixes the seed file
	ClassTargetAhead      = "target_ahead"      // the target's mark for this producer is past anything the relay sent
)

var failureClasses = []string{ClassUnavailable, ClassAuth, ClassInvalidArgument, ClassSource, ClassState, ClassCorruptWatermark, ClassSourceBehind, ClassTargetIsSource, ClassCorruptSeed, ClassTargetAhead}

type metrics struct {
	lagRows      prometheus.Gauge
	lagSeconds   prometheus.Gauge
	forwarded    prometheus.Counter
	deadLettered prometheus.Counter
	filtered     prometheus.Counter
	sourceGap    prometheus.Counter
	targetLoss   prometheus.Counter
	targetAhead  prometheus.Gauge
	failures     *prometheus.CounterVec
	lastSuccess  prometheus.Gauge
	watermark    prometheus.Gauge
	up           *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lagRows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finelog_relay_lag_rows",
			Help: "Source rows not yet forwarded (source last seq minus relay watermark).",
		}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finelog_relay_lag_seconds",
			Help: "Seconds since the relay first saw the backlog it has not yet drained (0 when caught up).",
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_relay_forwarded_rows_total",
			Help: "Rows acked by the target and committed to the watermark.",
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_relay_dead_lettered_rows_total",
			Help: "Rows the target rejected as invalid, written to the dead-letter file.",
		}),
		filtered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_relay_loop_guard_rows_total",
			Help: "Rows not forwarded because they belong to another cluster (loop guard).",
		}),
		sourceGap: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_relay_source_gap_rows_total",
			Help: "Seqs the source no longer had when the relay reached them (deleted by retention before forwarding).",
		}),
		targetLoss: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_relay_target_lost_rows_total",
			Help: "Seqs the target acked earlier but no longer reports as applied for this producer (target data loss, seen at relay start).",
		}),
		targetAhead: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finelog_relay_target_ahead_seqs",
			Help: "How far the target's applied mark for this relay's producer is past anything the relay sent (0 unless someone else pushes under its producer id; the relay is then stopped).",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_relay_failures_total",
			Help: "Relay failures by class.",
		}, []string{"class"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finelog_relay_last_success_timestamp_seconds",
			Help: "Unix time of the last push the target acked or the last step that found the relay caught up.",
		}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finelog_relay_watermark_seq",
			Help: "Source seq up to which every row is forwarded, dead-lettered or filtered.",
		}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "finelog_relay_state",
			Help: "1 for the relay's current state, 0 for the others.",
		}, []string{"state"}),
	}
	// Pre-create every label value so dashboards see zeros, not gaps.
	for _, c := range failureClasses {
		m.failures.WithLabelValues(c)
	}
	for _, s := range allStates {
		m.up.WithLabelValues(string(s))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.lagRows, m.lagSeconds, m.forwarded, m.deadLettered, m.filtered, m.sourceGap, m.targetLoss, m.targetAhead, m.failures, m.lastSuccess, m.watermark, m.up} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) setState(s State) {
	for _, o := range allStates {
		v := 0.0
		if o == s {
			v = 1
		}
		m.up.WithLabelValues(string(o)).Set(v)
	}
}
