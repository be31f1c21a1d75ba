package server

import (
	"errors"
	"fmt"
	"unicode/utf8"
	"unsafe"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// pushCodec is connect's binary protobuf codec (Connect and gRPC) with a
// hand-written decoder for PushLogsRequest, the message every log line
// arrives in. The generic decoder allocates a LogEntry, a Timestamp and each
// string separately for every line; this one allocates the entries and
// timestamps as two slabs and copies every string of the request into one
// arena. The strings are what the memtable keeps until the rows are
// flushed, so a batch costs the garbage collector one object instead of a
// thousand. Everything else goes through the protobuf library.
type pushCodec struct{}

var (
	_ connect.Codec = pushCodec{}
	// errInvalidUTF8 matches the protobuf library: proto3 strings must be
	// valid UTF-8.
	errInvalidUTF8 = errors.New("string field contains invalid UTF-8")
)

func (pushCodec) Name() string   { return "proto" }
func (pushCodec) IsBinary() bool { return true }

func (pushCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", m)
	}
	return proto.Marshal(pm)
}

// MarshalAppend lets connect reuse its buffers.
func (pushCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (pushCodec) MarshalStable(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", m)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(pm)
}

func (pushCodec) Unmarshal(data []byte, m any) error {
	if req, ok := m.(*loggingpb.PushLogsRequest); ok {
		if err := decodePush(data, req); err != nil {
			return fmt.Errorf("unmarshal into %T: %w", m, err)
		}
		return nil
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", m)
	}
	if err := proto.Unmarshal(data, pm); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	return nil
}

// Field numbers of PushLogsRequest, LogEntry and Timestamp.
const (
	fReqKey      = 1
	fReqEntries  = 2
	fReqCluster  = 3
	fReqProducer = 100
	fReqFirstSeq = 101
	fReqLastSeq  = 102

	fEntTimestamp = 1
	fEntSource    = 2
	fEntData      = 3
	fEntAttempt   = 4
	fEntLevel     = 5
	fEntKey       = 6
	fEntSeq       = 7
	fEntCluster   = 101
	fEntAttrs     = 102

	fMapKey   = 1
	fMapValue = 2

	fTsEpochMS = 1
)

// pushDecoder holds the arena the request's strings are copied into. data
// belongs to connect, which reuses it after Unmarshal returns, so nothing
// may point into it.
type pushDecoder struct {
	arena []byte // capacity fixed up front: appends never move it
}

// str copies b into the arena and returns it as a string. The arena is
// never written again where a string points, which is what makes the
// unsafe.String sound.
func (d *pushDecoder) str(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", errInvalidUTF8
	}
	if len(b) == 0 {
		return "", nil
	}
	off := len(d.arena)
	d.arena = append(d.arena, b...)
	return unsafe.String(&d.arena[off], len(b)), nil
}

// decodePush is proto.Unmarshal for PushLogsRequest, minus unknown-field
// retention (the server never re-serializes a request). Its equivalence
// with the library is checked by TestPushDecoderMatchesProto.
func decodePush(data []byte, req *loggingpb.PushLogsRequest) error {
	proto.Reset(req)
	// Count the entries first so they can be one slab.
	n := 0
	for b := data; len(b) > 0; {
		num, typ, tl := consumeTag(b)
		if tl < 0 {
			return errors.New("proto: cannot parse invalid wire-format data")
		}
		vl := protowire.ConsumeFieldValue(num, typ, b[tl:])
		if vl < 0 {
			return protowire.ParseError(vl)
		}
		if num == fReqEntries && typ == protowire.BytesType {
			n++
		}
		b = b[tl+vl:]
	}
	d := pushDecoder{arena: make([]byte, 0, len(data))}
	var entries []loggingpb.LogEntry
	var stamps []loggingpb.Timestamp
	if n > 0 {
		entries = make([]loggingpb.LogEntry, n)
		stamps = make([]loggingpb.Timestamp, n)
		req.Entries = make([]*loggingpb.LogEntry, 0, n)
	}
	for b := data; len(b) > 0; {
		num, typ, tl := consumeTag(b)
		b = b[tl:]
		switch {
		case num == fReqEntries && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			b = b[l:]
			i := len(req.Entries)
			e := &entries[i]
			if err := d.entry(v, e, &stamps[i]); err != nil {
				return err
			}
			req.Entries = append(req.Entries, e)
			continue
		case (num == fReqKey || num == fReqCluster || num == fReqProducer) && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			b = b[l:]
			// Request-level strings get their own allocation: the store
			// may keep a producer name (or a cluster) long after the rows
			// are flushed, and must not pin the whole arena with it.
			if !utf8.Valid(v) {
				return errInvalidUTF8
			}
			s := string(v)
			switch num {
			case fReqKey:
				req.Key = s
			case fReqCluster:
				req.Cluster = s
			default:
				req.Producer = s
			}
			continue
		case (num == fReqFirstSeq || num == fReqLastSeq) && typ == protowire.VarintType:
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			if num == fReqFirstSeq {
				req.FirstSeq = int64(v)
			} else {
				req.LastSeq = int64(v)
			}
			continue
		}
		// Unknown field, or a known one with another wire type (which the
		// library also treats as unknown): skip it.
		b = b[protowire.ConsumeFieldValue(num, typ, b):]
	}
	return nil
}

