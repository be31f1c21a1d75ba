package relay

import (
	"context"
	"errors"
	"io"
	"net/http"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/store"
)

// EgressMetrics are the daemon relay's network-side series: how long a
// push takes on the wire and how many bytes leave the cluster, which is
// what an egress bill and a slow global store show up in. Wrap the relay's
// HTTP client with Client and its sink with Sink.
type EgressMetrics struct {
	pushSeconds *prometheus.HistogramVec
	egressBytes prometheus.Counter
}

// NewEgressMetrics registers finelog_relay_push_duration_seconds and
// finelog_relay_egress_bytes_total on reg (nil: unregistered).
func NewEgressMetrics(reg prometheus.Registerer) *EgressMetrics {
	m := &EgressMetrics{
		pushSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "finelog_relay_push_duration_seconds",
			Help:    "Latency of one relay push to the target (until the target's durable ack), by result (ok or the Connect code).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"result"}),
		egressBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "finelog_relay_egress_bytes_total",
			Help: "Request body bytes the relay sent to its target, as on the wire (after compression), retries included.",
		}),
	}
	if reg != nil {
		m.pushSeconds = registerOrExisting(reg, m.pushSeconds)
		m.egressBytes = registerOrExisting(reg, m.egressBytes)
	}
	// Pre-create the common results so dashboards see 0, not nothing.
	m.pushSeconds.WithLabelValues("ok")
	return m
}

func registerOrExisting[C prometheus.Collector](reg prometheus.Registerer, c C) C {
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

// Client returns hc counting the request bytes it sends.
func (m *EgressMetrics) Client(hc connect.HTTPClient) connect.HTTPClient {
	return countingClient{next: hc, m: m}
}

// Sink returns s observing every Push's latency on clk.
func (m *EgressMetrics) Sink(s Sink, clk clock.Clock) Sink {
	return timedSink{Sink: s, clk: clk, m: m}
}

// timedSink observes every Push's latency.
type timedSink struct {
	Sink
	clk clock.Clock
	m   *EgressMetrics
}

func (t timedSink) Push(ctx context.Context, b Batch) (store.Ack, error) {
	start := t.clk.Now()
	ack, err := t.Sink.Push(ctx, b)
	result := "ok"
	if err != nil {
		result = connect.CodeOf(err).String()
	}
	t.m.pushSeconds.WithLabelValues(result).Observe(t.clk.Now().Sub(start).Seconds())
	return ack, err
}

// countingClient counts request body bytes as the HTTP client reads them
// to send, so the figure is what left, compressed, retries included.
type countingClient struct {
	next connect.HTTPClient
	m    *EgressMetrics
}

func (c countingClient) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r2 := r.Clone(r.Context())
		r2.Body = countingBody{r.Body, c.m.egressBytes}
		r = r2
	}
	return c.next.Do(r)
}

type countingBody struct {
	io.ReadCloser
	n prometheus.Counter
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(float64(n))
	return n, err
}
