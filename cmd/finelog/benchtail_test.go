package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/server"
)

// The sustained bench's reader fetches the newest 1000 rows of its key
// on every tick while others write, and reports each read's latency.
func TestBenchTailerReadsTheNewestRows(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	c := client.New(addr)
	req := &loggingpb.PushLogsRequest{Key: "/bench/t/k"}
	for i := range 1500 {
		req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: fmt.Sprintf("line %d", i)})
	}
	if _, err := c.Push(ctx, req); err != nil {
		t.Fatal(err)
	}
	tl := startTailer(ctx, c, "/bench/t/k", 5*time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		tl.mu.Lock()
		n := len(tl.latencies)
		tl.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tail reads in 10 s, want 3", n)
		}
	}
	r := tl.finish()
	if r.failed != 0 || r.rows != int64(len(r.latencies))*1000 {
		t.Fatalf("%d reads, %d rows, %d failed (%v): want 1000 rows per read and no failure", len(r.latencies), r.rows, r.failed, r.firstErr)
	}
	var out strings.Builder
	r.print(&out)
	if !strings.Contains(out.String(), "tail latency p50 ") || !strings.Contains(out.String(), "1000 rows per read") {
		t.Fatalf("tail report %q", out.String())
	}
}

// Write amplification comes from finelogd's store counters; a daemon
// without them is named, not reported as 0.
func TestBenchWriteAmplification(t *testing.T) {
	body := `# HELP finelog_store_append_bytes_total Row bytes appended.
finelog_store_append_bytes_total 1e+08
finelog_store_segment_written_bytes_total{kind="flush"} 1.2e+07
finelog_store_segment_written_bytes_total{kind="merge"} 8e+06
finelog_store_segment_bytes 1e+07
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	w, err := scrapeStoreWrites(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	w.print(&out, "at the end")
	want := "write amp    at the end: 20 MB of segments written (flush 12 + compaction 8) for 100 MB of rows appended = 0.20x, 2.00x the 10 MB of segments held"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("report %q, want it to contain %q", out.String(), want)
	}
	body = "finelog_store_append_bytes_total 5\n"
	if _, err := scrapeStoreWrites(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), "finelog_store_segment_written_bytes_total") {
		t.Fatalf("metrics without the segment counter: %v, want an error naming it", err)
	}
}

func TestBenchTailEveryFlag(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	if code, _, errs := cli(t, ctx, addr, "", "bench", "--tail-every", "-1s"); code != 1 || !strings.Contains(errs, "--tail-every") {
		t.Fatalf("negative --tail-every: exit %d %q", code, errs)
	}
	code, out, errs := cli(t, ctx, addr, "", "bench", "--lines", "200", "--keys", "2", "--batch", "10", "--progress", "1h", "--tail-every", "1ms", "--prefix", "/bench/tail/")
	if code != 0 || !strings.Contains(out, "tail ") {
		t.Fatalf("bench --tail-every: exit %d out %q err %q", code, out, errs)
	}
}

// --progress 0 turns the progress lines off; it used to panic in
// time.NewTicker.
func TestBenchProgressFlag(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	if code, _, errs := cli(t, ctx, addr, "", "bench", "--progress", "-1s"); code != 1 || !strings.Contains(errs, "--progress -1s: want a positive interval") {
		t.Fatalf("negative --progress: exit %d %q", code, errs)
	}
	code, out, errs := cli(t, ctx, addr, "", "bench", "--lines", "200", "--keys", "2", "--batch", "10", "--progress", "0", "--prefix", "/bench/quiet/")
	if code != 0 || strings.Contains(out+errs, "bench: ") || !strings.Contains(out, "lines/s") {
		t.Fatalf("bench --progress 0: exit %d out %q err %q", code, out, errs)
	}
}
