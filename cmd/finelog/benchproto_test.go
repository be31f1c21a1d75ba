package main

import (
	"context"
	"strings"
	"testing"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/server"
)

// TestBenchProtocols: --protocol all pushes the same lines over PushLogs,
// the Loki push API and OTLP/HTTP in three rotated rounds, every line
// arrives under the bench keys, and the totals and ratios are printed.
func TestBenchProtocols(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	code, out, errs := cli(t, ctx, addr, "", "bench", "--protocol", "all", "--lines", "4500", "--keys", "5", "--batch", "100", "--concurrency", "2", "--gzip")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errs)
	}
	for _, want := range []string{"protocol     loki (round 1 of 3)", "protocol     pushlogs (round 3 of 3)", "total        loki ", "total        otlp ", "x pushlogs)"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
	got, err := client.New(addr).Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/bench", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX, MaxLines: 10000})
	if err != nil {
		t.Fatal(err)
	}
	bySource := map[string]int{}
	for _, e := range got.Entries {
		bySource[e.Source]++
	}
	if bySource["stdout"] != 1500 || bySource["loki"] != 1500 || bySource["otlp"] != 1500 {
		t.Errorf("rows by source %v, want 1500 each from PushLogs (stdout), loki and otlp", bySource)
	}

	code, _, errs = cli(t, ctx, addr, "", "bench", "--protocol", "syslog", "--lines", "10")
	if code == 0 || !strings.Contains(errs, `--protocol "syslog"`) {
		t.Errorf("unknown protocol: exit %d, stderr %q; want a failure naming --protocol", code, errs)
	}
}
