package ingest

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/store"
)

func str(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func kv(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

func export(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, recs ...*logspb.LogRecord) *collogspb.ExportLogsServiceRequest {
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: res},
		ScopeLogs: []*logspb.ScopeLogs{{Scope: scope, LogRecords: recs}},
	}}}
}

func otlpRow(key, data string, ms int64, level int32, attrs map[string]string) Row {
	r := Row{Attributes: attrs}
	r.Key, r.Data, r.EpochMS, r.Level, r.Source = key, data, ms, level, SourceOTLP
	return r
}

var svc = []*commonpb.KeyValue{kv("service.name", str("api")), kv("service.instance.id", str("i-1"))}
var svcAttrs = map[string]string{"service.name": "api", "service.instance.id": "i-1"}

func TestOTLPMapping(t *testing.T) {
	rec := func(mod func(*logspb.LogRecord)) *logspb.LogRecord {
		lr := &logspb.LogRecord{TimeUnixNano: 1_700_000_000_123_456_789, Body: str("hello")}
		if mod != nil {
			mod(lr)
		}
		return lr
	}
	tests := []struct {
		name  string
		res   []*commonpb.KeyValue
		scope *commonpb.InstrumentationScope
		rec   *logspb.LogRecord
		want  Row
	}{
		{"key from service.name and service.instance.id", svc, nil, rec(nil),
			otlpRow("/otlp/api/i-1", "hello", 1_700_000_000_123, 0, svcAttrs)},
		{"host.name when there is no instance id", []*commonpb.KeyValue{kv("service.name", str("api")), kv("host.name", str("h1"))}, nil, rec(nil),
			otlpRow("/otlp/api/h1", "hello", 1_700_000_000_123, 0, map[string]string{"service.name": "api", "host.name": "h1"})},
		{"instance id wins over host.name", append([]*commonpb.KeyValue{kv("host.name", str("h1"))}, svc...), nil, rec(nil),
			otlpRow("/otlp/api/i-1", "hello", 1_700_000_000_123, 0, map[string]string{"service.name": "api", "service.instance.id": "i-1", "host.name": "h1"})},
		{"no service at all", nil, nil, rec(nil),
			otlpRow("/otlp/unknown_service/unknown_instance", "hello", 1_700_000_000_123, 0, map[string]string{})},
		{"finelog.key sets the key and is not an attribute", append([]*commonpb.KeyValue{kv("finelog.key", str("/user/job/0:2"))}, svc...), nil, rec(nil),
			otlpRow("/user/job/0:2", "hello", 1_700_000_000_123, 0, svcAttrs)},
		{"observed time when there is no time", svc, nil, rec(func(lr *logspb.LogRecord) { lr.TimeUnixNano = 0; lr.ObservedTimeUnixNano = 5_000_000 }),
			otlpRow("/otlp/api/i-1", "hello", 5, 0, svcAttrs)},
		{"receive time when there is neither", svc, nil, rec(func(lr *logspb.LogRecord) { lr.TimeUnixNano = 0 }),
			otlpRow("/otlp/api/i-1", "hello", now, 0, svcAttrs)},
		{"severity_text when severity_number is unset", svc, nil, rec(func(lr *logspb.LogRecord) { lr.SeverityText = "Warning" }),
			otlpRow("/otlp/api/i-1", "hello", 1_700_000_000_123, store.LevelWarning, svcAttrs)},
		{"severity_number wins over severity_text", svc, nil, rec(func(lr *logspb.LogRecord) {
			lr.SeverityText = "debug"
			lr.SeverityNumber = logspb.SeverityNumber_SEVERITY_NUMBER_ERROR
		}), otlpRow("/otlp/api/i-1", "hello", 1_700_000_000_123, store.LevelError, svcAttrs)},
		{"scope name, version and attributes are prefixed scope., record attributes win, ids in hex", svc,
			&commonpb.InstrumentationScope{Name: "lib", Version: "1.2", Attributes: []*commonpb.KeyValue{kv("x", str("s"))}},
			rec(func(lr *logspb.LogRecord) {
				lr.Attributes = []*commonpb.KeyValue{kv("service.name", str("override")), kv("n", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}})}
				lr.TraceId = []byte{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c}
				lr.SpanId = []byte{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31}
			}),
			otlpRow("/otlp/api/i-1", "hello", 1_700_000_000_123, 0, map[string]string{
				"service.name": "override", "service.instance.id": "i-1", "scope.name": "lib", "scope.version": "1.2", "scope.x": "s", "n": "7",
				"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := DecodeOTLP(export(tc.res, tc.scope, tc.rec), now)
			if len(b.Rejected) > 0 {
				t.Fatal(b.RejectionMessage())
			}
			if diff := cmp.Diff([]Row{tc.want}, storedAs(t, b.Rows)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestOTLPFinelogCluster(t *testing.T) {
	b := DecodeOTLP(export(append([]*commonpb.KeyValue{kv("finelog.cluster", str("east"))}, svc...), nil, &logspb.LogRecord{Body: str("x")}), now)
	if len(b.Rows) != 1 || b.Rows[0].Cluster != "east" || b.Rows[0].Attributes["finelog.cluster"] != "" {
		t.Errorf("rows %+v, want cluster east and no finelog.cluster attribute", b.Rows)
	}
}

func TestOTLPSeverityBands(t *testing.T) {
	for n := int32(0); n <= 25; n++ {
		want := store.LevelUnknown
		switch {
		case n >= 1 && n <= 8:
			want = store.LevelDebug
		case n >= 9 && n <= 12:
			want = store.LevelInfo
		case n >= 13 && n <= 16:
			want = store.LevelWarning
		case n >= 17 && n <= 20:
			want = store.LevelError
		case n >= 21 && n <= 24:
			want = store.LevelCritical
		}
		b := DecodeOTLP(export(svc, nil, &logspb.LogRecord{SeverityNumber: logspb.SeverityNumber(n)}), now)
		if got := b.Rows[0].Level; got != want {
			t.Errorf("severity_number %d (%s) -> level %d, want %d", n, logspb.SeverityNumber(n), got, want)
		}
	}
}

func TestOTLPBodyAsJSON(t *testing.T) {
	kvl := func(kvs ...*commonpb.KeyValue) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: kvs}}}
	}
	arr := func(vs ...*commonpb.AnyValue) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vs}}}
	}
	i := func(n int64) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}}
	}
	d := func(f float64) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: f}}
	}
	tests := []struct {
		body *commonpb.AnyValue
		want string
	}{
		{nil, ""},
		{&commonpb.AnyValue{}, ""},
		{str(`a "quoted" line`), `a "quoted" line`},
		{i(-3), "-3"},
		{d(1.5), "1.5"},
		{d(math.Inf(1)), `"+Inf"`},
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}, "true"},
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0, 1, 255}}}, `"AAH/"`},
		{kvl(kv("z", str("1")), kv("a", arr(i(1), str("x"), kvl()))), `{"z":"1","a":[1,"x",{}]}`},
	}
	for _, tc := range tests {
		b := DecodeOTLP(export(svc, nil, &logspb.LogRecord{Body: tc.body}), now)
		if got := b.Rows[0].Data; got != tc.want {
			t.Errorf("body %v -> %q, want %q", tc.body, got, tc.want)
		}
	}
	// Attribute values: non-strings in their usual spelling.
	b := DecodeOTLP(export(svc, nil, &logspb.LogRecord{Attributes: []*commonpb.KeyValue{
		kv("arr", arr(i(1), i(2))), kv("f", d(0.25)), kv("b", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte("hi")}}), kv("none", nil),
	}}), now)
	got := b.Rows[0].Attributes
	for k, want := range map[string]string{"arr": "[1,2]", "f": "0.25", "b": "aGk=", "none": ""} {
		if got[k] != want {
			t.Errorf("attribute %s = %q, want %q", k, got[k], want)
		}
	}
}