// entry decodes one LogEntry. A repeated timestamp field merges into the
// same Timestamp, as the library does for a singular message field.
func (d *pushDecoder) entry(b []byte, e *loggingpb.LogEntry, ts *loggingpb.Timestamp) error {
	for len(b) > 0 {
		num, typ, tl := consumeTag(b)
		if tl < 0 {
			return errors.New("proto: cannot parse invalid wire-format data")
		}
		b = b[tl:]
		switch {
		case num == fEntTimestamp && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			if err := decodeTimestamp(v, ts); err != nil {
				return err
			}
			e.Timestamp = ts
			continue
		case (num == fEntSource || num == fEntData || num == fEntKey || num == fEntCluster) && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			s, err := d.str(v)
			if err != nil {
				return err
			}
			switch num {
			case fEntSource:
				e.Source = s
			case fEntData:
				e.Data = s
			case fEntKey:
				e.Key = s
			default:
				e.Cluster = s
			}
			continue
		case num == fEntAttrs && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			if err := d.attribute(v, e); err != nil {
				return err
			}
			continue
		case (num == fEntAttempt || num == fEntLevel || num == fEntSeq) && typ == protowire.VarintType:
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			switch num {
			case fEntAttempt:
				e.AttemptId = int32(v)
			case fEntLevel:
				e.Level = loggingpb.LogLevel(int32(v))
			default:
				e.Seq = int64(v)
			}
			continue
		}
		l := protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
	}
	return nil
}

// attribute decodes one map entry of LogEntry.attributes as the library
// does: a missing key or value is "", a later entry for the same key wins,
// and fields other than key and value are skipped.
func (d *pushDecoder) attribute(b []byte, e *loggingpb.LogEntry) error {
	var k, v string
	for len(b) > 0 {
		num, typ, tl := consumeTag(b)
		if tl < 0 {
			return errors.New("proto: cannot parse invalid wire-format data")
		}
		b = b[tl:]
		if (num == fMapKey || num == fMapValue) && typ == protowire.BytesType {
			x, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			s, err := d.str(x)
			if err != nil {
				return err
			}
			if num == fMapKey {
				k = s
			} else {
				v = s
			}
			continue
		}
		l := protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
	}
	if e.Attributes == nil {
		e.Attributes = map[string]string{}
	}
	e.Attributes[k] = v
	return nil
}

// consumeTag is protowire.ConsumeTag plus the library's upper bound on field
// numbers (ConsumeTag alone admits numbers up to MaxInt32).
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

func decodeTimestamp(b []byte, ts *loggingpb.Timestamp) error {
	for len(b) > 0 {
		num, typ, tl := consumeTag(b)
		if tl < 0 {
			return errors.New("proto: cannot parse invalid wire-format data")
		}
		b = b[tl:]
		if num == fTsEpochMS && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			ts.EpochMs = int64(v)
			continue
		}
		l := protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
	}
	return nil
}
