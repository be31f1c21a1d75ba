package main

// A relay enabled while its target is not up (issue 10, section 2) must
// forward every row stored from the moment it was enabled, not only those
// stored after it first reached the target.

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

func pushRows(t *testing.T, c *client.Client, key string, from, n int) {
	t.Helper()
	req := &loggingpb.PushLogsRequest{Key: key}
	for i := from; i < from+n; i++ {
		req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: fmt.Sprintf("row-%04d", i), Level: loggingpb.LogLevel_LOG_LEVEL_INFO})
	}
	if _, err := c.Push(context.Background(), req); err != nil {
		t.Fatalf("push rows %d..%d: %v", from, from+n-1, err)
	}
}

func TestRelayE2ETargetDownAtStartLosesNothing(t *testing.T) {
	dir := t.TempDir()
	// Both admit loopback (no policy): the point here is reachability.
	target := newRelayNode(t, "target", filepath.Join(dir, "target"), "--cluster", "global")
	// No --relay-backfill: the relay starts at the source's end as of the
	// moment it is enabled, which is before any row below.
	source := newRelayNode(t, "source", filepath.Join(dir, "source"),
		"--cluster", "east", "--relay-address", target.url(), "--relay-batch-rows", "100")
	source.start()
	hc := client.HTTP1Client()
	t.Cleanup(hc.CloseIdleConnections)
	push := client.New(source.url(), client.WithHTTPClient(hc))
	const key = "/seed-e2e/job"

	pushRows(t, push, key, 0, 250)
	// A kill -9 before the target was ever reached: the restarted relay
	// must keep the start point it fixed, not take the store's new end.
	source.kill()
	source.start()
	pushRows(t, push, key, 250, 250)
	waitFor(t, 10*time.Second, "lag 500 while the target is down", func() bool {
		return metricValue(t, source.url(), "finelog_relay_lag_rows") == 500
	})

	target.start()
	pushRows(t, push, key, 500, 500)
	tc := client.New(target.url(), client.WithHTTPClient(hc))
	var got []*loggingpb.LogEntry
	waitFor(t, 30*time.Second, "1000 rows at the target", func() bool {
		got = fetchPrefix(t, tc, key)
		return len(got) >= 1000
	})
	seen := map[string]int{}
	for _, e := range got {
		seen[e.Data]++
	}
	for i := 0; i < 1000; i++ {
		if n := seen[fmt.Sprintf("row-%04d", i)]; n != 1 {
			t.Errorf("row-%04d is at the target %d times, want exactly once", i, n)
		}
	}
	if len(got) != 1000 {
		t.Errorf("target holds %d rows, want 1000", len(got))
	}
	waitFor(t, 10*time.Second, "lag 0 once forwarded", func() bool {
		return metricValue(t, source.url(), "finelog_relay_lag_rows") == 0
	})
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
