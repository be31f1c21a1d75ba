package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/semaphore"

	"github.com/finelog/finelog/client"
)

// inflightLimit bounds the request bytes held in memory at once.
// --max-request-bytes bounds one request; without this a hundred clients
// each pushing a large batch would hold gigabytes between them.
//
// A request is charged for the bytes it actually delivers (after
// decompression), as they arrive, and holds them until its handler
// returns. Nothing is charged for what a request only announces (a
// Content-Length or a gRPC envelope length): a client that declares 32 MiB
// and then stalls holds what it sent, not the budget. One identity may
// hold at most one largest request's worth (--max-request-bytes), so a
// single tenant's slow bodies cannot take everyone's share, and the body
// deadline ends a stalled request (see intake.go).
//
// When the budget is exhausted a request's first bytes wait (FIFO) up to
// maxWait; a request that already holds bytes waits only when no other
// holder does (see grow). Past that the request fails with
// resource_exhausted marked retryable: backpressure a client backs off
// from, stated with the limit, rather than a crash.
type inflightLimit struct {
	sem      *semaphore.Weighted
	total    int64
	perReq   int64
	maxWait  time.Duration
	rejected func()

	// grow is held by the one request that may wait for more budget while
	// already holding some. Holding and waiting is how partial holders
	// deadlock (each holds a part, all wait for more, none finishes): with
	// one waiter at a time, every other holder that cannot grow at once is
	// refused and gives its bytes back, so the waiter finishes.
	grow chan struct{}

	mu      sync.Mutex
	perUser map[string]*semaphore.Weighted
}

// chargeChunk is the granularity of charges: a request takes budget in
// steps of this size rather than per Read.
const chargeChunk = 64 << 10

func newInflightLimit(total, perReq int64, maxWait time.Duration, rejected func()) *inflightLimit {
	return &inflightLimit{sem: semaphore.NewWeighted(total), total: total, perReq: perReq, maxWait: maxWait,
		rejected: rejected, grow: make(chan struct{}, 1), perUser: map[string]*semaphore.Weighted{}}
}

// identity returns the per-identity share for key. Keys are identities of
// the policy (a jwt key label or a cidr prefix), so the map is bounded by
// the policy, not by clients.
func (l *inflightLimit) identity(key string) *semaphore.Weighted {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.perUser[key]
	if s == nil {
		s = semaphore.NewWeighted(l.perReq)
		l.perUser[key] = s
	}
	return s
}

// charge is one request's account against the limit.
type charge struct {
	l     *inflightLimit
	ctx   context.Context
	ident *semaphore.Weighted
	held  int64 // taken from both semaphores
	used  int64 // delivered to the handler (or buffered for it)
}

func (l *inflightLimit) open(ctx context.Context, identity string) *charge {
	return &charge{l: l, ctx: ctx, ident: l.identity(identity)}
}

// take charges n more bytes. Callers enforce the per-request limit before
// (used never exceeds perReq), so a charge is always satisfiable.
func (c *charge) take(n int64) error {
	c.used += n
	if c.used <= c.held {
		return nil
	}
	want := min(max(c.used-c.held, chargeChunk), c.l.perReq-c.held)
	if want < c.used-c.held {
		// Unreachable while callers keep used <= perReq; refuse rather
		// than block on an unsatisfiable charge.
		return errors.New("request charged past its limit")
	}
	if c.ident.TryAcquire(want) {
		if c.l.sem.TryAcquire(want) {
			c.held += want
			return nil
		}
		c.ident.Release(want)
	}
	// A request that holds nothing waits its turn (FIFO); one that holds
	// bytes waits only if no other holder is waiting (see grow), else it
	// is refused at once and releases what it holds.
	if c.held > 0 {
		select {
		case c.l.grow <- struct{}{}:
			defer func() { <-c.l.grow }()
		default:
			return c.busy(nil, "requests being read hold --max-inflight-request-bytes")
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.l.maxWait)
	defer cancel()
	if err := c.ident.Acquire(ctx, want); err != nil {
		return c.busy(err, "this identity's requests hold --max-request-bytes")
	}
	if err := c.l.sem.Acquire(ctx, want); err != nil {
		c.ident.Release(want)
		return c.busy(err, "requests being read hold --max-inflight-request-bytes")
	}
	c.held += want
	return nil
}

func (c *charge) busy(err error, what string) error {
	if c.ctx.Err() != nil {
		return contextError(c.ctx.Err()) // the client went away while waiting
	}
	c.l.rejected()
	ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"finelogd is busy: %s (%d bytes in all, %d per identity) and there was no room for this request's next bytes; retry with backoff",
		what, c.l.total, c.l.perReq))
	ce.Meta().Set(client.RetryHeader, "busy")
	return ce
}

func (c *charge) release() {
	if c.held > 0 {
		c.l.sem.Release(c.held)
		c.ident.Release(c.held)
		c.held = 0
	}
}

// writeError answers a request the intake refused before the handler ran,
// in the caller's protocol.
func writeError(w http.ResponseWriter, r *http.Request, ew *connect.ErrorWriter, ce *connect.Error) {
	if ew.IsSupported(r) {
		_ = ew.Write(w, r, ce)
		return
	}
	status := http.StatusBadRequest
	if ce.Code() == connect.CodeResourceExhausted {
		status = http.StatusTooManyRequests
	}
	http.Error(w, ce.Message(), status)
}

var errInflightConfig = errors.New("--max-inflight-request-bytes must be at least --max-request-bytes, so that one largest request can run")
