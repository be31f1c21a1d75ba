package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus/testutil"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/relay"
)

func scrape(t *testing.T, e *testEnv) string {
	t.Helper()
	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: HTTP %d", resp.StatusCode)
	}
	return string(b)
}

func TestMetricsOperatorSeries(t *testing.T) {
	e := newTestServer(t, nil)
	body := scrape(t, e)
	for _, want := range []string{
		`finelog_build_info{goversion="go`,
		`finelog_auth_denied_total{reason="token_expired"} 0`, // before any denial
		`finelog_auth_denied_total{reason="peer_not_allowed"} 0`,
		`finelog_store_errors_total{op="flush"} 0`,
		`finelog_store_retention_deleted_rows_total 0`,
		`finelog_store_retention_deleted_bytes_total 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(body, `revision="`) || !strings.Contains(body, `version="`) {
		t.Errorf("finelog_build_info lacks version/revision labels")
	}
}

func TestResourceExhaustedHasAReason(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	var full atomic.Bool
	full.Store(true)
	e.fs.Inject = func(op vfs.Op, name string) error {
		if full.Load() && (op == vfs.OpWrite || op == vfs.OpSync) {
			return vfs.ErrNoSpace
		}
		return nil
	}
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/df", Entries: []*loggingpb.LogEntry{entry("x")}}); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("push on a full disk: %v", err)
	}
	full.Store(false)
	push := loggingpbconnect.LogServicePushLogsProcedure
	if got := testutil.ToFloat64(e.srv.m.requests.WithLabelValues(push, "resource_exhausted", "disk_full")); got != 1 {
		t.Errorf("requests{resource_exhausted, disk_full} = %v, want 1", got)
	}

	// Busy: the in-flight budget is held, the limiter refuses before the
	// Connect handler (and its interceptor) ever runs.
	lim := newInflightLimit(10, 10, time.Millisecond, func() {})
	if err := lim.sem.Acquire(ctx, 10); err != nil {
		t.Fatal(err)
	}
	in := newIntake(lim, 10, time.Second, time.Minute)
	read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			_ = connect.NewErrorWriter().Write(w, r, err)
		}
	})
	h := e.srv.m.countInFlight(in.wrap(read))
	req := httptest.NewRequest("POST", push, strings.NewReader("12345"))
	req.Header.Set("Content-Type", "application/proto")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("busy: HTTP %d", rec.Code)
	}
	if got := testutil.ToFloat64(e.srv.m.requests.WithLabelValues(push, "resource_exhausted", "busy")); got != 1 {
		t.Errorf("requests{resource_exhausted, busy} = %v, want 1", got)
	}
}

func TestRelayPushLatencyAndEgressBytes(t *testing.T) {
	target := newTestServer(t, func(c *Config) { c.Cluster = "global" })
	src := newTestServer(t, func(c *Config) {
		c.Cluster = "east"
		c.Relay = RelayConfig{Address: "http://" + target.http.Listener.Addr().String(), Options: relay.Options{Backfill: true}}
	})
	data := strings.Repeat("payload ", 200)
	if _, err := src.c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/job/m", Entries: []*loggingpb.LogEntry{entry(data)}}); err != nil {
		t.Fatal(err)
	}
	var count, egress float64 = -1, -1
	// The target applies the row before the relay's push returns, so wait
	// for the relay to have seen its ack, not only for the row.
	waitFor(t, "an acked relay push", func() bool {
		src.clk.Advance(100 * time.Millisecond)
		for _, l := range strings.Split(scrape(t, src), "\n") {
			if v, ok := strings.CutPrefix(l, `finelog_relay_push_duration_seconds_count{result="ok"} `); ok {
				count = parseFloat(t, v)
			}
			if v, ok := strings.CutPrefix(l, `finelog_relay_egress_bytes_total `); ok {
				egress = parseFloat(t, v)
			}
		}
		return count >= 1
	})
	resp, err := target.c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: "/job/m", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil || len(resp.Entries) != 1 {
		t.Fatalf("target after an acked push: %v %v", resp, err)
	}
	if count < 1 {
		t.Errorf("push latency histogram count %v, want at least one ok push", count)
	}
	// The row is ~1.6 KB of data; gzip shrinks it, but some bytes left.
	if egress <= 0 {
		t.Errorf("egress bytes %v, want > 0", egress)
	}
}

func parseFloat(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	if _, err := fmt.Sscan(s, &f); err != nil {
		t.Fatalf("metric value %q: %v", s, err)
	}
	return f
}
