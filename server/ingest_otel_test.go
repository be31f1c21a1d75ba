package server

import (
	"context"
	"net/url"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// TestOTelSDKExporters pushes through the OpenTelemetry Go SDK's own log
// exporters, over OTLP/HTTP and OTLP/gRPC (h2c), with and without gzip,
// with a bearer token, and reads the rows back.
func TestOTelSDKExporters(t *testing.T) {
	e, secret := jwtEnv(t)
	tok, err := auth.Mint(secret, "east", time.Hour, "", e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	var exportErr error
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { exportErr = err }))
	defer otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))
	u, _ := url.Parse(e.http.URL)
	headers := map[string]string{"Authorization": "Bearer " + tok}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		exp  func() (sdklog.Exporter, error)
	}{
		{"otlploghttp", func() (sdklog.Exporter, error) {
			return otlploghttp.New(ctx, otlploghttp.WithEndpoint(u.Host), otlploghttp.WithInsecure(), otlploghttp.WithHeaders(headers),
				otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
		}},
		{"otlploghttp+gzip", func() (sdklog.Exporter, error) {
			return otlploghttp.New(ctx, otlploghttp.WithEndpoint(u.Host), otlploghttp.WithInsecure(), otlploghttp.WithHeaders(headers),
				otlploghttp.WithCompression(otlploghttp.GzipCompression), otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
		}},
		{"otlploggrpc", func() (sdklog.Exporter, error) {
			return otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(u.Host), otlploggrpc.WithInsecure(), otlploggrpc.WithHeaders(headers),
				otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
		}},
		{"otlploggrpc+gzip", func() (sdklog.Exporter, error) {
			return otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(u.Host), otlploggrpc.WithInsecure(), otlploggrpc.WithHeaders(headers),
				otlploggrpc.WithCompressor("gzip"), otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exportErr = nil
			exp, err := tc.exp()
			if err != nil {
				t.Fatal(err)
			}
			res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("service.instance.id", tc.name))
			lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)), sdklog.WithResource(res))
			logger := lp.Logger("shop/cart", otellog.WithInstrumentationVersion("1.4.0"))
			sc := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID:    trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
				SpanID:     trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
				TraceFlags: trace.FlagsSampled,
			})
			var rec otellog.Record
			rec.SetTimestamp(time.UnixMilli(1_700_000_000_123))
			rec.SetSeverity(otellog.SeverityError)
			rec.SetBody(attribute.StringValue("payment declined"))
			rec.AddAttributes(attribute.String("order", "o-17"))
			logger.Emit(trace.ContextWithSpanContext(ctx, sc), rec)
			var rec2 otellog.Record
			rec2.SetTimestamp(time.UnixMilli(1_700_000_000_124))
			rec2.SetSeverity(otellog.SeverityWarn)
			rec2.SetBody(attribute.MapValue(attribute.Int("items", 3)))
			logger.Emit(ctx, rec2)
			if err := lp.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if exportErr != nil {
				t.Fatalf("export: %v", exportErr)
			}
			c := client.New(e.http.URL, client.WithRetry(1, 0, 0), client.WithToken(func(context.Context) (string, error) { return tok, nil }))
			got, err := c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/otlp/checkout/" + tc.name, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Entries) != 2 {
				t.Fatalf("%d rows, want 2", len(got.Entries))
			}
			a, b := got.Entries[0], got.Entries[1]
			if a.Data != "payment declined" || a.Level != loggingpb.LogLevel_LOG_LEVEL_ERROR || a.Timestamp.EpochMs != 1_700_000_000_123 ||
				a.Cluster != "east" || a.Source != "otlp" {
				t.Errorf("first row %v", a)
			}
			if b.Data != `{"items":3}` || b.Level != loggingpb.LogLevel_LOG_LEVEL_WARNING {
				t.Errorf("second row %v", b)
			}
		})
	}
}
