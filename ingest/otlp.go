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

// UnmarshalOTLPProto decodes an OTLP/HTTP protobuf body into the message
// (the gRPC path gets the message from Connect). DecodeOTLPProto is the
// faster way from a protobuf body to rows.
func UnmarshalOTLPProto(body []byte) (*collogspb.ExportLogsServiceRequest, error) {
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: not an OTLP ExportLogsServiceRequest: %v", ErrMalformed, err)
	}
	return &req, nil
}

// otlpKV is an attribute with its value already a string (attributeValue).
type otlpKV struct{ key, value string }

// otlpRecord is what the mapping needs of a LogRecord, from either decoder.
type otlpRecord struct {
	timeNS, observedNS uint64
	severity           int32
	severityText       string
	body               string // bodyText
	attrs              []otlpKV
	traceID, spanID    []byte
}

// DecodeOTLP maps an export request to rows. Records that break a limit
// are refused and counted per key; the rest are kept, so the server can
// answer with partial_success instead of failing the export.
func DecodeOTLP(req *collogspb.ExportLogsServiceRequest, nowMS int64) Batch {
	m := otlpMapper{nowMS: nowMS}
	var kvs []otlpKV
	for _, rl := range req.GetResourceLogs() {
		kvs = appendKVs(kvs[:0], rl.GetResource().GetAttributes())
		m.resource(kvs)
		for _, sl := range rl.GetScopeLogs() {
			scope := sl.GetScope()
			kvs = appendKVs(kvs[:0], scope.GetAttributes())
			m.scope(scope.GetName(), scope.GetVersion(), kvs)
			for i, lr := range sl.GetLogRecords() {
				kvs = appendKVs(kvs[:0], lr.GetAttributes())
				m.record(i, &otlpRecord{
					timeNS: lr.GetTimeUnixNano(), observedNS: lr.GetObservedTimeUnixNano(),
					severity: int32(lr.GetSeverityNumber()), severityText: lr.GetSeverityText(),
					body: bodyText(lr.GetBody()), attrs: kvs, traceID: lr.GetTraceId(), spanID: lr.GetSpanId(),
				})
			}
		}
		m.endResource()
	}
	return m.b
}

func appendKVs(dst []otlpKV, kvs []*commonpb.KeyValue) []otlpKV {
	for _, kv := range kvs {
		dst = append(dst, otlpKV{kv.GetKey(), attributeValue(kv.GetValue())})
	}
	return dst
}

// otlpMapper turns a stream of resources, scopes and records into rows;
// both decoders drive it, so the mapping exists once.
type otlpMapper struct {
	b     Batch
	nowMS int64

	// The current resource.
	key, cluster string
	resAttrs     map[string]string
	refused      int
	firstErr     error

	// The current scope.
	scopeName  string
	scopeAttrs map[string]string
	scopeCheck attrCheck
}

func (m *otlpMapper) resource(kvs []otlpKV) {
	m.resAttrs = make(map[string]string, len(kvs))
	m.key, m.cluster, m.refused, m.firstErr = "", "", 0, nil
	var service, instance, host string
	for _, kv := range kvs {
		switch kv.key {
		case OTLPKeyAttribute:
			m.key = kv.value
			continue
		case OTLPClusterAttribute:
			m.cluster = kv.value
			continue
		case "service.name":
			service = kv.value
		case "service.instance.id":
			instance = kv.value
		case "host.name":
			host = kv.value
		}
		m.resAttrs[kv.key] = kv.value
	}
	if m.key == "" {
		if service == "" {
			service = otlpUnknownService
		}
		if instance == "" {
			instance = host
		}
		if instance == "" {
			instance = otlpUnknownInstance
		}
		m.key = "/otlp/" + service + "/" + instance
	}
}

func (m *otlpMapper) scope(name, version string, kvs []otlpKV) {
	m.scopeName = name
	m.scopeAttrs = make(map[string]string, len(m.resAttrs)+len(kvs)+2)
	for k, v := range m.resAttrs {
		m.scopeAttrs[k] = v
	}
	if name != "" {
		m.scopeAttrs["scope.name"] = name
	}
	if version != "" {
		m.scopeAttrs["scope.version"] = version
	}
	for _, kv := range kvs {
		m.scopeAttrs["scope."+kv.key] = kv.value
	}
	m.scopeCheck = checkAttrs(m.scopeAttrs)
}

// record maps the i-th record of the current scope. Its attributes win
// over the scope's and the resource's; rows without attributes or ids of
// their own share the scope's map.
func (m *otlpMapper) record(i int, lr *otlpRecord) {
	attrs, check := m.scopeAttrs, m.scopeCheck
	if len(lr.attrs) > 0 || len(lr.traceID) > 0 || len(lr.spanID) > 0 {
		attrs = make(map[string]string, len(m.scopeAttrs)+len(lr.attrs)+2)
		for k, v := range m.scopeAttrs {
			attrs[k] = v
		}
		for _, kv := range lr.attrs {
			attrs[kv.key] = kv.value
		}
		if len(lr.traceID) > 0 {
			attrs["trace_id"] = hex.EncodeToString(lr.traceID)
		}
		if len(lr.spanID) > 0 {
			attrs["span_id"] = hex.EncodeToString(lr.spanID)
		}
		check = checkAttrs(attrs)
	}
	r := Row{Attributes: attrs}
	r.Key, r.Cluster, r.Source, r.Data = m.key, m.cluster, SourceOTLP, lr.body
	r.Level = levelFromSeverity(lr.severity)
	if r.Level == 0 {
		r.Level = levelFromName(lr.severityText)
	}
	switch {
	case lr.timeNS != 0:
		r.EpochMS = int64(lr.timeNS / 1e6)
	case lr.observedNS != 0:
		r.EpochMS = int64(lr.observedNS / 1e6)
	default:
		r.EpochMS = m.nowMS
	}
	if err := checkRow(&r, check); err != nil {
		m.refused++
		if m.firstErr == nil {
			m.firstErr = fmt.Errorf("log record %d of scope %q: %w", i, m.scopeName, err)
		}
		return
	}
	m.b.Rows = append(m.b.Rows, r)
}

func (m *otlpMapper) endResource() {
	if m.refused > 0 {
		m.b.Rejected = append(m.b.Rejected, Rejection{Stream: m.key, Records: m.refused, Err: m.firstErr, otlp: true})
	}
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
