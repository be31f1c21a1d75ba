package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	pushpb "github.com/finelog/finelog/gen/loki/push"
)

// Bench protocols: PushLogs, the Loki push API (protobuf + snappy, as
// Promtail and Alloy send it) and OTLP/HTTP protobuf (as the OpenTelemetry
// Collector and SDKs send it), or all three in turn.
const (
	benchPushLogs = "pushlogs"
	benchLoki     = "loki"
	benchOTLP     = "otlp"
	benchAll      = "all"
)

// benchPusher sends one generated batch; the batch is PushLogs-shaped and
// each protocol re-encodes it as its shipper would, so every protocol
// pushes the same lines under the same keys.
type benchPusher func(ctx context.Context, req *loggingpb.PushLogsRequest) error

// benchRounds is how many rounds --protocol all runs. One daemon serves
// every run, and a run pays for the flushes of the rows before it, so each
// round starts with a different protocol and each gets every position.
const benchRounds = 3

// runProtocolBench runs the bench over one shipper protocol, or with all
// over the three protocols in rotated rounds (--lines split among them),
// then prints each protocol's totals and its ratios to PushLogs.
func runProtocolBench(ctx context.Context, env *cliEnv, c *client.Client, conn *connFlags, bc benchConfig) error {
	protocols := []string{bc.protocol}
	rounds := 1
	switch bc.protocol {
	case benchLoki, benchOTLP:
	case benchAll:
		protocols = []string{benchPushLogs, benchLoki, benchOTLP}
		rounds = benchRounds
		bc.lines = max(1, bc.lines/(rounds*len(protocols)))
	default:
		return fmt.Errorf("--protocol %q: want pushlogs, loki, otlp or all", bc.protocol)
	}
	pushers := map[string]benchPusher{}
	for _, p := range protocols {
		if p != benchPushLogs {
			push, err := newHTTPPusher(p, conn, bc.gzip)
			if err != nil {
				return err
			}
			pushers[p] = push
		}
	}
	type total struct {
		lines int64
		secs  float64
		cpu   float64 // <0 unknown
	}
	totals := map[string]*total{}
	for round := range rounds {
		for i := range protocols {
			p := protocols[(round+i)%len(protocols)]
			bc.push = pushers[p]
			if rounds > 1 {
				fmt.Fprintf(env.stdout, "protocol     %s (round %d of %d)\n", p, round+1, rounds)
			} else {
				fmt.Fprintf(env.stdout, "protocol     %s\n", p)
			}
			r, err := bench(ctx, c, bc, env.stderr)
			if err != nil {
				return conn.friendly(fmt.Errorf("%s: %w", p, err))
			}
			r.print(env.stdout, bc)
			t := totals[p]
			if t == nil {
				t = &total{}
				totals[p] = t
			}
			t.lines += r.lines
			t.secs += r.elapsed.Seconds()
			if r.cpu < 0 || t.cpu < 0 {
				t.cpu = -1
			} else {
				t.cpu += r.cpu
			}
		}
	}
	if rounds == 1 {
		return nil
	}
	base := totals[benchPushLogs]
	for _, p := range protocols {
		t := totals[p]
		line := fmt.Sprintf("total        %-8s %.0f lines/s (%.2fx pushlogs)", p, float64(t.lines)/t.secs,
			float64(t.lines)/t.secs/(float64(base.lines)/base.secs))
		if t.cpu >= 0 && base.cpu > 0 {
			line += fmt.Sprintf(", server CPU %.2f s per million lines (pushlogs/this %.2fx)", t.cpu/float64(t.lines)*1e6,
				(base.cpu/float64(base.lines))/(t.cpu/float64(t.lines)))
		}
		fmt.Fprintln(env.stdout, line)
	}
	return nil
}

