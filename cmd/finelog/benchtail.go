package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// benchTailLines is how many rows each tail read of --tail-every asks for:
// the size of the tail figure in docs/performance.md.
const benchTailLines = 1000

// tailer is the reader of a sustained bench: every interval it fetches the
// newest benchTailLines rows of one bench key while the pushers run, as a
// user watching a job does, and keeps each read's latency.
type tailer struct {
	c     *client.Client
	key   string
	every time.Duration

	mu        sync.Mutex
	latencies []time.Duration
	rows      int64
	failed    int
	firstErr  error
	stop      chan struct{}
	done      chan struct{}
}

func startTailer(ctx context.Context, c *client.Client, key string, every time.Duration) *tailer {
	t := &tailer{c: c, key: key, every: every, stop: make(chan struct{}), done: make(chan struct{})}
	go t.run(ctx)
	return t
}

func (t *tailer) run(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t0 := time.Now()
		resp, err := t.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: t.key, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Tail: true, MaxLines: benchTailLines})
		d := time.Since(t0)
		t.mu.Lock()
		if err != nil {
			// Counted, not fatal: a long run should still report the
			// reads that worked, beside how many did not.
			if ctx.Err() == nil {
				t.failed++
				if t.firstErr == nil {
					t.firstErr = err
				}
			}
			t.mu.Unlock()
			continue
		}
		t.latencies = append(t.latencies, d)
		t.rows += int64(len(resp.GetEntries()))
		t.mu.Unlock()
	}
}

// finish stops the reader and returns what it measured.
func (t *tailer) finish() *tailResult {
	close(t.stop)
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	return &tailResult{key: t.key, every: t.every, latencies: t.latencies, rows: t.rows, failed: t.failed, firstErr: t.firstErr}
}

type tailResult struct {
	key       string
	every     time.Duration
	latencies []time.Duration
	rows      int64
	failed    int
	firstErr  error
}

func (r *tailResult) print(w io.Writer) {
	if r.failed > 0 {
		fmt.Fprintf(w, "tail         %d reads failed (first: %v)\n", r.failed, r.firstErr)
	}
	if len(r.latencies) == 0 {
		fmt.Fprintf(w, "tail         no read finished during the run (every %s)\n", r.every)
		return
	}
	p := percentiles(r.latencies)
	fmt.Fprintf(w, "tail latency p50 %s  p99 %s  max %s  (%d reads of the newest %d rows of %s every %s, %.0f rows per read)\n",
		p(0.50).Round(10*time.Microsecond), p(0.99).Round(10*time.Microsecond), p(1).Round(10*time.Microsecond),
		len(r.latencies), benchTailLines, r.key, r.every, float64(r.rows)/float64(len(r.latencies)))
}

// percentiles sorts ds and returns its p-quantile function (p=1: the max).
func percentiles(ds []time.Duration) func(p float64) time.Duration {
	slices.Sort(ds)
	return func(p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		return ds[min(len(ds)-1, int(p*float64(len(ds))))]
	}
}

// storeWrites are the store's write counters from finelogd's /metrics.
type storeWrites struct {
	appended, flushed, merged float64 // bytes
	segments                  float64 // bytes in segment files now
}

// scrapeStoreWrites reads the row bytes appended and the segment bytes
// flushes and merges wrote.
func scrapeStoreWrites(ctx context.Context, url string) (storeWrites, error) {
	var w storeWrites
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return w, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return w, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return w, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := false
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "finelog_store_append_bytes_total":
			dst = &w.appended
		case `finelog_store_segment_written_bytes_total{kind="flush"}`:
			dst, found = &w.flushed, true
		case `finelog_store_segment_written_bytes_total{kind="merge"}`:
			dst = &w.merged
		case "finelog_store_segment_bytes":
			dst = &w.segments
		default:
			continue
		}
		*dst, _ = strconv.ParseFloat(v, 64)
	}
	if err := sc.Err(); err != nil {
		return w, err
	}
	if !found {
		return w, fmt.Errorf("%s has no finelog_store_segment_written_bytes_total (an older finelogd?)", url)
	}
	return w, nil
}

// print reports the write amplification two ways: segment bytes written
// per row byte appended (compression makes it small), and per segment
// byte now on disk (how often compaction rewrote the stored bytes).
func (w storeWrites) print(out io.Writer, when string) {
	if w.appended <= 0 {
		return
	}
	written := w.flushed + w.merged
	fmt.Fprintf(out, "write amp    %s: %.0f MB of segments written (flush %.0f + compaction %.0f) for %.0f MB of rows appended = %.2fx",
		when, written/1e6, w.flushed/1e6, w.merged/1e6, w.appended/1e6, written/w.appended)
	if w.segments > 0 {
		fmt.Fprintf(out, ", %.2fx the %.0f MB of segments held", written/w.segments, w.segments/1e6)
	}
	fmt.Fprintln(out, " (the WAL writes each row once more)")
}
