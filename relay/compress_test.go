package relay

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/wirecompress"
)

// switchable serves the LogService with or without zstd, as a finelogd of
// this version or an older one behind the same address.
type switchable struct {
	withZstd, plain http.Handler
	zstd            atomic.Bool
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.zstd.Load() {
		s.withZstd.ServeHTTP(w, r)
	} else {
		s.plain.ServeHTTP(w, r)
	}
}

// The relay sends zstd only to a target whose responses list it in
// Accept-Encoding, and goes back to gzip when an older target takes the
// address; every batch arrives either way.
func TestClientSinkNegotiatesZstd(t *testing.T) {
	svc := &recordingService{}
	mux := func(opts ...connect.HandlerOption) http.Handler {
		m := http.NewServeMux()
		path, h := loggingpbconnect.NewLogServiceHandler(svc, opts...)
		m.Handle(path, h)
		return m
	}
	sw := &switchable{withZstd: mux(wirecompress.HandlerOptions()...), plain: mux()}
	sw.zstd.Store(true)
	wc := &wireCounter{next: sw}
	srv := httptest.NewServer(wc)
	defer srv.Close()
	defer srv.Client().CloseIdleConnections()
	sink := NewClientSink(srv.URL, srv.Client(), nil, 0)
	ctx := context.Background()
	b := Batch{Producer: "east/abc", Cluster: "east", FirstSeq: 1, LastSeq: 500, Rows: realisticRows(500, 1)}
	push := func(want string) {
		t.Helper()
		if _, err := sink.Push(ctx, b); err != nil {
			t.Fatalf("push (want %s): %v", want, err)
		}
		if enc, _ := wc.encoding.Load().(string); enc != want {
			t.Fatalf("request Content-Encoding = %q, want %q", enc, want)
		}
	}
	push("gzip") // nothing learned yet
	if _, err := sink.ProducerState(ctx, "east/abc"); err != nil {
		t.Fatal(err)
	}
	push("zstd")
	// An older finelogd (no zstd) takes the address: the zstd push is
	// refused as unimplemented, and the retry goes out as gzip.
	sw.zstd.Store(false)
	if _, err := sink.Push(ctx, b); connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("zstd push to a gzip-only target: %v, want unimplemented", err)
	}
	push("gzip")
	// Its responses do not list zstd, so asking again keeps gzip.
	if _, err := sink.ProducerState(ctx, "east/abc"); err != nil {
		t.Fatal(err)
	}
	push("gzip")
	if n := len(svc.pushes); n != 4 {
		t.Fatalf("target decoded %d pushes, want 4", n)
	}
	for i, p := range svc.pushes {
		if len(p.GetEntries()) != 500 {
			t.Fatalf("push %d decoded %d entries, want 500", i, len(p.GetEntries()))
		}
	}
}
