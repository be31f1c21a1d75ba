package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// VictoriaLogs as the bench's reference: the same generated batches pushed
// to its JSON-lines ingest endpoint, one stream per finelog key, so lines/s
// and server CPU can be put side by side with finelogd's in one run. It
// acknowledges a push once the rows are in memory; finelogd only after
// fdatasync.

// vlJSONLinePath is VictoriaLogs' JSON-lines ingest endpoint with the field
// mapping of our rows: the key is the stream, the line is the message.
const vlJSONLinePath = "/insert/jsonline?_stream_fields=finelog_key&_msg_field=_msg&_time_field=_time"

type vlLine struct {
	Msg    string `json:"_msg"`
	Time   string `json:"_time"`
	Key    string `json:"finelog_key"`
	Source string `json:"source"`
	Level  int32  `json:"level"`
}

// vlBody is the batch as JSON lines.
func vlBody(req *loggingpb.PushLogsRequest) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range req.GetEntries() {
		l := vlLine{Msg: e.GetData(), Key: req.GetKey(), Source: e.GetSource(), Level: int32(e.GetLevel()),
			Time: time.UnixMilli(e.GetTimestamp().GetEpochMs()).UTC().Format(time.RFC3339Nano)}
		if err := enc.Encode(&l); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// newVLPusher pushes to the VictoriaLogs at base (http://host:port).
func newVLPusher(base string, gz bool) benchPusher {
	hc := client.HTTP1Client()
	base = strings.TrimSuffix(base, "/")
	return func(ctx context.Context, req *loggingpb.PushLogsRequest) error {
		body, err := vlBody(req)
		if err != nil {
			return err
		}
		status, msg, err := postBody(ctx, hc, base+vlJSONLinePath, "application/stream+json", body, gz, "")
		if err != nil {
			return fmt.Errorf("VictoriaLogs at %s: %w", base, err)
		}
		if status/100 != 2 {
			return fmt.Errorf("VictoriaLogs POST %s: %d %s: %s", vlJSONLinePath, status, http.StatusText(status), strings.TrimSpace(string(msg)))
		}
		return nil
	}
}

// checkVL fails fast, naming the flag, when nothing answers at base.
func checkVL(ctx context.Context, base string) error {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/health", nil)
	if err != nil {
		return fmt.Errorf("--victorialogs %q: %w", base, err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(hr)
	if err != nil {
		return fmt.Errorf("--victorialogs %s: not reachable (start victoria-logs, or drop the flag): %w", base, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("--victorialogs %s: /health answered %s", base, resp.Status)
	}
	return nil
}

// runVLBench pushes bc's lines to VictoriaLogs, reading its CPU and RSS
// from its own /metrics, and prints the result and the ratio of finelogd's
// throughput (fl) to it.
func runVLBench(ctx context.Context, env *cliEnv, c *client.Client, base string, bc benchConfig, fl *benchResult) error {
	bc.push = newVLPusher(base, bc.gzip)
	bc.pid = 0
	bc.metricsURL = strings.TrimSuffix(base, "/") + "/metrics"
	fmt.Fprintf(env.stdout, "victorialogs %s/insert/jsonline, the same lines (acks from memory)\n", strings.TrimSuffix(base, "/"))
	r, err := bench(ctx, c, bc, env.stderr)
	if err != nil {
		return err
	}
	r.print(env.stdout, bc)
	flRate := float64(fl.lines) / fl.elapsed.Seconds()
	vlRate := float64(r.lines) / r.elapsed.Seconds()
	fmt.Fprintf(env.stdout, "ratio        finelogd %.0f lines/s / VictoriaLogs %.0f lines/s = %.2fx\n", flRate, vlRate, flRate/vlRate)
	return nil
}
