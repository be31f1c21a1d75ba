package ingest

import (
	"encoding/hex"
	"fmt"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Resource attributes with a meaning to finelog: they pick the row's key
// and cluster and are not kept as attributes.
const (
	OTLPKeyAttribute     = "finelog.key"
	OTLPClusterAttribute = "finelog.cluster"
)

// Names of the keys built when a resource sets no finelog.key; they are
// OpenTelemetry's own fallbacks where it has one.
const (
	otlpUnknownService  = "unknown_service"
	otlpUnknownInstance = "unknown_instance"
)

// UnmarshalOTLPProto decodes an OTLP/HTTP protobuf body.
func UnmarshalOTLPProto(body []byte) (*collogspb.ExportLogsServiceRequest, error) {
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: not an OTLP ExportLogsServiceRequest: %v", ErrMalformed, err)
	}
	return &req, nil
}

// DecodeOTLP maps an export request to rows. Records that break a limit
// are refused and counted per key; the rest are kept, so the server can
// answer with partial_success instead of failing the export.
func DecodeOTLP(req *collogspb.ExportLogsServiceRequest, nowMS int64) Batch {
	var b Batch
	for _, rl := range req.GetResourceLogs() {
		resAttrs := make(map[string]string, len(rl.GetResource().GetAttributes()))
		var key, cluster, service, instance, host string
		for _, kv := range rl.GetResource().GetAttributes() {
			v := attributeValue(kv.GetValue())
			switch kv.GetKey() {
			case OTLPKeyAttribute:
				key = v
				continue
			case OTLPClusterAttribute:
				cluster = v
				continue
			case "service.name":
				service = v
			case "service.instance.id":
				instance = v
			case "host.name":
				host = v
			}
			resAttrs[kv.GetKey()] = v
		}
		if key == "" {
			if service == "" {
				service = otlpUnknownService
			}
			if instance == "" {
				instance = host
			}
			if instance == "" {
				instance = otlpUnknownInstance
			}
			key = "/otlp/" + service + "/" + instance
		}
		var refused int
		var firstErr error
		for _, sl := range rl.GetScopeLogs() {
			scope := sl.GetScope()
			scopeAttrs := make(map[string]string, len(resAttrs)+len(scope.GetAttributes())+2)
			for k, v := range resAttrs {
				scopeAttrs[k] = v
			}
			if scope.GetName() != "" {
				scopeAttrs["scope.name"] = scope.GetName()
			}
			if scope.GetVersion() != "" {
				scopeAttrs["scope.version"] = scope.GetVersion()
			}
			for _, kv := range scope.GetAttributes() {
				scopeAttrs["scope."+kv.GetKey()] = attributeValue(kv.GetValue())
			}
			scopeCheck := checkAttrs(scopeAttrs)
			for i, lr := range sl.GetLogRecords() {
				attrs, check := scopeAttrs, scopeCheck
				if len(lr.GetAttributes()) > 0 || len(lr.GetTraceId()) > 0 || len(lr.GetSpanId()) > 0 {
					attrs = make(map[string]string, len(scopeAttrs)+len(lr.GetAttributes())+2)
					for k, v := range scopeAttrs {
						attrs[k] = v
					}
					for _, kv := range lr.GetAttributes() {
						attrs[kv.GetKey()] = attributeValue(kv.GetValue())
					}
					if id := lr.GetTraceId(); len(id) > 0 {
						attrs["trace_id"] = hex.EncodeToString(id)
					}
					if id := lr.GetSpanId(); len(id) > 0 {
						attrs["span_id"] = hex.EncodeToString(id)
					}
					check = checkAttrs(attrs)
				}
				r := Row{Attributes: attrs}
				r.Key, r.Cluster, r.Source = key, cluster, SourceOTLP
				r.Data = bodyText(lr.GetBody())
				r.Level = levelFromSeverity(int32(lr.GetSeverityNumber()))
				if r.Level == 0 {
					r.Level = levelFromName(lr.GetSeverityText())
				}
				switch {
				case lr.GetTimeUnixNano() != 0:
					r.EpochMS = int64(lr.GetTimeUnixNano() / 1e6)
				case lr.GetObservedTimeUnixNano() != 0:
					r.EpochMS = int64(lr.GetObservedTimeUnixNano() / 1e6)
				default:
					r.EpochMS = nowMS
				}
				if err := checkRow(&r, check); err != nil {
					refused++
					if firstErr == nil {
						firstErr = fmt.Errorf("log record %d of scope %q: %w", i, scope.GetName(), err)
					}
					continue
				}
				b.Rows = append(b.Rows, r)
			}
		}
		if refused > 0 {
			b.Rejected = append(b.Rejected, Rejection{Stream: key, Records: refused, Err: firstErr})
		}
	}
	return b
}

// bodyText is a record's data: a string body as is, any other value as
// JSON, no body as "".
func bodyText(v *commonpb.AnyValue) string {
	if v == nil || v.GetValue() == nil {
		return ""
	}
	if s, ok := v.GetValue().(*commonpb.AnyValue_StringValue); ok {
		return s.StringValue
	}
	return string(appendAnyJSON(nil, v))
}

// attributeValue is an attribute as a string: strings as is, scalars in
// their usual spelling, arrays and maps as JSON, bytes as base64.
func attributeValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case nil:
		return ""
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BytesValue:
		return base64Std(x.BytesValue)
	default:
		return string(appendAnyJSON(nil, v))
	}
}
