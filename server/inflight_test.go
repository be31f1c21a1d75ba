package server

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/internal/vfs"
)

// A request is charged what it delivers; past the budget its next bytes
// wait, and one that waits too long fails with a retryable
// resource_exhausted naming the limit. Releasing a holder lets the next in.
func TestInflightChargesWhatArrives(t *testing.T) {
	var rejected atomic.Int32
	l := newInflightLimit(200<<10, 128<<10, 50*time.Millisecond, func() { rejected.Add(1) })
	ctx := context.Background()
	a := l.open(ctx, "jwt east")
	if err := a.take(120 << 10); err != nil {
		t.Fatal(err)
	}
	b := l.open(ctx, "jwt west")
	if err := b.take(64 << 10); err != nil {
		t.Fatalf("a request that fits beside the holder: %v", err)
	}
	err := b.take(64 << 10) // 248 KiB of 200 KiB
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "--max-inflight-request-bytes") || !client.Retryable(err) {
		t.Fatalf("over the budget: %v, want retryable resource_exhausted naming the flag", err)
	}
	if rejected.Load() != 1 {
		t.Errorf("rejections counted: %d, want 1", rejected.Load())
	}
	a.release()
	c := l.open(ctx, "jwt north")
	if err := c.take(128 << 10); err != nil {
		t.Fatalf("after the holder released: %v", err)
	}
	b.release()
	c.release()
}

// One identity holds at most one largest request's worth, so two of its
// requests cannot take the whole budget from everyone else.
func TestInflightPerIdentityShare(t *testing.T) {
	l := newInflightLimit(1<<20, 256<<10, 50*time.Millisecond, func() {})
	ctx := context.Background()
	first := l.open(ctx, "jwt east")
	if err := first.take(200 << 10); err != nil {
		t.Fatal(err)
	}
	second := l.open(ctx, "jwt east")
	err := second.take(200 << 10)
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "this identity") {
		t.Fatalf("second request of the same identity past its share: %v, want resource_exhausted about the identity", err)
	}
	other := l.open(ctx, "jwt west")
	if err := other.take(200 << 10); err != nil {
		t.Fatalf("another identity: %v", err)
	}
	first.release()
	second.release()
	other.release()
}

func TestInflightLimitBelowRequestLimitRefused(t *testing.T) {
	_, err := New(Config{FS: vfs.NewMemFS(), DataDir: "/d", MaxRequestBytes: 1 << 20, MaxInflightRequestBytes: 1 << 10})
	if err == nil || !strings.Contains(err.Error(), "--max-inflight-request-bytes") {
		t.Fatalf("in-flight limit below the request limit: %v, want a start error naming the flag", err)
	}
}

// Two requests each holding part of the budget and both needing more would
// wait for each other forever (until both time out busy). One of them may
// wait; the other is refused at once, and its release lets the first on.
func TestInflightHoldersDoNotDeadlock(t *testing.T) {
	l := newInflightLimit(256<<10, 256<<10, 10*time.Second, func() {})
	ctx := context.Background()
	a, b := l.open(ctx, "cidr 127.0.0.0/8"), l.open(ctx, "cidr 127.0.0.0/8")
	if err := a.take(128 << 10); err != nil {
		t.Fatal(err)
	}
	if err := b.take(128 << 10); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.take(64 << 10) }()
	// a waits holding the grow slot; b cannot grow and is refused at once.
	waitForGrow := time.Now()
	for len(l.grow) == 0 {
		if time.Since(waitForGrow) > 5*time.Second {
			t.Fatal("the first holder never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
	if err := b.take(64 << 10); connect.CodeOf(err) != connect.CodeResourceExhausted || !client.Retryable(err) {
		t.Fatalf("second holder needing more while another waits: %v, want retryable resource_exhausted at once", err)
	}
	b.release()
	if err := <-aDone; err != nil {
		t.Fatalf("the waiting holder after the other released: %v", err)
	}
	a.release()
}