func newHTTPPusher(protocol string, conn *connFlags, gz bool) (benchPusher, error) {
	token := func() (string, error) { return "", nil }
	if conn.tokenFile != "" {
		path := conn.tokenFile
		token = func() (string, error) { return readToken(path) }
	}
	hc := client.HTTP1Client()
	base := strings.TrimSuffix(conn.addr, "/")
	var path, contentType string
	var encode func(*loggingpb.PushLogsRequest) ([]byte, error)
	switch protocol {
	case benchLoki:
		path, contentType, encode = "/loki/api/v1/push", "application/x-protobuf", lokiBody
	case benchOTLP:
		path, contentType, encode = "/v1/logs", "application/x-protobuf", otlpBody
	}
	return func(ctx context.Context, req *loggingpb.PushLogsRequest) error {
		body, err := encode(req)
		if err != nil {
			return err
		}
		tok, err := token()
		if err != nil {
			return err
		}
		status, msg, err := postBody(ctx, hc, base+path, contentType, body, gz, tok)
		if err != nil {
			return err
		}
		if status/100 != 2 {
			return fmt.Errorf("POST %s: %d %s: %s", path, status, http.StatusText(status), strings.TrimSpace(string(msg)))
		}
		if protocol == benchOTLP {
			var out collogspb.ExportLogsServiceResponse
			if err := proto.Unmarshal(msg, &out); err != nil {
				return fmt.Errorf("POST %s: response: %w", path, err)
			}
			if n := out.GetPartialSuccess().GetRejectedLogRecords(); n > 0 {
				return fmt.Errorf("POST %s: %d records rejected: %s", path, n, out.GetPartialSuccess().GetErrorMessage())
			}
		}
		return nil
	}, nil
}

// postBody POSTs body to url (gzipped when gz, with a bearer token when
// tok is set) and returns the status and up to 4 KiB of the answer.
func postBody(ctx context.Context, hc *http.Client, url, contentType string, body []byte, gz bool, tok string) (int, []byte, error) {
	if gz {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(body)
		if err := w.Close(); err != nil {
			return 0, nil, err
		}
		body = buf.Bytes()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	hr.Header.Set("Content-Type", contentType)
	if gz {
		hr.Header.Set("Content-Encoding", "gzip")
	}
	if tok != "" {
		hr.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, msg, nil
}

// lokiBody is the batch as one Loki stream whose finelog_key label keeps
// the PushLogs key, snappy-compressed as Loki clients send it.
func lokiBody(req *loggingpb.PushLogsRequest) ([]byte, error) {
	s := &pushpb.StreamAdapter{Labels: fmt.Sprintf("{finelog_key=%q, source=\"stdout\"}", req.GetKey())}
	stamps := make([]timestamppb.Timestamp, len(req.GetEntries()))
	entries := make([]pushpb.EntryAdapter, len(req.GetEntries()))
	for i, e := range req.GetEntries() {
		ms := e.GetTimestamp().GetEpochMs()
		stamps[i] = timestamppb.Timestamp{Seconds: ms / 1000, Nanos: int32(ms%1000) * 1e6}
		entries[i].Timestamp, entries[i].Line = &stamps[i], e.GetData()
		s.Entries = append(s.Entries, &entries[i])
	}
	raw, err := proto.Marshal(&pushpb.PushRequest{Streams: []*pushpb.StreamAdapter{s}})
	if err != nil {
		return nil, err
	}
	return snappy.Encode(nil, raw), nil
}

// benchSeverity maps a finelog level to the OTLP severity number that maps
// back to it.
var benchSeverity = [...]logspb.SeverityNumber{0, 5, 9, 13, 17, 21}

// otlpBody is the batch as one OTLP resource whose finelog.key attribute
// keeps the PushLogs key.
func otlpBody(req *loggingpb.PushLogsRequest) ([]byte, error) {
	recs := make([]logspb.LogRecord, len(req.GetEntries()))
	bodies := make([]commonpb.AnyValue, len(req.GetEntries()))
	sl := &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: "finelog-bench"}}
	for i, e := range req.GetEntries() {
		r := &recs[i]
		r.TimeUnixNano = uint64(e.GetTimestamp().GetEpochMs()) * 1e6
		if l := int(e.GetLevel()); l >= 0 && l < len(benchSeverity) {
			r.SeverityNumber = benchSeverity[l]
		}
		bodies[i].Value = &commonpb.AnyValue_StringValue{StringValue: e.GetData()}
		r.Body = &bodies[i]
		sl.LogRecords = append(sl.LogRecords, r)
	}
	return proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "finelog.key",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: req.GetKey()}}}}},
		ScopeLogs: []*logspb.ScopeLogs{sl},
	}}})
}
