package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

func TestLoadProducerID(t *testing.T) {
	m := vfs.NewMemFS()
	m.MkdirAll("/r")
	id, err := LoadProducerID(m, "/r/producer", "east")
	if err != nil || !strings.HasPrefix(id, "east/") || len(id) != len("east/")+16 {
		t.Fatalf("id = %q, %v", id, err)
	}
	m.Crash(nil) // the id must be durable once returned
	again, err := LoadProducerID(m, "/r/producer", "east")
	if err != nil || again != id {
		t.Fatalf("after crash: %q, %v; want %q", again, err, id)
	}
	if _, err := LoadProducerID(m, "/r/producer", "west"); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Fatalf("cluster renamed: err = %v", err)
	}
	other := vfs.NewMemFS()
	other.MkdirAll("/r")
	if id2, _ := LoadProducerID(other, "/r/producer", "east"); id2 == id {
		t.Fatal("two stores got the same producer id")
	}
}

// targetService is a minimal global finelogd: PushLogs and
// GetProducerState over a real store, as the server does it.
type targetService struct {
	loggingpbconnect.UnimplementedLogServiceHandler
	st    *store.Store
	token string
}

func (s *targetService) check(h http.Header) error {
	if s.token != "" && h.Get("Authorization") != "Bearer "+s.token {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("bad token"))
	}
	return nil
}

func (s *targetService) PushLogs(ctx context.Context, req *connect.Request[loggingpb.PushLogsRequest]) (*connect.Response[loggingpb.PushLogsResponse], error) {
	if err := s.check(req.Header()); err != nil {
		return nil, err
	}
	m := req.Msg
	rows := make([]store.Row, len(m.GetEntries()))
	for i, e := range m.GetEntries() {
		c := e.GetCluster()
		if c == "" {
			c = m.GetCluster()
		}
		rows[i] = store.Row{Seq: e.GetSeq(), Key: e.GetKey(), Source: e.GetSource(), Data: e.GetData(), EpochMS: e.GetTimestamp().GetEpochMs(), AttemptID: e.GetAttemptId(), Level: int32(e.GetLevel()), Cluster: c}
	}
	ack, err := StoreSink{Store: s.st}.Push(ctx, Batch{Producer: m.GetProducer(), FirstSeq: m.GetFirstSeq(), LastSeq: m.GetLastSeq(), Rows: rows})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loggingpb.PushLogsResponse{FirstSeq: ack.First, LastSeq: ack.Last, ProducerAppliedSeq: ack.ProducerApplied}), nil
}

func (s *targetService) GetProducerState(_ context.Context, req *connect.Request[loggingpb.GetProducerStateRequest]) (*connect.Response[loggingpb.GetProducerStateResponse], error) {
	if err := s.check(req.Header()); err != nil {
		return nil, err
	}
	seq, known := s.st.ProducerApplied(req.Msg.GetProducer())
	return connect.NewResponse(&loggingpb.GetProducerStateResponse{AppliedSeq: seq, Known: known}), nil
}

