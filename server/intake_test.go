package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
)

// zstdBomb is size zero bytes compressed: a few KiB that inflate to size.
func zstdBomb(t *testing.T, size int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for i := 0; i < size/len(zero); i++ {
		w.Write(zero)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// A zstd bomb is refused once it has inflated one byte past
// --max-request-bytes: the decompressor is never asked for the rest (the
// RPC library would inflate all of it just to report its size), and the
// refusal is invalid_argument naming the limit.
func TestZstdBombInflatesOnlyToTheLimit(t *testing.T) {
	const limit = 1 << 20
	e := newTestServer(t, func(c *Config) { c.MaxRequestBytes = limit })
	var inflated atomic.Int64
	e.srv.intake.onInflate = func(n int) { inflated.Add(int64(n)) }
	bomb := zstdBomb(t, 256<<20)
	t.Logf("bomb: %d bytes inflating to %d", len(bomb), 256<<20)

	send := func(name string, req *http.Request, hc *http.Client) {
		t.Helper()
		inflated.Store(0)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status")
		if !strings.Contains(string(b), "invalid_argument") && status != "3" {
			t.Errorf("%s: %d %s (grpc-status %q), want invalid_argument", name, resp.StatusCode, b, status)
		}
		msg := string(b) + resp.Trailer.Get("Grpc-Message")
		if !strings.Contains(msg, "1048576-byte limit") {
			t.Errorf("%s: error %q does not name the limit", name, msg)
		}
		if got := inflated.Load(); got > limit+1 {
			t.Errorf("%s: the decompressor produced %d bytes, want at most the limit + 1 (%d)", name, got, limit+1)
		}
	}
	connectReq, _ := http.NewRequest("POST", e.http.URL+loggingpbconnect.LogServicePushLogsProcedure, bytes.NewReader(bomb))
	connectReq.Header.Set("Content-Type", "application/proto")
	connectReq.Header.Set("Content-Encoding", "zstd")
	send("connect unary", connectReq, http.DefaultClient)

	env := append([]byte{1, 0, 0, 0, 0}, bomb...)
	binary.BigEndian.PutUint32(env[1:5], uint32(len(bomb)))
	grpcReq, _ := http.NewRequest("POST", e.http.URL+loggingpbconnect.LogServicePushLogsProcedure, bytes.NewReader(env))
	grpcReq.Header.Set("Content-Type", "application/grpc")
	grpcReq.Header.Set("Grpc-Encoding", "zstd")
	grpcReq.Header.Set("Te", "trailers")
	send("grpc over h2c", grpcReq, h2cClient())

	if _, err := e.c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/after", Entries: []*loggingpb.LogEntry{entry("ok")}}); err != nil {
		t.Fatalf("push after the bombs: %v", err)
	}
}

func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// A body larger than the limit can never succeed: refused at once by its
// declared length (Content-Length, or a gRPC envelope's length) with a
// non-retryable invalid_argument naming the limit, before it is read.
func TestOversizeDeclaredRefusedAtOnce(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.MaxRequestBytes = 1 << 20 })
	// Content-Length 40 MiB, but only a few bytes sent: the answer comes
	// without the server waiting for the rest.
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", e.http.URL+loggingpbconnect.LogServicePushLogsProcedure, pr)
	req.ContentLength = 40 << 20
	req.Header.Set("Content-Type", "application/proto")
	go pw.Write([]byte("partial"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "invalid_argument") || !strings.Contains(string(b), "1048576-byte limit") {
		t.Fatalf("40 MiB Content-Length: %d %s, want 400 invalid_argument naming the limit", resp.StatusCode, b)
	}
	pw.Close()

	g := client.New(e.http.URL, client.WithGRPC(), client.WithRetry(1, 0, 0))
	_, err = g.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/big", Entries: []*loggingpb.LogEntry{entry(strings.Repeat("x", 2<<20))}})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || client.Retryable(err) || !strings.Contains(err.Error(), "--max-request-bytes") {
		t.Fatalf("2 MiB gRPC message: %v, want non-retryable invalid_argument naming --max-request-bytes", err)
	}
}

