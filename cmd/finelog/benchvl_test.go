package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finelog/finelog/server"
)

// fakeVL answers VictoriaLogs' health, JSON-lines ingest and metrics
// endpoints and keeps what it was sent.
type fakeVL struct {
	mu    sync.Mutex
	lines []vlLine
	bad   []string
}

func (f *fakeVL) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		fmt.Fprintln(w, "OK")
	case "/metrics":
		fmt.Fprintln(w, "process_cpu_seconds_total 1.5")
		fmt.Fprintln(w, "process_resident_memory_bytes 1048576")
	case "/insert/jsonline":
		q := r.URL.Query()
		if q.Get("_stream_fields") != "finelog_key" || q.Get("_msg_field") != "_msg" || q.Get("_time_field") != "_time" {
			http.Error(w, "bad field mapping: "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 1<<20)
		f.mu.Lock()
		defer f.mu.Unlock()
		for sc.Scan() {
			var l vlLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				f.bad = append(f.bad, sc.Text())
				continue
			}
			f.lines = append(f.lines, l)
		}
	default:
		http.NotFound(w, r)
	}
}

// bench --victorialogs pushes the same number of lines, under the same
// keys, to VictoriaLogs after finelogd, and prints the ratio.
func TestBenchVictoriaLogs(t *testing.T) {
	addr := testServer(t, server.Config{})
	vl := &fakeVL{}
	hs := httptest.NewServer(vl)
	defer hs.Close()
	code, out, errs := cli(t, context.Background(), addr, "", "bench", "--lines", "2500", "--keys", "10", "--batch", "100",
		"--concurrency", "3", "--progress", "1h", "--prefix", "/vlb/", "--victorialogs", hs.URL)
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "victorialogs "+hs.URL+"/insert/jsonline") || !strings.Contains(out, "ratio        finelogd ") {
		t.Errorf("output lacks the VictoriaLogs run or the ratio:\n%s", out)
	}
	vl.mu.Lock()
	defer vl.mu.Unlock()
	if len(vl.bad) > 0 {
		t.Fatalf("%d lines were not JSON, e.g. %q", len(vl.bad), vl.bad[0])
	}
	if len(vl.lines) != 2500 {
		t.Fatalf("VictoriaLogs got %d lines, want 2500", len(vl.lines))
	}
	keys := map[string]bool{}
	for _, l := range vl.lines {
		keys[l.Key] = true
		if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil || l.Msg == "" || !strings.HasPrefix(l.Key, "/vlb/") {
			t.Fatalf("line %+v: want a key under /vlb/, a message and an RFC 3339 time", l)
		}
	}
	if len(keys) != 10 {
		t.Errorf("lines came under %d keys, want 10", len(keys))
	}
}

func TestBenchVictoriaLogsUnreachableNamesTheFlag(t *testing.T) {
	addr := testServer(t, server.Config{})
	hs := httptest.NewServer(http.NotFoundHandler())
	url := hs.URL
	hs.Close()
	code, _, errs := cli(t, context.Background(), addr, "", "bench", "--lines", "10", "--victorialogs", url)
	if code == 0 || !strings.Contains(errs, "--victorialogs "+url) || !strings.Contains(errs, "not reachable") {
		t.Fatalf("exit %d, stderr %q: want a failure naming --victorialogs and the address", code, errs)
	}
}
