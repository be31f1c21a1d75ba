package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/loggen"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
	"google.golang.org/protobuf/proto"
)

// The wire benchmark reads from a data dir of 5M generated lines over 1000
// keys (the daemon's memtable and segment sizes, flushed and compacted),
// built once under os.TempDir() and reused. Bump the version when the
// segment format or the generator changes.
const (
	wireBenchRows    = 5_000_000
	wireBenchKeys    = 1000
	wireBenchVersion = 1
)

var wireBenchStart = time.Date(2026, 11, 24, 3, 53, 22, 0, time.UTC)

var wireBenchOnce struct {
	sync.Once
	dir string
	err error
}

func wireBenchDataDir(b *testing.B) string {
	wireBenchOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("finelog-bench-wire-v%d", wireBenchVersion))
		wireBenchOnce.dir = dir
		if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
			return
		}
		os.RemoveAll(dir)
		b.Logf("building the wire benchmark data dir in %s (once)", dir)
		wireBenchOnce.err = buildWireBenchStore(filepath.Join(dir, "store"))
		if wireBenchOnce.err == nil {
			wireBenchOnce.err = os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644)
		}
	})
	if wireBenchOnce.err != nil {
		b.Fatal(wireBenchOnce.err)
	}
	return wireBenchOnce.dir
}

func buildWireBenchStore(dir string) error {
	ctx := context.Background()
	s, err := store.Open(store.Options{FS: vfs.OS{}, Dir: dir})
	if err != nil {
		return err
	}
	defer s.Close()
	// Rows arrive shaped like PushLogs requests (one key, 1-200 lines).
	g := loggen.New(42, wireBenchStart, wireBenchKeys)
	batch := make([]store.Row, 0, 20000)
	for n := 0; n < wireBenchRows; {
		for _, l := range g.Push(200) {
			if n == wireBenchRows {
				break
			}
			batch = append(batch, store.Row{Key: l.Key, Source: "stdout", Data: l.Data, EpochMS: l.EpochMS, Level: l.Level})
			n++
		}
		if len(batch) >= 10000 || n == wireBenchRows {
			if _, err := s.Append(ctx, store.Batch{Rows: batch}); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := s.Flush(ctx); err != nil {
		return err
	}
	if err := s.Compact(ctx); err != nil {
		return err
	}
	return s.Close()
}

// BenchmarkFetchTailWire is a FetchLogs tail of 1000 lines of one key in
// 5M, read in the same iteration in process (the handler's read: store
// fetch plus conversion to the response message) and over a loopback
// HTTP/1.1 server through the Go client, which accepts gzip as net/http
// does (Accept-Encoding: gzip). wire-ms/op minus inproc-ms/op is the wire's cost: marshalling,
// compression, the copy through the kernel and the client's unmarshal.
//
//	go test ./server -run '^$' -bench FetchTailWire -benchtime 200x
func BenchmarkFetchTailWire(b *testing.B) {
	dir := wireBenchDataDir(b)
	srv, err := New(Config{DataDir: dir, Cluster: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(func() { hs.Close(); srv.Close() })
	keys := loggen.New(0, wireBenchStart, wireBenchKeys).Keys()
	ctx := context.Background()
	req := func(i int) *loggingpb.FetchLogsRequest {
		return &loggingpb.FetchLogsRequest{Source: keys[(i*7919)%len(keys)], Tail: true, MaxLines: 1000, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}
	}
	// accept=gzip is a local client (answered uncompressed by policy);
	// proxied is the same client behind a reverse proxy, answered as a
	// remote peer is (gzip); identity accepts no compression at all.
	for _, accept := range []string{"gzip", "gzip-proxied", "identity"} {
		b.Run("accept="+accept, func(b *testing.B) {
			opts := []client.Option{client.WithRetry(1, 0, 0)}
			switch accept {
			case "identity":
				// Unregistering gzip leaves the client accepting nothing.
				opts = append(opts, client.WithConnectOptions(connect.WithAcceptCompression("gzip", nil, nil)))
			case "gzip-proxied":
				hc := client.HTTP1Client()
				hc.Transport = &headerSpy{next: hc.Transport, add: http.Header{"X-Forwarded-For": {"198.51.100.7"}}}
				opts = append(opts, client.WithHTTPClient(hc))
			}
			c := client.New(hs.URL, opts...)
			var seen string
			c2 := client.New(hs.URL, append(opts, client.WithResponseHeaders(func(h http.Header) { seen = h.Get("Content-Encoding") }))...)
			if _, err := c2.Fetch(ctx, req(0)); err != nil {
				b.Fatal(err)
			}
			var inproc, wire time.Duration
			var wireBytes int
			i := 0
			for b.Loop() {
				t0 := time.Now()
				local, err := localReads{srv}.FetchLogs(ctx, req(i))
				t1 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				remote, err := c.Fetch(ctx, req(i))
				t2 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				if len(local.Entries) != 1000 || len(remote.Entries) != 1000 {
					b.Fatalf("tail returned %d rows in process and %d over the wire, want 1000", len(local.Entries), len(remote.Entries))
				}
				inproc += t1.Sub(t0)
				wire += t2.Sub(t1)
				wireBytes = proto.Size(remote)
				i++
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
			b.ReportMetric(ms(inproc), "inproc-ms/op")
			b.ReportMetric(ms(wire), "wire-ms/op")
			b.ReportMetric(ms(wire-inproc), "overhead-ms/op")
			b.ReportMetric(float64(wireBytes), "msg-bytes")
			b.Logf("response Content-Encoding %q", seen)
		})
	}
}
