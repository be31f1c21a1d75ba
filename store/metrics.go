package store

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on Options.Registerer; every method is a no-op on
// a nil *metrics (no Registerer).
type metrics struct {
	reg          prometheus.Registerer
	appends      prometheus.Counter
	rows         prometheus.Counter
	bytes        prometheus.Counter
	fsync        prometheus.Histogram
	retainedSegs prometheus.Counter
	retainedRows prometheus.Counter
	retainedSize prometheus.Counter
	failures     *prometheus.CounterVec
	stall        prometheus.Counter
	writes       *prometheus.HistogramVec
	orderWaits   prometheus.Counter
	segBytes     *prometheus.CounterVec
	collectors   []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{reg: reg}
	m.appends = prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_store_appends_total", Help: "Append batches acknowledged."})
	m.rows = prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_store_rows_total", Help: "Rows appended."})
	m.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_store_append_bytes_total", Help: "Row bytes appended."})
	m.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "finelog_store_fsync_seconds", Help: "WAL write+fdatasync latency per group commit.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	m.retainedSegs = prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_store_retention_deleted_segments_total", Help: "Segments deleted by retention."})
	m.retainedRows = prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_store_retention_deleted_rows_total", Help: "Rows deleted by retention."})
	m.retainedSize = prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_store_retention_deleted_bytes_total", Help: "Segment file bytes deleted by retention."})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "finelog_store_errors_total",
		Help: "Store operations that failed, by operation (wal_append: batches not acknowledged; flush: rows stay in the WAL; compact; retain). Each is also logged."}, []string{"op"})
	for _, op := range storeOps {
		m.failures.WithLabelValues(op)
	}
	m.stall = prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_store_ingest_stall_seconds_total",
		Help: "Time appends waited because memtables held 3x MemtableBytes and flushing had not caught up."})
	m.writes = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "finelog_store_segment_write_seconds",
		Help: "Time to write one segment, by kind (flush or merge).", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}, []string{"kind"})
	m.orderWaits = prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_store_producer_order_waits_total",
		Help: "Times a producer batch that arrived before an earlier one of its producer waited for it instead of being refused."})
	m.segBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "finelog_store_segment_written_bytes_total",
		Help: "Segment file bytes written, by kind (flush or merge); over finelog_store_append_bytes_total it is the write amplification of flushing and compaction (the WAL writes each row once more)."}, []string{"kind"})
	for _, kind := range []string{"flush", "merge"} {
		m.segBytes.WithLabelValues(kind)
	}
	gauge := func(name, help string, f func(Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(s.Stats()) })
	}
	m.collectors = []prometheus.Collector{m.appends, m.rows, m.bytes, m.fsync, m.retainedSegs, m.retainedRows, m.retainedSize, m.failures, m.stall, m.writes, m.orderWaits, m.segBytes,
		gauge("finelog_store_segments", "Segment files.", func(st Stats) float64 { return float64(st.Segments) }),
		gauge("finelog_store_segment_bytes", "Bytes in segment files.", func(st Stats) float64 { return float64(st.SegmentBytes) }),
		gauge("finelog_store_memtable_bytes", "Bytes held in memtables.", func(st Stats) float64 { return float64(st.MemtableBytes) }),
		gauge("finelog_store_wal_bytes", "Bytes in WAL files.", func(st Stats) float64 { return float64(st.WALBytes) }),
		gauge("finelog_store_last_seq", "Highest acknowledged seq.", func(st Stats) float64 { return float64(st.LastSeq) }),
		gauge("finelog_store_producers", "Idempotent producers remembered (limit MaxProducers).", func(st Stats) float64 { return float64(st.Producers) }),
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			// A second store on the same registry: keep going without the
			// duplicate series rather than failing Open.
			m.collectors[i] = nil
		}
	}
	return m
}

func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		if c != nil {
			m.reg.Unregister(c)
		}
	}
}

func (m *metrics) observeFsync(d time.Duration) {
	if m != nil {
		m.fsync.Observe(d.Seconds())
	}
}

func (m *metrics) appended(batches int, rows, bytes int64) {
	if m != nil {
		m.appends.Add(float64(batches))
		m.rows.Add(float64(rows))
		m.bytes.Add(float64(bytes))
	}
}

func (m *metrics) segmentsChanged() {}

func (m *metrics) stalled(d time.Duration) {
	if m != nil {
		m.stall.Add(d.Seconds())
	}
}

// wroteSegment notes one segment written (sg nil: the write failed).
func (m *metrics) wroteSegment(kind string, d time.Duration, sg *segment) {
	if m != nil {
		m.writes.WithLabelValues(kind).Observe(d.Seconds())
		if sg != nil {
			m.segBytes.WithLabelValues(kind).Add(float64(sg.size))
		}
	}
}

// storeOps are the op label values of finelog_store_errors_total.
var storeOps = []string{"wal_append", "flush", "compact", "retain"}

func (m *metrics) retained(victims []*segment) {
	if m != nil {
		m.retainedSegs.Add(float64(len(victims)))
		for _, sg := range victims {
			m.retainedRows.Add(float64(sg.rows))
			m.retainedSize.Add(float64(sg.size))
		}
	}
}

// failed counts a failed operation (one of storeOps).
func (m *metrics) failed(op string) {
	if m != nil {
		m.failures.WithLabelValues(op).Inc()
	}
}

func (m *metrics) orderWait() {
	if m == nil {
		return
	}
	m.orderWaits.Inc()
}
