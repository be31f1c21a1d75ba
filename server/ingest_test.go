package server

import (
	"bytes"
	"compress/zlib"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	pushpb "github.com/finelog/finelog/gen/loki/push"
	"github.com/finelog/finelog/internal/vfs"
)

// lokiPB is a snappy-compressed Loki PushRequest, as Promtail sends it.
func lokiPB(t testing.TB, streams ...*pushpb.StreamAdapter) []byte {
	t.Helper()
	raw, err := proto.Marshal(&pushpb.PushRequest{Streams: streams})
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func lokiStream(labels string, lines ...string) *pushpb.StreamAdapter {
	s := &pushpb.StreamAdapter{Labels: labels}
	for i, l := range lines {
		s.Entries = append(s.Entries, &pushpb.EntryAdapter{
			Timestamp: timestamppb.New(time.Unix(1_700_000_000, int64(i)*1e6)), Line: l})
	}
	return s
}

type post struct {
	path, contentType, encoding, token string
	body                               []byte
}

func (e *testEnv) post(t testing.TB, p post) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.http.URL+p.path, bytes.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	if p.contentType != "" {
		req.Header.Set("Content-Type", p.contentType)
	}
	if p.encoding != "" {
		req.Header.Set("Content-Encoding", p.encoding)
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *testEnv) prefix(t testing.TB, source string) []*loggingpb.LogEntry {
	t.Helper()
	got, err := e.c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: source, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX})
	if err != nil {
		t.Fatal(err)
	}
	return got.Entries
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// deflated is b as a raw (headerless) deflate stream, as many shippers
// send Content-Encoding: deflate.
func deflated(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLokiPushStoresRows(t *testing.T) {
	e := newTestServer(t, nil)
	pb := lokiPB(t, lokiStream(`{env="prod", app="api", level="warn"}`, "GET /", "POST /x"))
	js := []byte(`{"streams":[{"stream":{"app":"api","env":"prod","level":"warn"},"values":[["1700000000000000000","GET /"],["1700000000001000000","POST /x"]]}]}`)
	var zl bytes.Buffer
	zw := zlib.NewWriter(&zl)
	zw.Write(js)
	zw.Close()
	var raw bytes.Buffer
	fw, _ := flate.NewWriter(&raw, flate.BestSpeed)
	fw.Write(pb)
	fw.Close()
	for _, p := range []post{
		{contentType: "application/x-protobuf", body: pb},
		{body: pb}, // no Content-Type: protobuf, as Loki reads it
		{contentType: "application/x-protobuf", encoding: "gzip", body: gzipped(t, pb)},
		{contentType: "application/x-protobuf", encoding: "deflate", body: raw.Bytes()},
		{contentType: "application/json", body: js},
		{contentType: "application/json; charset=utf-8", encoding: "gzip", body: gzipped(t, js)},
		{contentType: "application/json", encoding: "deflate", body: zl.Bytes()},
	} {
		before := e.srv.st.Load().s.LastSeq()
		p.path = LokiPushPath
		resp, msg := e.post(t, p)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s %s: %d %s, want 204", p.contentType, p.encoding, resp.StatusCode, msg)
		}
		got := e.prefix(t, `{app="api"`)
		if len(got) < 2 {
			t.Fatalf("%s %s: PREFIX {app=\"api\" found %d rows", p.contentType, p.encoding, len(got))
		}
		last := got[len(got)-2:]
		for i, want := range []string{"GET /", "POST /x"} {
			r := last[i]
			if r.Data != want || r.Key != `{app="api",env="prod",level="warn"}` || r.Level != loggingpb.LogLevel_LOG_LEVEL_WARNING ||
				r.Source != "loki" || r.Cluster != "home" || r.Timestamp.EpochMs != 1_700_000_000_000+int64(i) || r.Seq != before+int64(i)+1 {
				t.Errorf("%s %s: row %d = %v", p.contentType, p.encoding, i, r)
			}
		}
	}
}

