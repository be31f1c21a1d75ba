package ingest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/snappy"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pushpb "github.com/finelog/finelog/gen/loki/push"
)

// benchLine is about the 150-byte line the push benchmarks use.
func benchLine(i int) string {
	return fmt.Sprintf("2026-11-24T03:53:22.%06dZ INFO  svc.api.http [job-7/task-3] request completed method=GET status=200 bytes=%d %s", i, i*7, strings.Repeat("x", 40))
}

func BenchmarkDecodeLokiProto(b *testing.B) {
	s := &pushpb.StreamAdapter{Labels: `{app="api", env="prod", host="web-1", level="info"}`}
	for i := range 1000 {
		s.Entries = append(s.Entries, &pushpb.EntryAdapter{Timestamp: &timestamppb.Timestamp{Seconds: 1_700_000_000, Nanos: int32(i)}, Line: benchLine(i)})
	}
	raw, _ := proto.Marshal(&pushpb.PushRequest{Streams: []*pushpb.StreamAdapter{s}})
	body := snappy.Encode(nil, raw)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeLokiProto(body, 1<<30, now); err != nil {
			b.Fatal(err)
		}
	}
}

func otlpBenchBody() []byte {
	sl := &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: "lib"}}
	for i := range 1000 {
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{TimeUnixNano: 1_700_000_000_000_000_000 + uint64(i), SeverityNumber: 9,
			Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: benchLine(i)}}})
	}
	raw, _ := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "api"}}}}},
		ScopeLogs: []*logspb.ScopeLogs{sl},
	}}})
	return raw
}

func BenchmarkDecodeOTLPProto(b *testing.B) {
	raw := otlpBenchBody()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeOTLPProto(raw, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeOTLPLibrary is the same body through the protobuf
// library's message, as the JSON and gRPC paths go.
func BenchmarkDecodeOTLPLibrary(b *testing.B) {
	raw := otlpBenchBody()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		req, err := UnmarshalOTLPProto(raw)
		if err != nil {
			b.Fatal(err)
		}
		DecodeOTLP(req, now)
	}
}

func BenchmarkDecodeLokiJSON(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"streams":[{"stream":{"app":"api","env":"prod","host":"web-1","level":"info"},"values":[`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `["%d",%q]`, 1_700_000_000_000_000_000+i, benchLine(i))
	}
	sb.WriteString(`]}]}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeLokiJSON(body, now); err != nil {
			b.Fatal(err)
		}
	}
}
