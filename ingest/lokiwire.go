package ingest

import (
	"errors"
	"strings"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of Loki's push messages (proto/loki/push/push.proto).
const (
	fPushStreams      = 1
	fStreamLabels     = 1
	fStreamEntries    = 2
	fEntryTimestamp   = 1
	fEntryLine        = 2
	fEntryMetadata    = 3
	fTimestampSeconds = 1
	fTimestampNanos   = 2
	fLabelPairName    = 1
	fLabelPairValue   = 2
)

const utf8Replacement = "\uFFFD"

var errLokiWire = errors.New("proto: cannot parse invalid wire-format data")

// lokiWire decodes a PushRequest the way proto.Unmarshal does (last value
// of a singular field wins, repeated fields append, a repeated message
// field merges, unknown fields and known ones of another wire type are
// skipped), with two differences that matter at ingest rates and for what
// shippers send:
//
//   - No string is copied: each points into raw, which the decoder owns
//     (snappy decoded it into a fresh buffer) and never writes again. A
//     push costs the garbage collector one buffer instead of an object per
//     line, for as long as the memtable holds the rows.
//   - A string that is not valid UTF-8 is kept with the bad bytes replaced
//     by U+FFFD instead of failing the whole push: Loki does not check, so
//     shippers send binary junk in log lines, and the JSON decoder does the
//     same replacement.
//
// Equivalence with proto.Unmarshal for valid input is checked by
// TestLokiWireMatchesProto and FuzzLokiWire.
type lokiWire struct {
	entries []lokiEntry // reused across streams: rows copy what they keep
}

// decode calls stream once per StreamAdapter, in order.
func (d *lokiWire) decode(raw []byte, stream func(labels string, entries []lokiEntry)) error {
	for b := raw; len(b) > 0; {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errLokiWire
		}
		b = b[n:]
		if num == fPushStreams && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errLokiWire
			}
			b = b[n:]
			labels, err := d.stream(v)
			if err != nil {
				return err
			}
			stream(labels, d.entries)
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errLokiWire
		}
		b = b[n:]
	}
	return nil
}

func (d *lokiWire) stream(b []byte) (labels string, err error) {
	d.entries = d.entries[:0]
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return "", errLokiWire
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fStreamLabels || num == fStreamEntries) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", errLokiWire
			}
			b = b[n:]
			if num == fStreamLabels {
				labels = wireString(v)
				continue
			}
			d.entries = append(d.entries, lokiEntry{noTimestamp: true})
			if err := entry(v, &d.entries[len(d.entries)-1]); err != nil {
				return "", err
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", errLokiWire
		}
		b = b[n:]
	}
	return labels, nil
}

func entry(b []byte, e *lokiEntry) error {
	var sec, nanos int64
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errLokiWire
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= fEntryTimestamp && num <= fEntryMetadata {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errLokiWire
			}
			b = b[n:]
			switch num {
			case fEntryTimestamp:
				// A repeated message field merges into one, as in the
				// library: each occurrence overwrites the fields it has.
				e.noTimestamp = false
				if err := timestamp(v, &sec, &nanos); err != nil {
					return err
				}
			case fEntryLine:
				e.line = wireString(v)
			default:
				name, value, err := labelPair(v)
				if err != nil {
					return err
				}
				e.meta = append(e.meta, label{name, value})
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errLokiWire
		}
		b = b[n:]
	}
	e.ns = sec*1e9 + int64(int32(nanos))
	return nil
}

func timestamp(b []byte, sec, nanos *int64) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errLokiWire
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == fTimestampSeconds || num == fTimestampNanos) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errLokiWire
			}
			b = b[n:]
			if num == fTimestampSeconds {
				*sec = int64(v)
			} else {
				*nanos = int64(v)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errLokiWire
		}
		b = b[n:]
	}
	return nil
}

func labelPair(b []byte) (name, value string, err error) {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return "", "", errLokiWire
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fLabelPairName || num == fLabelPairValue) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", "", errLokiWire
			}
			b = b[n:]
			if num == fLabelPairName {
				name = wireString(v)
			} else {
				value = wireString(v)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", "", errLokiWire
		}
		b = b[n:]
	}
	return name, value, nil
}

// wireString is b as a string without a copy (see lokiWire), or a copy
// with invalid UTF-8 replaced.
func wireString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := unsafe.String(&b[0], len(b))
	if !utf8.ValidString(s) {
		return strings.ToValidUTF8(s, utf8Replacement)
	}
	return s
}

// consumeTag is protowire.ConsumeTag plus the library's upper bound on
// field numbers (ConsumeTag alone admits numbers up to MaxInt32).
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}
