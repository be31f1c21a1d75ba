package ingest

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// appendAnyJSON writes an OTLP AnyValue as the JSON a reader expects of a
// log body: maps as objects (in the sender's key order), arrays as arrays,
// numbers as numbers, bytes as base64 strings, no value as null. This is
// not OTLP/JSON's own encoding of AnyValue ({"stringValue": ...}), which
// nobody wants to read in a log line.
func appendAnyJSON(dst []byte, v *commonpb.AnyValue) []byte {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return appendJSONString(dst, x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		return strconv.AppendBool(dst, x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.AppendInt(dst, x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		f := x.DoubleValue
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// JSON has no NaN or infinity; say which it was.
			return appendJSONString(dst, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return appendJSONString(dst, base64Std(x.BytesValue))
	case *commonpb.AnyValue_ArrayValue:
		dst = append(dst, '[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendAnyJSON(dst, e)
		}
		return append(dst, ']')
	case *commonpb.AnyValue_KvlistValue:
		dst = append(dst, '{')
		for i, kv := range x.KvlistValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, kv.GetKey())
			dst = append(dst, ':')
			dst = appendAnyJSON(dst, kv.GetValue())
		}
		return append(dst, '}')
	default:
		return append(dst, "null"...)
	}
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
