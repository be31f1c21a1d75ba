package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/store"
)

// Past the long-poll caps (per identity, then in all) a long-poll answers
// at once with an empty page instead of parking; an identity under its cap
// still parks.
func TestLongPollCaps(t *testing.T) {
	tn := newTenants(t, "", "", func(c *Config) { c.MaxLongPolls = 2; c.MaxLongPollsPerIdentity = 1 })
	park := parked(tn.testEnv)
	poll := func(c *client.Client, key string) chan error {
		done := make(chan error, 1)
		go func() {
			resp, err := c.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: key, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, WaitMs: 60_000})
			if err == nil && len(resp.Entries) == 0 {
				err = errors.New("empty page")
			}
			done <- err
		}()
		return done
	}
	eastParked := poll(tn.east, "/lp/east")
	<-park
	// East is at its cap of one: the next answers at once, with no clock
	// movement and nothing arriving.
	resp, err := tn.east.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: "/lp/east", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, WaitMs: 60_000})
	if err != nil || len(resp.Entries) != 0 {
		t.Fatalf("east's second long-poll: %v %v, want an empty page at once", resp, err)
	}
	westParked := poll(tn.west, "/lp/west")
	<-park
	// Two parked: the global cap. Loopback (another identity) answers at once.
	if _, err := tn.anon.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: "/lp/anon", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, WaitMs: 60_000}); err != nil {
		t.Fatalf("long-poll past the global cap: %v, want an empty page at once", err)
	}
	for key, c := range map[string]*client.Client{"/lp/east": tn.east, "/lp/west": tn.west} {
		if _, err := c.Push(t.Context(), &loggingpb.PushLogsRequest{Key: key, Entries: []*loggingpb.LogEntry{entry("wake")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-eastParked; err != nil {
		t.Fatalf("east's parked poll: %v", err)
	}
	if err := <-westParked; err != nil {
		t.Fatalf("west's parked poll: %v", err)
	}
	// The slots were given back: east parks again.
	again := poll(tn.east, "/lp/east2")
	<-park
	tn.east.Push(t.Context(), &loggingpb.PushLogsRequest{Key: "/lp/east2", Entries: []*loggingpb.LogEntry{entry("wake")}})
	if err := <-again; err != nil {
		t.Fatal(err)
	}
}

// An identity that already runs --max-reads-per-identity scans waits for
// one to finish, then is refused busy (retryable); another identity reads.
func TestReadsPerIdentityCap(t *testing.T) {
	tn := newTenants(t, "", "", func(c *Config) { c.MaxReadsPerIdentity = 2 })
	// Two of east's scans "running".
	for range 2 {
		if !tn.srv.reads.tryTake("jwt cluster east") {
			t.Fatal("could not take a read slot")
		}
	}
	waiting := make(chan struct{}, 1)
	tn.srv.reads.onWait = func() { waiting <- struct{}{} }
	done := make(chan error, 1)
	go func() {
		_, err := tn.east.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: "/r", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
		done <- err
	}()
	if _, err := tn.west.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: "/r", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}); err != nil {
		t.Fatalf("west while east is at its cap: %v", err)
	}
	<-waiting // east's fetch waits for a slot (its timer is set)
	tn.clk.Advance(readWait)
	err := <-done
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !client.Retryable(err) || !strings.Contains(err.Error(), "--max-reads-per-identity") {
		t.Fatalf("east past its read cap: %v, want retryable resource_exhausted naming --max-reads-per-identity", err)
	}
	tn.srv.reads.give("jwt cluster east")
	if _, err := tn.east.Fetch(t.Context(), &loggingpb.FetchLogsRequest{Source: "/r", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}); err != nil {
		t.Fatalf("east after a slot was freed: %v", err)
	}
	tn.srv.reads.give("jwt cluster east")
}

// rowsBudget is the shape of the store's budget errors: an error naming
// the budget it ran out of.
type rowsBudget struct{}

func (rowsBudget) Error() string  { return "examined 1000000 rows" }
func (rowsBudget) Budget() string { return "rows-examined" }

func TestStoreBudgetErrorsAreResourceExhausted(t *testing.T) {
	e := newTestServer(t, nil)
	err := e.srv.storeError("fetch", fmt.Errorf("scan segment 7: %w", rowsBudget{}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || client.Retryable(err) || !strings.Contains(err.Error(), "rows-examined budget") {
		t.Fatalf("budget error: %v, want non-retryable resource_exhausted naming the rows-examined budget", err)
	}
	if connect.CodeOf(e.srv.storeError("fetch", fmt.Errorf("x: %w", context.Canceled))) != connect.CodeCanceled {
		t.Fatal("a cancelled scan is canceled")
	}
	if connect.CodeOf(e.srv.storeError("push", store.ErrNoSpace)) != connect.CodeResourceExhausted {
		t.Fatal("disk full")
	}
}

// Connections past the per-peer cap are closed at accept; closing one
// frees its slot.
func TestConnectionCaps(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	ln := newCapListener(raw, 3, 2, func() { refused++ })
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	sa, sb := <-accepted, <-accepted
	third := dial()
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("third connection from one peer: read %v, want it closed by the server", err)
	}
	third.Close()
	sa.Close()
	a.Close()
	c := dial()
	sc := <-accepted
	for _, x := range []net.Conn{b, sb, c, sc} {
		x.Close()
	}
	ln.Close()
	for range accepted {
	}
	if refused != 1 {
		t.Fatalf("refused %d connections, want 1", refused)
	}
}