// TestLokiBadInput: a body that cannot be decoded is refused whole with
// 400 and nothing stored; a stream over the limits is named in the 400
// and the other streams are stored.
func TestLokiBadInput(t *testing.T) {
	e := newTestServer(t, nil)
	good := lokiPB(t, lokiStream(`{app="ok"}`, "fine"))
	raw, _ := snappy.Decode(nil, good)
	for _, tc := range []struct {
		name string
		p    post
		code int
		want string
	}{
		{"bad snappy", post{body: []byte("\x00\xffnot snappy")}, 400, "snappy"},
		{"malformed protobuf", post{body: snappy.Encode(nil, []byte{0x0a, 0xff, 0xff, 0x01})}, 400, "PushRequest"},
		{"protobuf without snappy", post{body: raw}, 400, "nothing was stored"},
		{"non-numeric timestamp", post{contentType: "application/json", body: []byte(`{"streams":[{"stream":{"app":"ok"},"values":[["1","kept?"]]},{"stream":{"app":"x"},"values":[["noon","x"]]}]}`)},
			400, `timestamp "noon"`},
		{"bad gzip", post{encoding: "gzip", body: []byte("nope")}, 400, "gzip"},
		{"bad deflate", post{encoding: "deflate", body: []byte("\x78\x9c\xff\xff\xff")}, 400, "deflate"},
		{"deflate over --max-request-bytes", post{contentType: "application/json", encoding: "deflate", body: deflated(t, make([]byte, DefaultMaxRequestBytes+1))}, 413, "--max-request-bytes"},
		{"unknown encoding", post{encoding: "br", body: good}, 415, `"br"`},
		{"unknown content type", post{contentType: "text/plain", body: good}, 415, "text/plain"},
		{"over --max-request-bytes", post{contentType: "application/json", encoding: "gzip", body: gzipped(t, make([]byte, DefaultMaxRequestBytes+1))}, 413, "--max-request-bytes"},
		{"over-limit stream alone", post{body: lokiPB(t, lokiStream(`{app="big",v="`+strings.Repeat("v", 5000)+`"}`, "x"))}, 400, "limit is 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.srv.st.Load().s.LastSeq()
			tc.p.path = LokiPushPath
			resp, msg := e.post(t, tc.p)
			if resp.StatusCode != tc.code || !strings.Contains(msg, tc.want) {
				t.Fatalf("%d %q, want %d mentioning %q", resp.StatusCode, msg, tc.code, tc.want)
			}
			if after := e.srv.st.Load().s.LastSeq(); after != before {
				t.Fatalf("a refused push stored rows: last seq %d -> %d", before, after)
			}
		})
	}
	// One stream over the limits, one good: the good one is stored, the
	// bad one named.
	resp, msg := e.post(t, post{path: LokiPushPath, body: lokiPB(t,
		lokiStream(`{app="ok"}`, "stored"),
		lokiStream(`{app="big",v="`+strings.Repeat("v", 5000)+`"}`, "dropped", "dropped too"))})
	if resp.StatusCode != 400 || !strings.Contains(msg, `stream {app="big",v="vvv`) || !strings.Contains(msg, "1 entries stored, 2 refused") {
		t.Fatalf("mixed push: %d %q, want 400 naming the big stream", resp.StatusCode, msg)
	}
	if got := e.prefix(t, `{app="ok"}`); len(got) != 1 || got[0].Data != "stored" {
		t.Fatalf("good stream of a mixed push: %v", got)
	}
	if got := e.prefix(t, `{app="big"`); len(got) != 0 {
		t.Fatalf("refused stream was stored: %v", got)
	}
	// Operators see both on /metrics (the over-limit stream pushed alone
	// above was refused too).
	resp, metrics := e.get(t, "/metrics")
	for _, want := range []string{`finelog_ingest_rows_total{protocol="loki"} 1`, `finelog_ingest_refused_rows_total{protocol="loki"} 3`} {
		if resp.StatusCode != 200 || !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func (e *testEnv) get(t testing.TB, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(e.http.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestLokiDiskFullIs503(t *testing.T) {
	e := newTestServer(t, nil)
	var full atomic.Bool
	full.Store(true)
	e.fs.Inject = func(op vfs.Op, name string) error {
		if full.Load() && (op == vfs.OpWrite || op == vfs.OpSync) {
			return vfs.ErrNoSpace
		}
		return nil
	}
	resp, msg := e.post(t, post{path: LokiPushPath, body: lokiPB(t, lokiStream(`{app="df"}`, "x"))})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(msg, "disk is full") {
		t.Fatalf("loki push on a full disk: %d %q, want 503 with Retry-After", resp.StatusCode, msg)
	}
	resp, _ = e.post(t, post{path: OTLPLogsPath, contentType: "application/json", body: []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}`)})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("otlp export on a full disk: %d, want 503 with Retry-After", resp.StatusCode)
	}
	full.Store(false)
	if resp, msg := e.post(t, post{path: LokiPushPath, body: lokiPB(t, lokiStream(`{app="df"}`, "x"))}); resp.StatusCode != 204 {
		t.Fatalf("after space returned: %d %s", resp.StatusCode, msg)
	}
}

func otlpExport(key string, bodies ...string) *collogspb.ExportLogsServiceRequest {
	sl := &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: "test"}}
	for _, b := range bodies {
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{
			TimeUnixNano: 1_700_000_000_000_000_000, SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_INFO,
			Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: b}}})
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			{Key: "finelog.key", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: key}}}}},
		ScopeLogs: []*logspb.ScopeLogs{sl},
	}}}
}

func TestOTLPHTTPEncodings(t *testing.T) {
	e := newTestServer(t, nil)
	for _, tc := range []struct{ ct, enc string }{
		{"application/x-protobuf", ""}, {"application/json", ""}, {"application/x-protobuf", "gzip"}, {"application/json", "gzip"},
	} {
		key := "/otlp-http/" + tc.ct + "+" + tc.enc + "/"
		req := otlpExport(key, "one", "two")
		big := strings.Repeat("x", 5000)
		req.ResourceLogs[0].ScopeLogs[0].LogRecords[1].Attributes = []*commonpb.KeyValue{
			{Key: "big", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: big}}}}
		var body []byte
		if tc.ct == "application/json" {
			body, _ = protojson.Marshal(req)
		} else {
			body, _ = proto.Marshal(req)
		}
		if tc.enc == "gzip" {
			body = gzipped(t, body)
		}
		resp, msg := e.post(t, post{path: OTLPLogsPath, contentType: tc.ct, encoding: tc.enc, body: body})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.ct {
			t.Fatalf("%s %s: %d %s %q", tc.ct, tc.enc, resp.StatusCode, resp.Header.Get("Content-Type"), msg)
		}
		var out collogspb.ExportLogsServiceResponse
		if tc.ct == "application/json" {
			err := protojson.Unmarshal([]byte(msg), &out)
			if err != nil {
				t.Fatal(err)
			}
		} else if err := proto.Unmarshal([]byte(msg), &out); err != nil {
			t.Fatal(err)
		}
		ps := out.GetPartialSuccess()
		if ps.GetRejectedLogRecords() != 1 || !strings.Contains(ps.GetErrorMessage(), `attribute "big" value is 5000 bytes, limit is 4096`) {
			t.Errorf("%s %s: partial_success %v, want one record rejected for its attribute", tc.ct, tc.enc, ps)
		}
		got := e.prefix(t, key)
		if len(got) != 1 || got[0].Data != "one" || got[0].Level != loggingpb.LogLevel_LOG_LEVEL_INFO || got[0].Source != "otlp" {
			t.Errorf("%s %s: stored %v, want the one good record", tc.ct, tc.enc, got)
		}
	}
	// Malformed: 400 with a google.rpc.Status in the request's encoding.
	for _, ct := range []string{"application/x-protobuf", "application/json"} {
		before := e.srv.st.Load().s.LastSeq()
		resp, msg := e.post(t, post{path: OTLPLogsPath, contentType: ct, body: []byte{0x0a, 0xff, 0xff, 0x01}})
		var st statuspb.Status
		var err error
		if ct == "application/json" {
			err = protojson.Unmarshal([]byte(msg), &st)
		} else {
			err = proto.Unmarshal([]byte(msg), &st)
		}
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != ct || err != nil || st.Code != int32(connect.CodeInvalidArgument) || !strings.Contains(st.Message, "OTLP") {
			t.Errorf("malformed %s: %d %q status %v (%v)", ct, resp.StatusCode, resp.Header.Get("Content-Type"), &st, err)
		}
		if e.srv.st.Load().s.LastSeq() != before {
			t.Errorf("malformed %s stored rows", ct)
		}
	}
	if resp, _ := e.post(t, post{path: OTLPLogsPath, contentType: "text/plain", body: []byte("x")}); resp.StatusCode != 415 {
		t.Errorf("text/plain export: %d, want 415", resp.StatusCode)
	}
}

// TestIngestAuth: every new route is behind the gate, and a jwt identity
// writes only rows of its own cluster.
func TestIngestAuth(t *testing.T) {
	e, secret := jwtEnv(t)
	tok, err := auth.Mint(secret, "east", time.Hour, "", e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	loki := func(labels string) []byte { return lokiPB(t, lokiStream(labels, "x")) }
	otlp := func(cluster string) []byte {
		req := otlpExport("/auth/otlp", "x")
		if cluster != "" {
			req.ResourceLogs[0].Resource.Attributes = append(req.ResourceLogs[0].Resource.Attributes,
				&commonpb.KeyValue{Key: "finelog.cluster", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: cluster}}})
		}
		b, _ := proto.Marshal(req)
		return b
	}
	for _, tc := range []struct {
		name string
		p    post
		code int
	}{
		{"loki, no token", post{path: LokiPushPath, body: loki(`{app="auth"}`)}, 401},
		{"loki, bad token", post{path: LokiPushPath, body: loki(`{app="auth"}`), token: tok + "x"}, 401},
		{"loki, east writes west", post{path: LokiPushPath, body: loki(`{app="auth",finelog_cluster="west"}`), token: tok}, 403},
		{"loki, east", post{path: LokiPushPath, body: loki(`{app="auth"}`), token: tok}, 204},
		{"loki, east names east", post{path: LokiPushPath, body: loki(`{app="auth",finelog_cluster="east"}`), token: tok}, 204},
		{"otlp, no token", post{path: OTLPLogsPath, contentType: "application/x-protobuf", body: otlp("")}, 401},
		{"otlp, east writes west", post{path: OTLPLogsPath, contentType: "application/x-protobuf", body: otlp("west"), token: tok}, 403},
		{"otlp, east", post{path: OTLPLogsPath, contentType: "application/x-protobuf", body: otlp(""), token: tok}, 200},
	} {
		resp, msg := e.post(t, tc.p)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: %d %q, want %d", tc.name, resp.StatusCode, msg, tc.code)
		}
	}
	c := client.New(e.http.URL, client.WithRetry(1, 0, 0), client.WithToken(func(context.Context) (string, error) { return tok, nil }))
	for _, src := range []string{`{app="auth"`, "/auth/otlp"} {
		got, err := c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: src, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX})
		if err != nil {
			t.Fatal(err)
		}
		want := 2
		if src == "/auth/otlp" {
			want = 1
		}
		if len(got.Entries) != want {
			t.Fatalf("%s: %d rows, want %d (only the admitted pushes)", src, len(got.Entries), want)
		}
		for _, r := range got.Entries {
			if r.Cluster != "east" {
				t.Errorf("%s: row of cluster %q, want east (the identity's)", src, r.Cluster)
			}
		}
	}
}

// TestOTLPGRPCAuthAndPartialSuccess: the gRPC Export is gated and bound by
// identity like the HTTP routes, and reports refused records.
func TestOTLPGRPCAuthAndPartialSuccess(t *testing.T) {
	e, secret := jwtEnv(t)
	tok, err := auth.Mint(secret, "east", time.Hour, "", e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := connect.NewClient[collogspb.ExportLogsServiceRequest, collogspb.ExportLogsServiceResponse](
		client.H2CClient(), e.http.URL+OTLPLogsExportProcess, connect.WithGRPC())
	call := func(token string, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
		r := connect.NewRequest(req)
		if token != "" {
			r.Header().Set("Authorization", "Bearer "+token)
		}
		resp, err := c.CallUnary(context.Background(), r)
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}
	if _, err := call("", otlpExport("/grpc", "x")); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("no token: %v, want unauthenticated", err)
	}
	west := otlpExport("/grpc", "x")
	west.ResourceLogs[0].Resource.Attributes = append(west.ResourceLogs[0].Resource.Attributes,
		&commonpb.KeyValue{Key: "finelog.cluster", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "west"}}})
	if _, err := call(tok, west); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("east writing west: %v, want permission_denied", err)
	}
	req := otlpExport("/grpc", "kept", "refused")
	req.ResourceLogs[0].ScopeLogs[0].LogRecords[1].Attributes = []*commonpb.KeyValue{{Key: strings.Repeat("n", 300)}}
	resp, err := call(tok, req)
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.GetPartialSuccess(); ps.GetRejectedLogRecords() != 1 || !strings.Contains(ps.GetErrorMessage(), "limit is 256") {
		t.Errorf("partial_success %v, want 1 record refused for its attribute name", ps)
	}
	tc := client.New(e.http.URL, client.WithRetry(1, 0, 0), client.WithToken(func(context.Context) (string, error) { return tok, nil }))
	got, err := tc.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: "/grpc", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 1 || got.Entries[0].Data != "kept" || got.Entries[0].Cluster != "east" {
		t.Errorf("stored %v, want only the kept record, cluster east", got.Entries)
	}
}

// TestOTLPGRPCCodecs: Export over gRPC and Connect, protobuf and JSON,
// plain and gzip, stores the same rows; a malformed protobuf message is
// INVALID_ARGUMENT and stores nothing.
func TestOTLPGRPCCodecs(t *testing.T) {
	e := newTestServer(t, nil)
	for name, opts := range map[string][]connect.ClientOption{
		"grpc+proto":      {connect.WithGRPC()},
		"grpc+proto+gzip": {connect.WithGRPC(), connect.WithSendGzip()},
		"grpc+json":       {connect.WithGRPC(), connect.WithProtoJSON()},
		"connect+json":    {connect.WithProtoJSON()},
		"connect+proto":   nil,
	} {
		hc := client.HTTP1Client()
		if strings.HasPrefix(name, "grpc") {
			hc = client.H2CClient()
		}
		c := connect.NewClient[collogspb.ExportLogsServiceRequest, collogspb.ExportLogsServiceResponse](hc, e.http.URL+OTLPLogsExportProcess, opts...)
		key := "/otlp-codec/" + name + "/"
		req := otlpExport(key, "hello", "world")
		req.ResourceLogs[0].ScopeLogs[0].LogRecords[0].TraceId = bytes.Repeat([]byte{0xab}, 16)
		if _, err := c.CallUnary(context.Background(), connect.NewRequest(req)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := e.prefix(t, key)
		if len(got) != 2 || got[0].Data != "hello" || got[1].Data != "world" || got[0].Source != "otlp" {
			t.Errorf("%s: stored %v", name, got)
		}
	}

	before := e.srv.st.Load().s.LastSeq()
	payload := []byte{0x0a, 0xff, 0xff, 0x01}
	frame := append([]byte{0, 0, 0, 0, byte(len(payload))}, payload...)
	hr, _ := http.NewRequest(http.MethodPost, e.http.URL+OTLPLogsExportProcess, bytes.NewReader(frame))
	hr.Header.Set("Content-Type", "application/grpc")
	hr.Header.Set("Te", "trailers")
	resp, err := client.H2CClient().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	status := resp.Trailer.Get("Grpc-Status") + resp.Header.Get("Grpc-Status")
	if status != "3" { // INVALID_ARGUMENT
		t.Errorf("malformed gRPC export: grpc-status %q (%s), want 3", status, resp.Trailer.Get("Grpc-Message")+resp.Header.Get("Grpc-Message"))
	}
	if e.srv.st.Load().s.LastSeq() != before {
		t.Error("a malformed export stored rows")
	}
}
