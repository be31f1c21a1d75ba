package main

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// Attributes pushed through PushLogs and the Loki API survive kill -9 (WAL
// replay) and a clean shutdown (which flushes them into a parquet segment),
// and the attributes filter finds the same rows each time.
func TestE2EAttributesSurviveKill9AndFlush(t *testing.T) {
	dir := t.TempDir()
	d := start(t, dir, nil)
	c := client.New(d.url, client.WithRetry(1, 0, 0))
	ctx := context.Background()
	req := &loggingpb.PushLogsRequest{Key: "/attrs"}
	for i := range 100 {
		e := &loggingpb.LogEntry{Data: fmt.Sprintf("row %d", i)}
		if i%2 == 0 {
			e.Attributes = map[string]string{"env": "prod", "n": fmt.Sprint(i)}
		}
		req.Entries = append(req.Entries, e)
	}
	if _, err := c.Push(ctx, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(d.url+"/loki/api/v1/push", "application/json", strings.NewReader(
		`{"streams":[{"stream":{"app":"api","env":"prod"},"values":[["1700000000000000000","GET /",{"trace_id":"0af7"}]]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("loki push: %d", resp.StatusCode)
	}

	check := func(what string, c *client.Client) {
		t.Helper()
		rows := fetchAll(t, c, "/attrs")
		if len(rows) != 100 {
			t.Fatalf("%s: %d rows, want 100", what, len(rows))
		}
		for i, r := range rows {
			want := map[string]string(nil)
			if i%2 == 0 {
				want = map[string]string{"env": "prod", "n": fmt.Sprint(i)}
			}
			if !maps.Equal(r.Attributes, want) {
				t.Fatalf("%s: row %d attributes %v, want %v", what, i, r.Attributes, want)
			}
		}
		got, err := c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX,
			Attributes: map[string]string{"env": "prod"}, MaxLines: 1000})
		if err != nil || len(got.Entries) != 50 {
			t.Fatalf("%s: env=prod under /: %d rows, %v", what, len(got.Entries), err)
		}
		got, err = c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: `{app="api"`, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX,
			Attributes: map[string]string{"trace_id": "0af7"}})
		if err != nil || len(got.Entries) != 1 || !maps.Equal(got.Entries[0].Attributes, map[string]string{"app": "api", "env": "prod", "trace_id": "0af7"}) {
			t.Fatalf("%s: loki row by trace_id: %v %v", what, got.GetEntries(), err)
		}
	}
	check("before the kill", c)
	d.signal(syscall.SIGKILL)

	d2 := start(t, dir, nil)
	check("after kill -9", client.New(d2.url))
	if code := d2.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM exit code %d", code)
	}
	segs := 0
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(e.Name(), "seg-") && strings.HasSuffix(e.Name(), ".parquet") {
			segs++
		}
		return nil
	})
	if segs == 0 {
		t.Fatal("no segment after a clean shutdown: the rows were not flushed to parquet")
	}
	d3 := start(t, dir, nil)
	check("after a clean shutdown flushed the rows to a segment", client.New(d3.url))
}
