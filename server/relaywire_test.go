package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

// relayHost is the part of a source finelogd that builds its relay: a real
// store on MemFS and the Server fields buildRelay reads.
type relayHost struct {
	fs  *vfs.MemFS
	st  *store.Store
	srv *Server
}

func newRelayHost(t *testing.T, r RelayConfig, self ...string) *relayHost {
	t.Helper()
	h := &relayHost{fs: vfs.NewMemFS()}
	st, err := store.Open(store.Options{FS: h.fs, Dir: "/east/data/store", Clock: clock.NewFake(epoch)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.st = st
	if r.StatePath == "" {
		r.StatePath = "/east/data/relay/state.json"
	}
	h.srv = &Server{
		cfg:  Config{Cluster: "east", FS: h.fs, Relay: r},
		clk:  clock.NewFake(epoch),
		log:  slog.New(slog.DiscardHandler),
		reg:  prometheus.NewRegistry(),
		self: self,
	}
	return h
}

func (h *relayHost) add(t *testing.T, n int, tag string) {
	t.Helper()
	rows := make([]store.Row, n)
	for i := range rows {
		rows[i] = store.Row{Key: fmt.Sprintf("/job/%d", i%7), Data: fmt.Sprintf("%s-%d", tag, i)}
	}
	if _, err := h.st.Append(context.Background(), store.Batch{Rows: rows}); err != nil {
		t.Fatal(err)
	}
}

func (h *relayHost) relay(t *testing.T) *relay.Forwarder {
	t.Helper()
	h.srv.reg = prometheus.NewRegistry() // a new process
	f, err := h.srv.buildRelay(h.st)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func targetRows(t *testing.T, e *testEnv) []store.Row {
	t.Helper()
	ref := e.srv.st.Load()
	rows, err := ref.s.(*store.Store).Scan(context.Background(), 0, 1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// The daemon's relay (Connect with gzip, a token file) between two real
// finelogd servers; then the watermark is lost and the relay restarts: the
// target still holds every row exactly once.
func TestDaemonRelayBetweenRealServers(t *testing.T) {
	target, secret := jwtEnv(t)
	h := newRelayHost(t, RelayConfig{Address: target.http.URL, KeyFile: "/keys/east", Options: relay.Options{Backfill: true}}, "http://127.0.0.1:1")
	h.fs.MkdirAll("/keys")
	vfs.WriteFileAtomic(h.fs, "/keys/east", secret)
	h.add(t, 600, "a")
	f := h.relay(t)
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.Watermark != 600 || st.Forwarded != 600 {
		t.Fatalf("status = %+v", st)
	}
	if err := h.fs.Remove("/east/data/relay/state.json"); err != nil {
		t.Fatal(err)
	}
	h.add(t, 150, "b")
	f = h.relay(t)
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := targetRows(t, target)
	if len(got) != 750 {
		t.Fatalf("target has %d rows, want 750", len(got))
	}
	for i, r := range got {
		want := fmt.Sprintf("a-%d", i)
		if i >= 600 {
			want = fmt.Sprintf("b-%d", i-600)
		}
		if r.Data != want || r.Cluster != "east" {
			t.Fatalf("target row %d = %+v, want %s from cluster east", i, r, want)
		}
	}
}

func TestBuildRelayRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		mutate     func(*RelayConfig)
		self       []string
	}{
		{"self", "itself", nil, []string{"http://GLOBAL:8080/"}},
		{"bad url", "--relay-address", func(c *RelayConfig) { c.Address = "global:8080" }, nil},
		{"credentials in url", "credentials", func(c *RelayConfig) { c.Address = "https://relay:hunter2@global:8443" }, nil},
		{"both creds", "both", func(c *RelayConfig) { c.KeyFile, c.TokenFile = "/keys/short", "/keys/empty" }, nil},
		{"short key", "at least 32", func(c *RelayConfig) { c.KeyFile = "/keys/short" }, nil},
		{"empty token", "empty", func(c *RelayConfig) { c.TokenFile = "/keys/empty" }, nil},
		{"missing token", "relay-token-file", func(c *RelayConfig) { c.TokenFile = "/keys/nope" }, nil},
	} {
		r := RelayConfig{Address: "http://global:8080"}
		if tc.mutate != nil {
			tc.mutate(&r)
		}
		h := newRelayHost(t, r, tc.self...)
		h.fs.MkdirAll("/keys")
		vfs.WriteFileAtomic(h.fs, "/keys/short", []byte("too-short\n"))
		vfs.WriteFileAtomic(h.fs, "/keys/empty", []byte("\n"))
		_, err := h.srv.buildRelay(h.st)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name, want string
		cfg        Config
	}{
		{"no cluster", "--cluster", Config{Relay: RelayConfig{Address: "http://x:1"}}},
		{"audience without key", "--relay-audience", Config{Cluster: "east", Relay: RelayConfig{Address: "http://x:1", Audience: "global-store"}}},
		{"negative lag", "--relay-health-max-lag-rows", Config{Cluster: "east", Relay: RelayConfig{Address: "http://x:1", HealthMaxLagRows: -1}}},
		{"negative rows", "batch rows", Config{Cluster: "east", Relay: RelayConfig{Address: "http://x:1", Options: relay.Options{BatchRows: -1}}}},
		{"audience without address", "--relay-address", Config{Cluster: "east", Relay: RelayConfig{Audience: "g"}}},
	} {
		tc.cfg.FS, tc.cfg.DataDir = vfs.NewMemFS(), "/d"
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

// A global store whose jwt layer requires an audience refuses the relay's
// tokens without --relay-audience, and takes them with it (the setup
// docs/relay.md walks through).
func TestRelayAudience(t *testing.T) {
	secret := bytes.Repeat([]byte("k"), 48)
	target := newTestServer(t, func(c *Config) {
		c.Cluster = "global"
		c.AuthPolicy = `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"/keys/east"}],"audience":"global-store"}]`
		fs := c.FS.(*vfs.MemFS)
		fs.MkdirAll("/keys")
		vfs.WriteFileAtomic(fs, "/keys/east", secret)
	})
	for _, aud := range []string{"", "global-store"} {
		h := newRelayHost(t, RelayConfig{Address: target.http.URL, KeyFile: "/keys/east", Audience: aud, Options: relay.Options{Backfill: true}})
		h.fs.MkdirAll("/keys")
		vfs.WriteFileAtomic(h.fs, "/keys/east", secret)
		h.add(t, 10, "aud"+aud)
		_, err := h.relay(t).Step(context.Background())
		switch {
		case aud == "" && connect.CodeOf(err) != connect.CodePermissionDenied && connect.CodeOf(err) != connect.CodeUnauthenticated:
			t.Errorf("no audience: err = %v, want the target to refuse the token", err)
		case aud != "" && err != nil:
			t.Errorf("audience %q: %v", aud, err)
		}
	}
	if n := len(targetRows(t, target)); n != 10 {
		t.Fatalf("target holds %d rows, want the 10 sent with the audience", n)
	}
}

// Pointed at its own store under a URL the daemon does not know is its
// own, the relay stops after one batch.
func TestDaemonRelayIntoItselfStops(t *testing.T) {
	e := newTestServer(t, nil)
	st := e.srv.st.Load().s.(*store.Store)
	h := &relayHost{fs: e.fs, st: st, srv: &Server{
		cfg: Config{Cluster: "east", FS: e.fs, Relay: RelayConfig{Address: e.http.URL, StatePath: "/data/relay/state.json",
			Options: relay.Options{Backfill: true, BatchRows: 100}}},
		clk: clock.NewFake(epoch), log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(),
	}}
	h.add(t, 1000, "self")
	f := h.relay(t)
	for i := 0; i < 3; i++ {
		if _, err := f.Step(context.Background()); !errors.Is(err, relay.ErrTargetIsSource) {
			t.Fatalf("step %d: err = %v", i, err)
		}
	}
	if got := st.LastSeq(); got != 1100 {
		t.Fatalf("store grew to %d rows; want 1000 plus the one looped batch of 100", got)
	}
	if s := f.Status(); s.State != relay.StateTargetIsSource || !s.State.Stopped() {
		t.Fatalf("status = %+v", s)
	}
}
