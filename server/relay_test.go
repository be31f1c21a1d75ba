package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

func healthOf(t *testing.T, s *Server) (int, healthStatus) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	var h healthStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatalf("health body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, h
}

// waitFor polls cond (a state check, not a duration) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 10000 {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRelayForwardsToTarget(t *testing.T) {
	target := newTestServer(t, func(c *Config) { c.Cluster = "global" })
	src := newTestServer(t, func(c *Config) {
		c.Cluster = "east"
		// Backfill: the push below may land before the relay's first step,
		// which would otherwise start after it.
		c.Relay = RelayConfig{Address: "http://" + target.http.Listener.Addr().String(), Options: relay.Options{Backfill: true}}
	})
	_, err := src.c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/job/a", Entries: []*loggingpb.LogEntry{entry("relayed")}})
	if err != nil {
		t.Fatal(err)
	}
	var got []*loggingpb.LogEntry
	waitFor(t, "the row at the target", func() bool {
		// The relay runs on the source's fake clock: if its first step ran
		// before the push, it wakes on the change signal and then lingers
		// (or polls) on that clock, which only moves when the test moves it.
		src.clk.Advance(100 * time.Millisecond)
		resp, err := target.c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: "/job/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
		if err != nil {
			t.Fatal(err)
		}
		got = resp.Entries
		return len(got) > 0
	})
	if len(got) != 1 || got[0].Data != "relayed" || got[0].Cluster != "east" {
		t.Fatalf("target has %v, want the row with cluster east", got)
	}
	code, h := healthOf(t, src.srv)
	if code != http.StatusOK || h.Relay == nil || h.Relay.Target == "" {
		t.Fatalf("source health %d %+v, want 200 with relay status", code, h)
	}
	// The open /health must not tell anyone the relay's producer id.
	id, err := vfs.ReadFile(src.fs, "/data/relay/producer")
	if err != nil || !strings.HasPrefix(string(id), "east/") {
		t.Fatalf("relay producer id file: %q %v", id, err)
	}
	rec := httptest.NewRecorder()
	src.srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	if body := rec.Body.String(); strings.Contains(body, strings.TrimSpace(string(id))) || strings.Contains(body, "producer") {
		t.Fatalf("/health shows the producer id: %s", body)
	}
}

func TestRelayFlagsWithoutAddressRejected(t *testing.T) {
	_, err := New(Config{FS: vfs.NewMemFS(), DataDir: "/d", Relay: RelayConfig{TokenFile: "/t"}})
	if err == nil {
		t.Fatal("relay flags without --relay-address accepted")
	}
	_, err = New(Config{FS: vfs.NewMemFS(), DataDir: "/d", Relay: RelayConfig{Address: "http://x:1"}})
	if err == nil {
		t.Fatal("--relay-address without --cluster accepted")
	}
}

// In-process targets (relay.StoreSink, the simulation's network) must give
// the relay the same Connect code the server gives a remote relay for
// every store error, or the relay would classify them differently.
func TestStoreErrorCodesMatchInProcessTargets(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	for _, err := range []error{store.ErrInvalidArgument, store.ErrProducerGap, store.ErrNoSpace, store.ErrClosed,
		context.Canceled, context.DeadlineExceeded, errors.New("something else")} {
		wrapped := fmt.Errorf("store: %w", err)
		if got, want := connect.CodeOf(relay.StoreErrorToConnect(wrapped)), connect.CodeOf(s.storeError("push", wrapped)); got != want {
			t.Errorf("%v: in-process target answers %v, server answers %v", err, got, want)
		}
	}
}
