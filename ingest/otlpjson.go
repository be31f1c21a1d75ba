package ingest

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// UnmarshalOTLPJSON decodes an OTLP/HTTP JSON body. protojson already
// follows most of OTLP/JSON: it accepts lowerCamelCase and original field
// names, enums as integers, 64-bit integers as strings or numbers, and
// with DiscardUnknown it ignores unknown fields as the spec requires. The
// one place OTLP/JSON departs from the protobuf JSON mapping is traceId
// and spanId, which are hex, not base64; see fixHexID.
func UnmarshalOTLPJSON(body []byte) (*collogspb.ExportLogsServiceRequest, error) {
	var req collogspb.ExportLogsServiceRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: not an OTLP/JSON ExportLogsServiceRequest: %v", ErrMalformed, err)
	}
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				var err error
				if lr.TraceId, err = fixHexID(lr.TraceId, 16); err != nil {
					return nil, fmt.Errorf("%w: traceId: %v", ErrMalformed, err)
				}
				if lr.SpanId, err = fixHexID(lr.SpanId, 8); err != nil {
					return nil, fmt.Errorf("%w: spanId: %v", ErrMalformed, err)
				}
			}
		}
	}
	return &req, nil
}

// fixHexID recovers an id of size bytes that OTLP/JSON sent as 2*size hex
// digits and protojson decoded as base64. Every hex digit is a base64
// character, and 2*size digits are a multiple of four characters, so the
// base64 decoding used every bit and re-encoding gives back the exact
// digits the sender wrote. An id already of the right size came as base64
// (the protobuf JSON mapping, which some encoders use) and is kept.
func fixHexID(b []byte, size int) ([]byte, error) {
	switch len(b) {
	case 0, size:
		return b, nil
	case size * 2 * 3 / 4:
		id, err := hex.DecodeString(base64.StdEncoding.EncodeToString(b))
		if err != nil {
			return nil, fmt.Errorf("want %d hex digits: %v", 2*size, err)
		}
		return id, nil
	default:
		return nil, fmt.Errorf("want %d hex digits", 2*size)
	}
}
