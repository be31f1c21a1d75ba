package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/semaphore"

	"github.com/finelog/finelog/client"
)

// inflightLimit bounds the request bytes being read and decoded at once.
// --max-request-bytes bounds one request; without this a hundred clients
// each pushing a large batch would hold gigabytes between them, and the
// daemon would spend its time collecting garbage or be killed. A request
// waits (FIFO) for its share up to maxWait, then gets resource_exhausted
// marked retryable: backpressure a client backs off from, stated with the
// limit, rather than a crash.
type inflightLimit struct {
	sem      *semaphore.Weighted
	total    int64
	perReq   int64
	maxWait  time.Duration
	rejected func()
	ew       *connect.ErrorWriter
}

// compressedWeight: a compressed body is weighed at this multiple of its
// length (log lines compress about 4x; the decoded request is larger
// still), capped at the per-request limit.
const compressedWeight = 8

func newInflightLimit(total, perReq int64, maxWait time.Duration, rejected func()) *inflightLimit {
	return &inflightLimit{sem: semaphore.NewWeighted(total), total: total, perReq: perReq, maxWait: maxWait,
		rejected: rejected, ew: connect.NewErrorWriter()}
}

// weight is what a request is counted as: its body length, a multiple of
// it when compressed, never more than the per-request limit (which is at
// most the total, so every request can eventually run).
//
// gRPC and Connect streaming bodies carry no Content-Length, but they are
// enveloped: the first 5 bytes hold a compressed flag and the message
// length, so weight reads them (and puts them back) rather than counting
// every such request at the per-request limit, which let only two gRPC
// pushes run at once. A body of unknown length otherwise counts at the
// limit.
func (l *inflightLimit) weight(r *http.Request) int64 {
	n := r.ContentLength
	compressed := r.Header.Get("Content-Encoding") != ""
	if n < 0 {
		n = l.perReq
		if size, flagCompressed, ok := peekEnvelope(r); ok {
			n, compressed = size, flagCompressed
		}
	}
	if compressed {
		n *= compressedWeight
	}
	return max(1, min(n, l.perReq, l.total))
}

// peekEnvelope reads an enveloped body's 5-byte prefix and restores it.
func peekEnvelope(r *http.Request) (size int64, compressed, ok bool) {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/grpc") && !strings.HasPrefix(ct, "application/connect+") {
		return 0, false, false
	}
	var prefix [5]byte
	n, err := io.ReadFull(r.Body, prefix[:])
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(prefix[:n]), r.Body), r.Body}
	if err != nil {
		return 0, false, false // let the protocol handler report the short body
	}
	return int64(binary.BigEndian.Uint32(prefix[1:])), prefix[0]&1 != 0, true
}

func (l *inflightLimit) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := l.weight(r)
		ctx, cancel := context.WithTimeout(r.Context(), l.maxWait)
		err := l.sem.Acquire(ctx, n)
		cancel()
		if err != nil {
			if r.Context().Err() != nil {
				return // the client went away while waiting
			}
			l.rejected()
			ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
				"finelogd is busy: requests being read hold its limit of %d bytes (--max-inflight-request-bytes), and this one (counted as %d bytes) waited %s; retry with backoff",
				l.total, n, l.maxWait))
			ce.Meta().Set(client.RetryHeader, "busy")
			if l.ew.IsSupported(r) {
				_ = l.ew.Write(w, r, ce)
			} else {
				http.Error(w, ce.Message(), http.StatusTooManyRequests)
			}
			return
		}
		defer l.sem.Release(n)
		next.ServeHTTP(w, r)
	})
}

var errInflightConfig = errors.New("--max-inflight-request-bytes must be at least --max-request-bytes, so that one largest request can run")
