package ingest

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Field numbers of the OTLP logs messages used here.
const (
	fExportResourceLogs = 1
	fResourceLogsRes    = 1
	fResourceLogsScopes = 2
	fResourceAttrs      = 1
	fScopeLogsScope     = 1
	fScopeLogsRecords   = 2
	fScopeName          = 1
	fScopeVersion       = 2
	fScopeAttrs         = 3
	fRecordTime         = 1
	fRecordSeverity     = 2
	fRecordSevText      = 3
	fRecordBody         = 5
	fRecordAttrs        = 6
	fRecordTraceID      = 9
	fRecordSpanID       = 10
	fRecordObserved     = 11
	fKeyValueKey        = 1
	fKeyValueValue      = 2
	fAnyString          = 1
)

// DecodeOTLPProto decodes an OTLP/HTTP protobuf body straight into rows,
// as DecodeOTLP(UnmarshalOTLPProto(body)) would, without building the
// message: strings point into body (which the caller must not change
// afterwards), and only non-string values go through the protobuf
// library. A string that is not valid UTF-8 is kept with the bad bytes
// replaced, where the library refuses the whole export. The protobuf
// rules it follows are the library's: the last value of a singular field
// wins, a message field seen twice is merged, repeated fields append,
// unknown fields and known ones of another wire type are skipped.
// FuzzOTLPWire checks it against the library.
func DecodeOTLPProto(body []byte, nowMS int64) (Batch, error) {
	d := otlpWire{m: otlpMapper{nowMS: nowMS}}
	if err := d.export(body); err != nil {
		return Batch{}, fmt.Errorf("%w: not an OTLP ExportLogsServiceRequest: %v", ErrMalformed, err)
	}
	return d.m.b, nil
}

type otlpWire struct {
	m otlpMapper
	// Buffers reused across resources, scopes and records.
	kvs     []otlpKV
	scopes  [][]byte
	records [][]byte
	rec     otlpRecord
	merge   []byte
}

// fields calls f for each field of a message; f returns false to skip the
// field's value (an unknown field or a known one of another wire type).
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errLokiWire
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errLokiWire
		}
		v := b[:n]
		b = b[n:]
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(v)
		}
		if err := f(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

func (d *otlpWire) export(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == fExportResourceLogs && typ == protowire.BytesType {
			return d.resourceLogs(v)
		}
		return nil
	})
}

func (d *otlpWire) resourceLogs(b []byte) error {
	// The resource may come after its scope logs on the wire: collect
	// both, then map.
	d.kvs, d.scopes = d.kvs[:0], d.scopes[:0]
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fResourceLogsRes:
			return fields(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num == fResourceAttrs && typ == protowire.BytesType {
					return d.keyValue(v)
				}
				return nil
			})
		case fResourceLogsScopes:
			d.scopes = append(d.scopes, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.m.resource(d.kvs)
	for _, s := range d.scopes {
		if err := d.scopeLogs(s); err != nil {
			return err
		}
	}
	d.m.endResource()
	return nil
}

func (d *otlpWire) scopeLogs(b []byte) error {
	d.kvs, d.records = d.kvs[:0], d.records[:0]
	var name, version string
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fScopeLogsScope:
			return fields(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if typ != protowire.BytesType {
					return nil
				}
				switch num {
				case fScopeName:
					name = wireString(v)
				case fScopeVersion:
					version = wireString(v)
				case fScopeAttrs:
					return d.keyValue(v)
				}
				return nil
			})
		case fScopeLogsRecords:
			d.records = append(d.records, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.m.scope(name, version, d.kvs)
	d.m.b.Rows = slices.Grow(d.m.b.Rows, len(d.records))
	for i, r := range d.records {
		if err := d.record(i, r); err != nil {
			return err
		}
	}
	return nil
}

func (d *otlpWire) record(i int, b []byte) error {
	d.kvs = d.kvs[:0]
	r := &d.rec
	*r = otlpRecord{}
	var body [][]byte
	var one [1][]byte
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case (num == fRecordTime || num == fRecordObserved) && typ == protowire.Fixed64Type:
			x := binary.LittleEndian.Uint64(v)
			if num == fRecordTime {
				r.timeNS = x
			} else {
				r.observedNS = x
			}
		case num == fRecordSeverity && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			r.severity = int32(x)
		case typ != protowire.BytesType:
		case num == fRecordSevText:
			r.severityText = wireString(v)
		case num == fRecordBody:
			if body == nil {
				one[0] = v
				body = one[:1]
			} else {
				body = append(body, v)
			}
		case num == fRecordAttrs:
			return d.keyValue(v)
		case num == fRecordTraceID:
			r.traceID = v
		case num == fRecordSpanID:
			r.spanID = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	if body != nil {
		if r.body, err = d.anyValue(body, true); err != nil {
			return err
		}
	}
	r.attrs = d.kvs
	d.m.record(i, r)
	return nil
}

// keyValue appends one KeyValue to d.kvs.
func (d *otlpWire) keyValue(b []byte) error {
	var key string
	var vals [][]byte
	var one [1][]byte
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fKeyValueKey:
			key = wireString(v)
		case fKeyValueValue:
			if vals == nil {
				one[0] = v
				vals = one[:1]
			} else {
				vals = append(vals, v)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var value string
	if vals != nil {
		if value, err = d.anyValue(vals, false); err != nil {
			return err
		}
	}
	d.kvs = append(d.kvs, otlpKV{key, value})
	return nil
}

// anyValue is an AnyValue field as bodyText (body) or attributeValue
// would write it. occ are the field's occurrences: protobuf merges a
// message seen more than once, and merging is decoding the occurrences
// concatenated. A plain string value, nearly every value there is, is
// read here; anything else goes through the library.
func (d *otlpWire) anyValue(occ [][]byte, body bool) (string, error) {
	b := occ[0]
	if len(occ) > 1 {
		d.merge = d.merge[:0]
		for _, o := range occ {
			d.merge = append(d.merge, o...)
		}
		b = d.merge
	}
	var s []byte
	plain := true
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == fAnyString && typ == protowire.BytesType {
			s = v
		} else {
			plain = false
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if plain {
		if len(occ) > 1 {
			return strings.Clone(wireString(s)), nil // d.merge is reused: copy
		}
		return wireString(s), nil
	}
	var v commonpb.AnyValue
	if err := proto.Unmarshal(b, &v); err != nil {
		return "", err
	}
	if body {
		return bodyText(&v), nil
	}
	return attributeValue(&v), nil
}
