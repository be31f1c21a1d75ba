package federation

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// A proxied page is usually handed to the caller exactly as the peer sent
// it: decoding 1000 entries and encoding them again was most of a hop's
// cost. answerCodec keeps a FetchLogsResponse's bytes undecoded (as the
// message's unknown fields, which proto marshalling writes back verbatim),
// checkAnswer validates them without allocating, and Decode turns them into
// fields when something needs to look inside (a fan-out merge, a JSON
// caller).

type undecodedKey struct{}

// WithUndecodedAnswers marks ctx as a read whose answer will be written in
// binary protobuf, so a proxied answer may pass through undecoded (see
// Decode). Without it the Router always returns decoded messages.
func WithUndecodedAnswers(ctx context.Context) context.Context {
	return context.WithValue(ctx, undecodedKey{}, true)
}

func undecodedOK(ctx context.Context) bool {
	ok, _ := ctx.Value(undecodedKey{}).(bool)
	return ok
}

// Decode decodes the fields a pass-through answer still carries as bytes;
// it does nothing to an answer already decoded.
func Decode(resp *loggingpb.FetchLogsResponse) error {
	m := resp.ProtoReflect()
	raw := m.GetUnknown()
	if len(raw) == 0 {
		return nil
	}
	m.SetUnknown(nil)
	return proto.UnmarshalOptions{Merge: true}.Unmarshal(raw, resp)
}

// answerCodec is the binary protobuf codec for peer calls, except that a
// FetchLogsResponse is not decoded: its bytes are kept whole.
type answerCodec struct{}

func (answerCodec) Name() string { return "proto" }

func (answerCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", m)
	}
	return proto.Marshal(pm)
}

func (answerCodec) Unmarshal(data []byte, m any) error {
	if resp, ok := m.(*loggingpb.FetchLogsResponse); ok {
		resp.Reset()
		// Connect reuses its read buffers: keep a copy.
		resp.ProtoReflect().SetUnknown(append([]byte(nil), data...))
		return nil
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", m)
	}
	return proto.Unmarshal(data, pm)
}

// Field numbers of FetchLogsResponse and LogEntry, from the generated
// descriptors so a renumbering in the .proto cannot leave them behind.
var (
	fRespEntries  = fieldNumber(&loggingpb.FetchLogsResponse{}, "entries")
	fRespClusters = fieldNumber(&loggingpb.FetchLogsResponse{}, "clusters")

	fEntryTimestamp = fieldNumber(&loggingpb.LogEntry{}, "timestamp")
	fEntrySource    = fieldNumber(&loggingpb.LogEntry{}, "source")
	fEntryData      = fieldNumber(&loggingpb.LogEntry{}, "data")
	fEntryKey       = fieldNumber(&loggingpb.LogEntry{}, "key")
	fEntrySeq       = fieldNumber(&loggingpb.LogEntry{}, "seq")
	fEntryCluster   = fieldNumber(&loggingpb.LogEntry{}, "cluster")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil {
		panic(fmt.Sprintf("%T has no field %s", m, name))
	}
	return f.Number()
}

var errMalformed = errors.New("malformed FetchLogsResponse")

// checkAnswer validates an undecoded answer exactly as proto.Unmarshal
// would (a known field with another wire type is an unknown field, as the
// protobuf decoders treat it; strings must be UTF-8; nested messages must
// parse) and checks that every row is of cluster. It returns the number of
// rows.
func checkAnswer(raw []byte, cluster string) (int, error) {
	rows := 0
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		// ConsumeTag checks only the lower bound of a field number; the
		// decoder also refuses one above MaxValidNumber.
		if n < 0 || num > protowire.MaxValidNumber {
			return 0, errMalformed
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fRespEntries || num == fRespClusters) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, errMalformed
			}
			if num == fRespEntries {
				if err := checkEntry(v, cluster); err != nil {
					return 0, err
				}
				rows++
			} else if proto.Unmarshal(v, &loggingpb.ClusterStatus{}) != nil {
				return 0, errMalformed
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, errMalformed
		}
		b = b[n:]
	}
	return rows, nil
}

// checkEntry validates one LogEntry and its cluster (the last value wins,
// as in decoding; absent means "").
func checkEntry(e []byte, cluster string) error {
	var got []byte
	var seq uint64
	for len(e) > 0 {
		num, typ, n := protowire.ConsumeTag(e)
		if n < 0 || num > protowire.MaxValidNumber {
			return errMalformed
		}
		e = e[n:]
		switch {
		case typ == protowire.BytesType && (num == fEntrySource || num == fEntryData || num == fEntryKey || num == fEntryCluster || num == fEntryTimestamp):
			v, n := protowire.ConsumeBytes(e)
			if n < 0 {
				return errMalformed
			}
			switch {
			case num == fEntryTimestamp:
				if !validTimestamp(v) {
					return errMalformed
				}
			case !utf8.Valid(v):
				return fmt.Errorf("%w: a string is not UTF-8", errMalformed)
			case num == fEntryCluster:
				got = v
			}
			e = e[n:]
		case typ == protowire.VarintType && num == fEntrySeq:
			v, n := protowire.ConsumeVarint(e)
			if n < 0 {
				return errMalformed
			}
			seq = v
			e = e[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, e)
			if n < 0 {
				return errMalformed
			}
			e = e[n:]
		}
	}
	if string(got) != cluster {
		return fmt.Errorf("answered with a row of cluster %q (seq %d), not its own", got, int64(seq))
	}
	return nil
}

// validTimestamp checks that a Timestamp message parses.
func validTimestamp(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return false
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}