// TestOTLPLimits: records over a limit are refused and counted, the rest
// of the export is kept.
func TestOTLPLimits(t *testing.T) {
	var many []*commonpb.KeyValue
	for i := 0; i < MaxAttributes; i++ {
		many = append(many, kv("a"+string(rune('A'+i%26))+string(rune('a'+i/26)), str("v")))
	}
	good := &logspb.LogRecord{Body: str("kept")}
	tests := []struct {
		name string
		bad  *logspb.LogRecord
		want string
	}{
		{"too many attributes with the resource and scope ones", &logspb.LogRecord{Attributes: many}, "67 attributes, limit is 64"},
		{"value too long", &logspb.LogRecord{Attributes: []*commonpb.KeyValue{kv("v", str(strings.Repeat("x", 4097)))}}, `attribute "v" value is 4097 bytes`},
		{"name too long", &logspb.LogRecord{Attributes: []*commonpb.KeyValue{kv(strings.Repeat("n", 257), str("x"))}}, "257 bytes, limit is 256"},
		{"empty name", &logspb.LogRecord{Attributes: []*commonpb.KeyValue{kv("", str("x"))}}, "empty name"},
		{"row too big", &logspb.LogRecord{Body: str(strings.Repeat("x", store.MaxRowBytes))}, "limit is 1048576"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := DecodeOTLP(export(svc, &commonpb.InstrumentationScope{Name: "lib"}, good, tc.bad, good), now)
			if len(b.Rows) != 2 {
				t.Errorf("kept %d rows, want the 2 good ones", len(b.Rows))
			}
			if b.RejectedRecords() != 1 || !errors.Is(b.Rejected[0].Err, ErrRefused) {
				t.Fatalf("rejected %+v, want one refused record", b.Rejected)
			}
			msg := b.RejectionMessage()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "/otlp/api/i-1") || !strings.Contains(msg, `log record 1 of scope "lib"`) {
				t.Errorf("message %q, want the key, the record and %q", msg, tc.want)
			}
		})
	}
}

