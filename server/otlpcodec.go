package server

import (
	"bytes"
	"fmt"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/ingest"
)

// otlpExportRequest is an OTLP/gRPC Export request as the handler gets it:
// the protobuf body kept as bytes, so ingest.DecodeOTLPProto reads it
// straight into rows (building the message costs four allocations per
// record), or the message when it came as JSON.
type otlpExportRequest struct {
	body []byte
	msg  *collogspb.ExportLogsServiceRequest
}

// otlpProtoCodec is the Export handler's "proto" codec: requests are kept
// raw, responses marshalled by the library.
type otlpProtoCodec struct{}

func (otlpProtoCodec) Name() string { return "proto" }

func (otlpProtoCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", m)
	}
	return proto.Marshal(pm)
}

func (otlpProtoCodec) Unmarshal(data []byte, m any) error {
	req, ok := m.(*otlpExportRequest)
	if !ok {
		return fmt.Errorf("%T is not an OTLP export request", m)
	}
	// Connect reuses data once Unmarshal returns; the rows will point
	// into the copy.
	req.body = bytes.Clone(data)
	return nil
}

// otlpJSONCodec is the "json" codec: OTLP/JSON rules (hex ids), not the
// plain protobuf JSON mapping.
type otlpJSONCodec struct{}

func (otlpJSONCodec) Name() string { return "json" }

func (otlpJSONCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", m)
	}
	return protojson.Marshal(pm)
}

func (otlpJSONCodec) Unmarshal(data []byte, m any) error {
	req, ok := m.(*otlpExportRequest)
	if !ok {
		return fmt.Errorf("%T is not an OTLP export request", m)
	}
	msg, err := ingest.UnmarshalOTLPJSON(data)
	if err != nil {
		return err
	}
	req.msg = msg
	return nil
}