// The slow-body attack: requests that announce 32 MiB (by Content-Length
// over HTTP/1, by gRPC envelope over h2c) and then stall must not make
// other clients' pushes wait or fail busy; the stalled requests end at the
// body deadline.
func TestStalledBodiesDoNotStarveOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the body deadline")
	}
	const bodyTimeout = 2 * time.Second
	e := newTestServer(t, func(c *Config) { c.RequestBodyTimeout = bodyTimeout })
	addr := e.http.Listener.Addr().String()

	var stalled sync.WaitGroup
	ended := make(chan string, 4)
	// HTTP/1: two connections, Content-Length 32 MiB, 1 KiB sent.
	var conns []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: %d\r\n\r\n%s",
			loggingpbconnect.LogServicePushLogsProcedure, 32<<20, strings.Repeat("\x0a", 1024))
		stalled.Add(1)
		go func() {
			defer stalled.Done()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				ended <- "http/1 connection closed: " + err.Error()
				return
			}
			resp.Body.Close()
			ended <- "http/1 " + resp.Status
		}()
	}
	// h2c: one connection, two gRPC streams whose envelopes announce 32 MiB.
	h2 := h2cClient()
	var pipes []*io.PipeWriter
	for range 2 {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		req, _ := http.NewRequest("POST", e.http.URL+loggingpbconnect.LogServicePushLogsProcedure, pr)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		stalled.Add(1)
		go func() {
			defer stalled.Done()
			resp, err := h2.Do(req)
			if err != nil {
				ended <- "h2 " + err.Error()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ended <- "h2 grpc-status " + resp.Trailer.Get("Grpc-Status")
		}()
		env := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(env[1:], 32<<20)
		go func() { pw.Write(append(env, make([]byte, 1024)...)) }()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		for _, pw := range pipes {
			pw.Close()
		}
		stalled.Wait()
		h2.CloseIdleConnections()
	}()
	waitFor(t, "the four stalled requests in flight", func() bool {
		return testutil.ToFloat64(e.srv.m.inFlight.WithLabelValues(loggingpbconnect.LogServicePushLogsProcedure)) >= 4
	})

	// Victims: ordinary pushes and fetches, while the attack holds.
	start := time.Now()
	for i := range 20 {
		if _, err := e.c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/victim", Entries: []*loggingpb.LogEntry{entry(fmt.Sprint(i))}}); err != nil {
			t.Fatalf("victim push %d during the attack: %v", i, err)
		}
	}
	if got, err := e.c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: "/victim", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}); err != nil || len(got.Entries) != 20 {
		t.Fatalf("victim fetch during the attack: %d rows, %v", len(got.GetEntries()), err)
	}
	t.Logf("20 victim pushes + 1 fetch during the attack: %v", time.Since(start))
	if n := testutil.ToFloat64(e.srv.m.busy); n != 0 {
		t.Fatalf("%v busy rejections during the attack, want 0", n)
	}

	// The stalled requests lose their place at the body deadline.
	for range 4 {
		select {
		case how := <-ended:
			t.Logf("stalled request ended: %s", how)
		case <-time.After(bodyTimeout + 20*time.Second):
			t.Fatal("a stalled request was still held well past the body deadline")
		}
	}
}

// A zstd frame that asks for a window larger than the server's limit is
// refused before the decoder allocates it (a 7 KB body could otherwise cost
// 32 MiB each); the relay's 1 MiB and zstd's usual 8 MiB are accepted.
func TestZstdWindowLimit(t *testing.T) {
	e := newTestServer(t, nil)
	push := func(window int) (int, string) {
		t.Helper()
		req := &loggingpb.PushLogsRequest{Key: "/w"}
		for range 20 {
			req.Entries = append(req.Entries, entry(strings.Repeat("z", 512<<10)))
		}
		msg, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		w, _ := zstd.NewWriter(&out, zstd.WithWindowSize(window), zstd.WithEncoderConcurrency(1))
		w.Write(msg)
		w.Close()
		hreq, _ := http.NewRequest("POST", e.http.URL+loggingpbconnect.LogServicePushLogsProcedure, bytes.NewReader(out.Bytes()))
		hreq.Header.Set("Content-Type", "application/proto")
		hreq.Header.Set("Content-Encoding", "zstd")
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	for _, win := range []int{1 << 20, zstdServerMaxWindow} {
		if code, body := push(win); code != http.StatusOK {
			t.Errorf("zstd window %d MiB: %d %s, want 200", win>>20, code, body)
		}
	}
	if code, body := push(32 << 20); code != http.StatusBadRequest || !strings.Contains(body, "window") {
		t.Errorf("zstd window 32 MiB: %d %s, want 400 naming the window", code, body)
	}
}