// TestOTLPJSON checks the OTLP/JSON rules that differ from protobuf's JSON
// mapping or are easy to get wrong: hex ids, integer enums, 64-bit
// integers as strings, unknown fields ignored.
func TestOTLPJSON(t *testing.T) {
	body := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}},
	  {"key":"service.instance.id","value":{"stringValue":"i-1"}}]},"futureField":{"x":1},
	  "scopeLogs":[{"scope":{"name":"lib"},"logRecords":[{
	    "timeUnixNano":"1700000000123456789","severityNumber":17,"severityText":"ERROR",
	    "traceId":"0AF7651916CD43DD8448EB211C80319C","spanId":"b7ad6b7169203331",
	    "body":{"stringValue":"boom"},"attributes":[{"key":"n","value":{"intValue":"42"}}],"unknownRecordField":true
	  },{"timeUnixNano":1700000000000000000,"severityNumber":"SEVERITY_NUMBER_INFO","body":{"stringValue":"ok"}}]}]}]}`
	req, err := UnmarshalOTLPJSON([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	b := DecodeOTLP(req, now)
	want := []Row{
		otlpRow("/otlp/api/i-1", "boom", 1_700_000_000_123, store.LevelError, map[string]string{
			"service.name": "api", "service.instance.id": "i-1", "scope.name": "lib", "n": "42",
			"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}),
		otlpRow("/otlp/api/i-1", "ok", 1_700_000_000_000, store.LevelInfo, map[string]string{
			"service.name": "api", "service.instance.id": "i-1", "scope.name": "lib"}),
	}
	if diff := cmp.Diff(want, storedAs(t, b.Rows)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The same export as protobuf decodes to the same rows.
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	req2, err := UnmarshalOTLPProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, storedAs(t, DecodeOTLP(req2, now).Rows)); diff != "" {
		t.Errorf("protobuf (-want +got):\n%s", diff)
	}
}

func TestOTLPMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":           `{"resourceLogs":[`,
		"traceId not hex":    `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zzf7651916cd43dd8448eb211c80319c"}]}]}]}`,
		"traceId wrong size": `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"0af76519"}]}]}]}`,
		"spanId not hex":     `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":"xyzw6b7169203331"}]}]}]}`,
		"wrong type":         `{"resourceLogs":{"a":1}}`,
	} {
		if _, err := UnmarshalOTLPJSON([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := UnmarshalOTLPProto([]byte{0x0a, 0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated protobuf: err = %v, want ErrMalformed", err)
	}
}
