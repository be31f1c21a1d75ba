package main

// End-to-end test of the replica port (issue 13): a primary and a replica
// finelogd on loopback with --min-replica-acks 1. The primary is killed -9
// and its data dir deleted; every acknowledged row must be on the replica
// exactly once with the same seq. The replica is promoted, takes pushes, and
// a relay pointed at it (with an old watermark) adds no duplicates because
// the producer marks came over with the rows.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

type healthBody struct {
	Status  string `json:"status"`
	LastSeq int64  `json:"last_seq"`
	Relay   *struct {
		Watermark int64 `json:"watermark"`
	} `json:"relay"`
	Replica *struct {
		Role      string `json:"role"`
		Connected bool   `json:"connected"`
		Replicas  int    `json:"replicas"`
		LagRows   int64  `json:"lag_rows"`
	} `json:"replica"`
}

func getHealth(t *testing.T, url string) healthBody {
	t.Helper()
	_, b := getBody(t, url+"/health")
	var h healthBody
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func waitHealth(t *testing.T, url, what string, ok func(healthBody) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := getHealth(t, url)
		if ok(h) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: /health %+v", what, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReplicaE2EPrimaryDiskLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three finelogd processes; skipped with -short")
	}
	dir := t.TempDir()
	psk := filepath.Join(dir, "peer.psk")
	if err := os.WriteFile(psk, []byte("replica-e2e-psk-0123456789abcdef0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	peerAddr := freePort(t)
	pdir := filepath.Join(dir, "primary")
	primary := start(t, pdir, nil, "--cluster", "east", "--node-name", "primary",
		"--peer-listen", peerAddr, "--peer-psk-file", psk, "--min-replica-acks", "1", "--replica-ack-timeout", "3s")
	// Without a replica a push cannot be acknowledged: unavailable, retryable.
	pc := client.New(primary.url, client.WithRetry(1, 0, 0))
	ctx := context.Background()
	_, err := pc.Push(ctx, &loggingpb.PushLogsRequest{Key: "/early", Entries: []*loggingpb.LogEntry{{Data: "before any replica"}}})
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "min-replica-acks") {
		t.Fatalf("push with no replica: %v, want unavailable naming --min-replica-acks", err)
	}

	rdir := filepath.Join(dir, "replica")
	replica := start(t, rdir, nil, "--cluster", "east", "--node-name", "replica",
		"--replica-of", peerAddr, "--peer-psk-file", psk)
	waitHealth(t, primary.url, "the replica to subscribe", func(h healthBody) bool { return h.Replica != nil && h.Replica.Replicas == 1 })
	rc := client.New(replica.url, client.WithRetry(1, 0, 0))
	_, err = rc.Push(ctx, &loggingpb.PushLogsRequest{Key: "/x", Entries: []*loggingpb.LogEntry{{Data: "to the replica"}}})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), peerAddr) {
		t.Fatalf("push to the replica: %v, want failed_precondition naming %s", err, peerAddr)
	}

	// A relaying cluster forwards into the primary (producer batches).
	sdir := filepath.Join(dir, "west")
	west := start(t, sdir, nil, "--cluster", "west", "--relay-address", primary.url, "--relay-backfill", "--relay-batch-rows", "200")
	wc := client.New(west.url, client.WithRetry(1, 0, 0))
	pushWest := func(from, n int) {
		for b := from; b < from+n; b++ {
			req := &loggingpb.PushLogsRequest{Key: "/west/job"}
			for i := range 50 {
				req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: fmt.Sprintf("west-b%d-r%d", b, i)})
			}
			if _, err := wc.Push(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
	}
	pushWest(0, 10)
	waitHealth(t, west.url, "the relay to forward the first rows", func(h healthBody) bool { return h.Relay != nil && h.Relay.Watermark == h.LastSeq })
	oldState, err := os.ReadFile(filepath.Join(sdir, "relay", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	pushWest(10, 10)

	// Four pushers write to the primary until it dies; each acked row is
	// recorded with the seq the primary gave it.
	pctx, cancel := context.WithCancel(ctx)
	var (
		mu    sync.Mutex
		acked = map[string]int64{}
		total atomic.Int64
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; pctx.Err() == nil; b++ {
				req := &loggingpb.PushLogsRequest{Key: "/acked"}
				for i := range 20 {
					req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: fmt.Sprintf("w%d-b%d-r%d", w, b, i)})
				}
				resp, err := pc.Push(pctx, req)
				if err != nil {
					// Not acked (the kill, or an ack timeout on a loaded
					// machine): these rows may or may not be on the replica.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mu.Lock()
				for i, e := range req.Entries {
					acked[e.Data] = resp.GetFirstSeq() + int64(i)
				}
				mu.Unlock()
				total.Add(20)
			}
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); total.Load() < 3000; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatalf("only %d rows acked in 30s", total.Load())
		}
	}
	waitHealth(t, west.url, "the relay to forward everything", func(h healthBody) bool { return h.Relay != nil && h.Relay.Watermark == h.LastSeq })
	primary.signal(syscall.SIGKILL)
	cancel()
	wg.Wait()
	if err := os.RemoveAll(pdir); err != nil {
		t.Fatal(err)
	}

	// Every acknowledged row is on the replica, once, with its seq.
	got := map[string][]int64{}
	for _, e := range fetchAll(t, rc, "/acked") {
		got[e.GetData()] = append(got[e.GetData()], e.GetSeq())
	}
	mu.Lock()
	for data, seq := range acked {
		switch s := got[data]; {
		case len(s) == 0:
			t.Errorf("acked row %s (seq %d) is not on the replica", data, seq)
		case len(s) > 1 || s[0] != seq:
			t.Errorf("acked row %s: primary gave seq %d, replica holds seqs %v", data, seq, s)
		}
	}
	t.Logf("%d rows acked by the primary before kill -9; replica holds %d", len(acked), len(got))
	mu.Unlock()
	for data, s := range got {
		if len(s) > 1 {
			t.Errorf("row %s on the replica %d times", data, len(s))
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Promote (the primary is gone, so no --force is needed) and push.
	code, body := postAdmin(t, replica.url+"/replica/promote")
	if code != http.StatusOK {
		t.Fatalf("promote: %d %s", code, body)
	}
	lastBefore := getHealth(t, replica.url).LastSeq
	resp, err := rc.Push(ctx, &loggingpb.PushLogsRequest{Key: "/after", Entries: []*loggingpb.LogEntry{{Data: "promoted"}}})
	if err != nil {
		t.Fatalf("push to the promoted replica: %v", err)
	}
	if resp.GetFirstSeq() != lastBefore+1 {
		t.Fatalf("first push after promotion got seq %d, want %d", resp.GetFirstSeq(), lastBefore+1)
	}

	// The relaying cluster restarts with an old watermark, pointed at the
	// promoted store, with --relay-backfill: it resumes from the producer
	// mark the promoted store reports, and were that mark lost it would
	// re-send every row from the start. Either way no row may land twice.
	west.signal(syscall.SIGKILL)
	if err := os.WriteFile(filepath.Join(sdir, "relay", "state.json"), oldState, 0o600); err != nil {
		t.Fatal(err)
	}
	west = start(t, sdir, nil, "--cluster", "west", "--relay-address", replica.url, "--relay-backfill", "--relay-batch-rows", "200")
	wc = client.New(west.url, client.WithRetry(1, 0, 0))
	pushWest(20, 5)
	waitHealth(t, west.url, "the relay to catch up on the promoted store", func(h healthBody) bool { return h.Relay != nil && h.Relay.Watermark == h.LastSeq })
	seen := map[string]int{}
	for _, e := range fetchAll(t, rc, "/west/job") {
		seen[e.GetData()]++
	}
	for b := range 25 {
		for i := range 50 {
			if n := seen[fmt.Sprintf("west-b%d-r%d", b, i)]; n != 1 {
				t.Errorf("relayed row west-b%d-r%d is on the promoted store %d times, want 1", b, i, n)
			}
		}
	}
}

func postAdmin(t *testing.T, url string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
