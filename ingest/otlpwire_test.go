package ingest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var batchCmp = cmp.Options{cmp.Comparer(func(a, b error) bool { return a.Error() == b.Error() }), cmp.AllowUnexported(Rejection{})}

// checkOTLPWire: where the library decodes, DecodeOTLPProto gives the
// same batch; where the library fails, DecodeOTLPProto fails too, unless
// the library's only complaint is invalid UTF-8.
func checkOTLPWire(t *testing.T, body []byte) {
	t.Helper()
	req, gerr := UnmarshalOTLPProto(body)
	got, werr := DecodeOTLPProto(body, now)
	switch {
	case gerr == nil && werr != nil:
		t.Fatalf("library decodes, wire decoder fails: %v", werr)
	case gerr == nil:
		if diff := cmp.Diff(DecodeOTLP(req, now), got, batchCmp); diff != "" {
			t.Fatalf("(-library +wire):\n%s", diff)
		}
	case werr == nil && !strings.Contains(gerr.Error(), "UTF-8"):
		t.Fatalf("library fails (%v), wire decoder decodes", gerr)
	}
}

func otlpWireSeed() []byte {
	b, _ := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", str("api")), kv("host.name", str("h"))}},
		ScopeLogs: []*logspb.ScopeLogs{{
			Scope: &commonpb.InstrumentationScope{Name: "lib", Version: "2", Attributes: []*commonpb.KeyValue{kv("s", str("x"))}},
			LogRecords: []*logspb.LogRecord{
				{TimeUnixNano: 5e6, SeverityNumber: 13, Body: str("warned"), TraceId: []byte("0123456789abcdef"), SpanId: []byte("01234567"),
					Attributes: []*commonpb.KeyValue{kv("n", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 3}}), kv("e", nil)}},
				{ObservedTimeUnixNano: 7e6, SeverityText: "error", Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{
					KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{kv("a", str("b"))}}}}},
				{Attributes: []*commonpb.KeyValue{kv("big", str(strings.Repeat("v", 5000)))}},
				{},
			},
		}, {}},
	}, {}}})
	return b
}

func TestOTLPWireMatchesLibrary(t *testing.T) {
	seed := otlpWireSeed()
	// A record whose body and an attribute value appear twice (merged),
	// whose scope comes after its records, with unknown fields and a
	// known field of the wrong wire type.
	anyStr := func(s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	}
	anyInt := protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 9)
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	kvb := field(field(nil, 1, []byte("k")), 2, anyStr("one"))
	kvb = field(kvb, 2, anyInt) // the value is now the int 9
	rec := field(nil, fRecordBody, anyStr("first"))
	rec = field(rec, fRecordBody, anyStr("second"))
	rec = field(rec, fRecordAttrs, kvb)
	rec = protowire.AppendVarint(protowire.AppendTag(rec, fRecordSevText, protowire.VarintType), 1)
	rec = protowire.AppendFixed32(protowire.AppendTag(rec, 99, protowire.Fixed32Type), 1)
	scopeLogs := field(nil, fScopeLogsRecords, rec)
	scopeLogs = field(scopeLogs, fScopeLogsScope, field(nil, fScopeName, []byte("late")))
	rl := field(nil, fResourceLogsScopes, scopeLogs)
	rl = field(rl, fResourceLogsRes, field(nil, fResourceAttrs, field(field(nil, 1, []byte("service.name")), 2, anyStr("svc"))))
	rl = field(rl, fResourceLogsRes, field(nil, fResourceAttrs, field(field(nil, 1, []byte("host.name")), 2, anyStr("h2"))))
	tricky := field(nil, fExportResourceLogs, rl)
	for name, body := range map[string][]byte{
		"sdk-like":  seed,
		"tricky":    tricky,
		"empty":     {},
		"truncated": seed[:len(seed)-2],
		"bad UTF-8": field(nil, 1, field(nil, 2, field(nil, 2, field(nil, fRecordBody, anyStr("a\xffb"))))),
	} {
		t.Run(name, func(t *testing.T) { checkOTLPWire(t, body) })
	}
	b, err := DecodeOTLPProto(tricky, now)
	if err != nil || len(b.Rows) != 1 || b.Rows[0].Data != "second" || b.Rows[0].Attributes["k"] != "9" ||
		b.Rows[0].Key != "/otlp/svc/h2" || b.Rows[0].Attributes["scope.name"] != "late" {
		t.Errorf("tricky export: %+v %v", b.Rows, err)
	}
}

// FuzzOTLPWire checks DecodeOTLPProto against the protobuf library.
func FuzzOTLPWire(f *testing.F) {
	f.Add(otlpWireSeed())
	f.Add([]byte{})
	f.Fuzz(checkOTLPWire)
}
