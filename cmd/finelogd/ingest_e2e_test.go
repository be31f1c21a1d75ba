package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/finelog/finelog/client"
	pushpb "github.com/finelog/finelog/gen/loki/push"
)

// TestE2EShipperProtocolsSurviveKill9: the OpenTelemetry SDK's exporters
// (OTLP/gRPC and OTLP/HTTP) and Loki pushes (protobuf + snappy, and
// JSON) to a real finelogd; every acknowledged row is there after kill -9
// and a restart.
func TestE2EShipperProtocolsSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	d := start(t, dir, nil, "--cluster", "east")
	ctx := context.Background()
	u, _ := url.Parse(d.url)

	grpcExp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(u.Host), otlploggrpc.WithInsecure(),
		otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	httpExp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(u.Host), otlploghttp.WithInsecure(),
		otlploghttp.WithCompression(otlploghttp.GzipCompression), otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	for name, exp := range map[string]sdklog.Exporter{"grpc": grpcExp, "http": httpExp} {
		res := resource.NewSchemaless(attribute.String("service.name", "e2e"), attribute.String("host.name", name))
		lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)), sdklog.WithResource(res))
		for _, line := range []string{"first", "second"} {
			var rec otellog.Record
			rec.SetBody(attribute.StringValue(line))
			rec.SetSeverity(otellog.SeverityInfo)
			lp.Logger("e2e").Emit(ctx, rec)
		}
		// Shutdown returns the export error, if any.
		if err := lp.Shutdown(ctx); err != nil {
			t.Fatalf("%s exporter: %v", name, err)
		}
	}

	raw, _ := proto.Marshal(&pushpb.PushRequest{Streams: []*pushpb.StreamAdapter{{Labels: `{job="e2e", app="loki"}`,
		Entries: []*pushpb.EntryAdapter{{Timestamp: timestamppb.New(time.Unix(1_700_000_000, 0)), Line: "from promtail"}}}}})
	for _, p := range []struct {
		ct   string
		body []byte
	}{
		{"application/x-protobuf", snappy.Encode(nil, raw)},
		{"application/json", []byte(`{"streams":[{"stream":{"app":"loki","job":"e2e"},"values":[["1700000000001000000","from fluent bit"]]}]}`)},
	} {
		ct := p.ct
		resp, err := http.Post(d.url+"/loki/api/v1/push", ct, bytes.NewReader(p.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("loki %s push: %d", ct, resp.StatusCode)
		}
	}

	d.signal(syscall.SIGKILL)
	d2 := start(t, dir, nil, "--cluster", "east")
	c := client.New(d2.url)
	for key, want := range map[string][]string{
		"/otlp/e2e/grpc":         {"first", "second"},
		"/otlp/e2e/http":         {"first", "second"},
		`{app="loki",job="e2e"}`: {"from promtail", "from fluent bit"},
	} {
		rows := fetchAll(t, c, key)
		if len(rows) != len(want) {
			t.Fatalf("%s after kill -9: %d rows, want %d", key, len(rows), len(want))
		}
		for i, r := range rows {
			if r.Data != want[i] || r.Cluster != "east" {
				t.Errorf("%s row %d = %q (cluster %q), want %q of east", key, i, r.Data, r.Cluster, want[i])
			}
		}
	}
}
