package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/relay"
)

func relayHealthOf(t *testing.T, s *Server) (int, relayHealthBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/health/relay", nil))
	var h relayHealthBody
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatalf("/health/relay body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, h
}

// A stopped relay is a relay problem, not a serving one: /health (what a
// readiness probe asks) stays 200 with the relay's state in its body, and
// /health/relay answers 503 saying why.
func TestRelayCorruptWatermarkMakesRelayHealth503(t *testing.T) {
	target := newTestServer(t, nil)
	src := newTestServer(t, func(c *Config) {
		c.Cluster = "east"
		c.Relay = RelayConfig{Address: "http://" + target.http.Listener.Addr().String()}
		fs := c.FS.(*vfs.MemFS)
		if err := fs.MkdirAll("/data/relay"); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFileAtomic(fs, "/data/relay/state.json", []byte("{not json")); err != nil {
			t.Fatal(err)
		}
	})
	var rh relayHealthBody
	waitFor(t, "the relay to report the corrupt watermark", func() bool {
		var code int
		code, rh = relayHealthOf(t, src.srv)
		return code == http.StatusServiceUnavailable
	})
	if rh.Status != "stopped" || rh.Relay == nil || !rh.Relay.Stopped || rh.Relay.State != string(relay.StateCorruptWatermark) ||
		!strings.Contains(rh.Error, "state.json") {
		t.Fatalf("/health/relay = %+v, want stopped naming the watermark file", rh)
	}
	code, h := healthOf(t, src.srv)
	if code != http.StatusOK || h.Status != "ready" || h.Relay == nil || !h.Relay.Stopped {
		t.Fatalf("/health = %d %+v, want 200 ready with the relay shown stopped", code, h)
	}
}

func TestRelayHealthWithoutRelayIs404(t *testing.T) {
	s := newTestServer(t, nil)
	code, h := relayHealthOf(t, s.srv)
	if code != http.StatusNotFound || !strings.Contains(h.Error, "--relay-address") {
		t.Fatalf("/health/relay without a relay = %d %+v", code, h)
	}
}

// The open health bodies never carry the relay's producer id: knowing it
// is what lets another writer push under it.
func TestRelayHealthBodiesHideProducer(t *testing.T) {
	target := newTestServer(t, nil)
	src := newTestServer(t, func(c *Config) {
		c.Cluster = "east"
		c.Relay = RelayConfig{Address: "http://" + target.http.Listener.Addr().String()}
	})
	producer := src.srv.relay.f.Status().Producer
	if !strings.HasPrefix(producer, "east/") {
		t.Fatalf("producer = %q", producer)
	}
	for _, path := range []string{"/health", "/health/relay"} {
		rec := httptest.NewRecorder()
		src.srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if strings.Contains(rec.Body.String(), producer) || strings.Contains(rec.Body.String(), "producer") {
			t.Errorf("%s shows the producer: %s", path, rec.Body.String())
		}
	}
}

// Lag past --relay-health-max-lag-rows is unhealthy even while the relay
// merely backs off (here: the target is not up), and says how far behind.
func TestRelayHealthLagThreshold(t *testing.T) {
	src := newTestServer(t, func(c *Config) {
		c.Cluster = "east"
		c.Relay = RelayConfig{Address: "http://127.0.0.1:1", HealthMaxLagRows: 2}
	})
	for i := 0; i < 3; i++ {
		if _, err := src.c.Push(t.Context(), &loggingpb.PushLogsRequest{Key: "/job/a", Entries: []*loggingpb.LogEntry{entry("row")}}); err != nil {
			t.Fatal(err)
		}
	}
	var rh relayHealthBody
	waitFor(t, "the relay to report its lag", func() bool {
		var code int
		code, rh = relayHealthOf(t, src.srv)
		if code == http.StatusServiceUnavailable {
			return true
		}
		src.clk.Advance(relay.DefaultMaxBackoff)
		return false
	})
	if rh.Status != "lagging" || rh.Relay.LagRows != 3 || !strings.Contains(rh.Error, "--relay-health-max-lag-rows 2") {
		t.Fatalf("/health/relay = %+v, want lagging by 3 rows naming the flag", rh)
	}
	if code, _ := healthOf(t, src.srv); code != http.StatusOK {
		t.Fatalf("/health = %d; a lagging relay must not fail the serving probe", code)
	}
}