func openStore(t testing.TB, fsys vfs.FS, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(store.Options{FS: fsys, Dir: dir, Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func appendRows(t testing.TB, st *store.Store, rows []store.Row) {
	t.Helper()
	for len(rows) > 0 {
		n := min(len(rows), 5000)
		if _, err := st.Append(context.Background(), store.Batch{Rows: rows[:n]}); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
}

func serveTarget(t testing.TB, svc *targetService) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(loggingpbconnect.NewLogServiceHandler(svc))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Client().CloseIdleConnections()
		srv.Close()
	})
	return srv
}

// TestDaemonRelayBetweenRealStores runs the daemon's relay (NewForStore:
// ClientSink over Connect with gzip and a token file) from one real store
// to another over loopback, then loses the watermark and restarts: the
// target still holds every row exactly once.
func TestDaemonRelayBetweenRealStores(t *testing.T) {
	srcFS, dstFS := vfs.NewMemFS(), vfs.NewMemFS()
	src := openStore(t, srcFS, "/east/data")
	defer src.Close()
	dst := openStore(t, dstFS, "/global/data")
	defer dst.Close()
	srv := serveTarget(t, &targetService{st: dst, token: "s3cret-token"})
	if err := vfs.WriteFileAtomic(srcFS, "/east/token", []byte("s3cret-token\n")); err != nil {
		t.Fatal(err)
	}
	rows := realisticRows(6_000, 7)
	appendRows(t, src, rows)

	cfg := DaemonConfig{Address: srv.URL, TokenFile: "/east/token", StatePath: "/east/data/relay/state.json", Backfill: true, Cluster: "east", FS: srcFS, Clock: clock.NewFake(t0)}
	f, err := NewForStore(src, cfg, "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.Watermark != 6_000 || st.Forwarded != 6_000 {
		t.Fatalf("status = %+v", st)
	}
	// Lose the watermark (a new disk for the relay state, same producer):
	// the relay resumes from the target's applied mark, no duplicates.
	if err := srcFS.Remove(cfg.StatePath); err != nil {
		t.Fatal(err)
	}
	appendRows(t, src, realisticRows(1_500, 8))
	f, err = NewForStore(src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := dst.Scan(context.Background(), 0, 100_000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	all := append(rows, realisticRows(1_500, 8)...)
	if len(got) != len(all) {
		t.Fatalf("target has %d rows, want %d", len(got), len(all))
	}
	for i := range all {
		if got[i].Key != all[i].Key || got[i].Data != all[i].Data || got[i].Cluster != "east" {
			t.Fatalf("target row %d = %+v, want %+v from cluster east", i, got[i], all[i])
		}
	}
}

func TestNewForStoreRefusesBadFlags(t *testing.T) {
	fsys := vfs.NewMemFS()
	st := openStore(t, fsys, "/data")
	defer st.Close()
	fsys.MkdirAll("/keys")
	vfs.WriteFileAtomic(fsys, "/keys/short", []byte("too-short\n"))
	vfs.WriteFileAtomic(fsys, "/keys/empty", []byte("\n"))
	base := DaemonConfig{Address: "http://global:8080", StatePath: "/data/relay/state.json", Cluster: "east", FS: fsys}
	for _, tc := range []struct {
		name, want string
		mutate     func(*DaemonConfig)
		self       []string
	}{
		{"self", "itself", nil, []string{"http://GLOBAL:8080/"}},
		{"no cluster", "--cluster", func(c *DaemonConfig) { c.Cluster = "" }, nil},
		{"bad url", "--relay-address", func(c *DaemonConfig) { c.Address = "global:8080" }, nil},
		{"credentials in url", "credentials", func(c *DaemonConfig) { c.Address = "https://relay:hunter2@global:8443" }, nil},
		{"both creds", "both", func(c *DaemonConfig) { c.KeyFile, c.TokenFile = "/keys/short", "/keys/empty" }, nil},
		{"short key", "at least 32", func(c *DaemonConfig) { c.KeyFile = "/keys/short" }, nil},
		{"empty token", "empty", func(c *DaemonConfig) { c.TokenFile = "/keys/empty" }, nil},
		{"missing token", "relay-token-file", func(c *DaemonConfig) { c.TokenFile = "/keys/nope" }, nil},
	} {
		cfg := base
		if tc.mutate != nil {
			tc.mutate(&cfg)
		}
		_, err := NewForStore(st, cfg, tc.self...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

func TestDaemonRelayMintsTokensFromKey(t *testing.T) {
	fsys := vfs.NewMemFS()
	st := openStore(t, fsys, "/data")
	defer st.Close()
	svc := &recordingService{}
	srv, _ := newTestServer(t, svc)
	vfs.WriteFileAtomic(fsys, "/key", []byte(strings.Repeat("k", 32)+"\n"))
	appendRows(t, st, realisticRows(10, 1))
	f, err := NewForStore(st, DaemonConfig{Address: srv.URL, KeyFile: "/key", StatePath: "/data/relay/state.json", Cluster: "east", Backfill: true, FS: fsys, Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(svc.auth) == 0 || !strings.HasPrefix(svc.auth[0], "Bearer ey") {
		t.Fatalf("Authorization headers = %q", svc.auth)
	}
	if p := svc.pushes[0].GetProducer(); !strings.HasPrefix(p, "east/") {
		t.Errorf("producer = %q", p)
	}
	for _, a := range svc.auth {
		if strings.Contains(f.Status().LastError, a) {
			t.Fatal("token leaked into status")
		}
	}
}

// TestDaemonRelayIntoItselfStops points the relay at its own store under a
// URL the daemon does not know is its own: it stops after one batch.
func TestDaemonRelayIntoItselfStops(t *testing.T) {
	fsys := vfs.NewMemFS()
	st := openStore(t, fsys, "/data")
	defer st.Close()
	srv := serveTarget(t, &targetService{st: st})
	appendRows(t, st, realisticRows(1000, 1))
	f, err := NewForStore(st, DaemonConfig{Address: srv.URL, StatePath: "/data/relay/state.json", Cluster: "east", Backfill: true, BatchRows: 100, FS: fsys, Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := f.Step(context.Background()); !errors.Is(err, ErrTargetIsSource) {
			t.Fatalf("step %d: err = %v", i, err)
		}
	}
	if got := st.LastSeq(); got != 1100 {
		t.Fatalf("store grew to %d rows; want 1000 plus the one looped batch of 100", got)
	}
	if s := f.Status(); s.State != StateTargetIsSource || s.Healthy() {
		t.Fatalf("status = %+v", s)
	}
}
