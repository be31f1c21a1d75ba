package server

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/internal/vfs"
)

func rpcRequest(length int64, encoding string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/finelog.logging.LogService/PushLogs", strings.NewReader(""))
	r.ContentLength = length
	r.Header.Set("Content-Type", "application/proto")
	r.Header.Set("Connect-Protocol-Version", "1")
	if encoding != "" {
		r.Header.Set("Content-Encoding", encoding)
	}
	return r
}

func TestInflightLimitWeights(t *testing.T) {
	l := newInflightLimit(1000, 400, time.Second, func() {})
	for _, tc := range []struct {
		length   int64
		encoding string
		want     int64
	}{
		{100, "", 100},
		{30, "gzip", 240},  // compressed: 8x its length
		{100, "zstd", 400}, // capped at the per-request limit
		{-1, "", 400},      // unknown length: the per-request limit
		{0, "", 1},
	} {
		if got := l.weight(rpcRequest(tc.length, tc.encoding)); got != tc.want {
			t.Errorf("weight(len %d, %q) = %d, want %d", tc.length, tc.encoding, got, tc.want)
		}
	}
}

// Requests past the in-flight limit wait their turn; one that waits too
// long is refused with a retryable resource_exhausted naming the limit, and
// the next one after the holders finish runs.
func TestInflightLimitBackpressure(t *testing.T) {
	var rejected atomic.Int32
	l := newInflightLimit(100, 100, 50*time.Millisecond, func() { rejected.Add(1) })
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	h := l.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusOK)
	}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.ServeHTTP(httptest.NewRecorder(), rpcRequest(80, ""))
	}()
	<-entered // 80 of 100 bytes held

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, rpcRequest(30, "")) // needs 30: waits 50 ms, refused
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "resource_exhausted") ||
		!strings.Contains(rec.Body.String(), "--max-inflight-request-bytes") {
		t.Fatalf("over the limit: %d %s; want 429 resource_exhausted naming the flag", rec.Code, rec.Body)
	}
	if rec.Header().Get(client.RetryHeader) == "" {
		t.Errorf("busy refusal not marked retryable (%s missing): %v", client.RetryHeader, rec.Header())
	}
	if rejected.Load() != 1 {
		t.Errorf("rejections counted: %d, want 1", rejected.Load())
	}

	// A small request that fits beside the holder runs at once.
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.ServeHTTP(httptest.NewRecorder(), rpcRequest(20, ""))
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("a request that fits the remaining 20 bytes did not run")
	}
	close(release)
	wg.Wait()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, rpcRequest(100, ""))
	<-entered
	if rec.Code != http.StatusOK {
		t.Fatalf("after the holders finished: %d, want 200", rec.Code)
	}
}

func TestInflightLimitBelowRequestLimitRefused(t *testing.T) {
	_, err := New(Config{FS: vfs.NewMemFS(), DataDir: "/d", MaxRequestBytes: 1 << 20, MaxInflightRequestBytes: 1 << 10})
	if err == nil || !strings.Contains(err.Error(), "--max-inflight-request-bytes") {
		t.Fatalf("in-flight limit below the request limit: %v, want a start error naming the flag", err)
	}
}

// gRPC bodies have no Content-Length; their envelope prefix says how long
// the message is, and the body still reads whole afterwards.
func TestInflightLimitWeighsGRPCEnvelope(t *testing.T) {
	l := newInflightLimit(1<<20, 1<<20, time.Second, func() {})
	msg := bytes.Repeat([]byte("m"), 3000)
	for _, tc := range []struct {
		flag byte
		want int64
	}{{0, 3000}, {1, 3000 * compressedWeight}} {
		body := append([]byte{tc.flag, 0, 0, 0x0b, 0xb8}, msg...) // 0x0bb8 = 3000
		r := httptest.NewRequest(http.MethodPost, "/finelog.logging.LogService/PushLogs", bytes.NewReader(body))
		r.ContentLength = -1
		r.Header.Set("Content-Type", "application/grpc+proto")
		if got := l.weight(r); got != tc.want {
			t.Errorf("flag %d: weight %d, want %d", tc.flag, got, tc.want)
		}
		rest, _ := io.ReadAll(r.Body)
		if !bytes.Equal(rest, body) {
			t.Errorf("flag %d: body after the peek differs (%d bytes, want %d)", tc.flag, len(rest), len(body))
		}
	}
}
