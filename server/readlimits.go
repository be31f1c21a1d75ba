package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/internal/clock"
)

// Read caps. A store scan costs CPU for as long as it runs, and a parked
// long-poll holds a goroutine and a connection for up to --max-wait; one
// identity must not be able to take all of either.
const (
	DefaultMaxReadsPerIdentity     = 4
	DefaultMaxLongPolls            = 1024
	DefaultMaxLongPollsPerIdentity = 64
)

// readWait is how long a fetch waits for one of its identity's read slots
// before it is refused as busy.
const readWait = 5 * time.Second

// slots is a counting cap per key plus, optionally, a global one.
type slots struct {
	global, perKey int
	clk            clock.Clock

	// onWait, when set (tests), is called each time a take starts waiting.
	onWait func()

	mu    sync.Mutex
	total int
	byKey map[string]int
	freed chan struct{} // closed and replaced whenever a slot is released
}

func newSlots(global, perKey int, clk clock.Clock) *slots {
	return &slots{global: global, perKey: perKey, clk: clk, byKey: map[string]int{}, freed: make(chan struct{})}
}

// tryTake takes a slot for key if one is free.
func (s *slots) tryTake(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeLocked(key)
}

func (s *slots) takeLocked(key string) bool {
	if (s.global > 0 && s.total >= s.global) || s.byKey[key] >= s.perKey {
		return false
	}
	s.total++
	s.byKey[key]++
	return true
}

// take waits up to wait for a slot for key.
func (s *slots) take(ctx context.Context, key string, wait time.Duration) error {
	t := s.clk.NewTimer(wait)
	defer t.Stop()
	for {
		s.mu.Lock()
		if s.takeLocked(key) {
			s.mu.Unlock()
			return nil
		}
		freed := s.freed
		s.mu.Unlock()
		if s.onWait != nil {
			s.onWait()
		}
		select {
		case <-freed:
		case <-t.C():
			return errSlotWait
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var errSlotWait = errors.New("no slot freed in time")

func (s *slots) give(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.byKey[key]--; s.byKey[key] <= 0 {
		delete(s.byKey, key)
	}
	close(s.freed)
	s.freed = make(chan struct{})
}

// readSlot takes one of the caller's concurrent read slots, or says why
// not: busy (retryable) after readWait.
func (s *Server) readSlot(ctx context.Context, c caller) (release func(), err error) {
	if err := s.reads.take(ctx, c.key, readWait); err != nil {
		if ctx.Err() != nil {
			return nil, contextError(ctx.Err())
		}
		ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"finelogd is busy: identity %s already has %d reads running (--max-reads-per-identity) and none finished within %v; retry with backoff",
			c.key, s.reads.perKey, readWait))
		ce.Meta().Set(client.RetryHeader, "busy")
		return nil, ce
	}
	return func() { s.reads.give(c.key) }, nil
}
