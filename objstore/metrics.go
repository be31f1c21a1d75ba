package objstore

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tierMetrics are no-ops on a nil receiver (no Registerer).
type tierMetrics struct {
	uploads  prometheus.Counter
	bytes    prometheus.Counter
	failures prometheus.Counter
	putSecs  prometheus.Histogram
}

func newTierMetrics(reg prometheus.Registerer, t *Tier) *tierMetrics {
	if reg == nil {
		return nil
	}
	m := &tierMetrics{
		uploads:  prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_objstore_uploads_total", Help: "Segments uploaded and verified."}),
		bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_objstore_upload_bytes_total", Help: "Segment bytes uploaded and verified."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_objstore_step_failures_total", Help: "Uploads, manifest publishes and deletes that failed and will be retried with backoff."}),
		putSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "finelog_objstore_upload_seconds", Help: "Time to upload and verify one segment.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	lagSecs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "finelog_objstore_upload_lag_seconds",
		Help: "Age of the oldest sealed segment not yet uploaded: what a lost local disk would lose beyond the WAL."},
		func() float64 { d, _ := t.lag(); return d.Seconds() })
	lagBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "finelog_objstore_upload_lag_bytes",
		Help: "Bytes of sealed segments not yet uploaded."},
		func() float64 { _, b := t.lag(); return float64(b) })
	for _, c := range []prometheus.Collector{m.uploads, m.bytes, m.failures, m.putSecs, lagSecs, lagBytes} {
		reg.MustRegister(c)
	}
	return m
}

func (m *tierMetrics) uploaded(size int64, d time.Duration) {
	if m == nil {
		return
	}
	m.uploads.Inc()
	m.bytes.Add(float64(size))
	m.putSecs.Observe(d.Seconds())
}

func (m *tierMetrics) failed() {
	if m == nil {
		return
	}
	m.failures.Inc()
}

// cacheMetrics are no-ops on a nil receiver.
type cacheMetrics struct {
	hits, misses prometheus.Counter
	readSecs     prometheus.Histogram
}

func newCacheMetrics(reg prometheus.Registerer, c *Cache) *cacheMetrics {
	if reg == nil {
		return nil
	}
	m := &cacheMetrics{
		hits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_objstore_cache_hits_total", Help: "Remote segment blocks served from the local cache."}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "finelog_objstore_cache_misses_total", Help: "Remote segment blocks fetched from the bucket."}),
		readSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "finelog_objstore_remote_read_seconds", Help: "Latency of one ranged GET of a remote segment block.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	used := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "finelog_objstore_cache_bytes", Help: "Bytes held by the remote segment cache."},
		func() float64 { return float64(c.Used()) })
	for _, x := range []prometheus.Collector{m.hits, m.misses, m.readSecs, used} {
		reg.MustRegister(x)
	}
	return m
}

func (m *cacheMetrics) hit() {
	if m != nil {
		m.hits.Inc()
	}
}

func (m *cacheMetrics) miss(d time.Duration) {
	if m != nil {
		m.misses.Inc()
		m.readSecs.Observe(d.Seconds())
	}
}
