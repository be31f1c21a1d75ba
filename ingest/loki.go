package ingest

import (
	"fmt"
	"slices"

	"github.com/klauspost/compress/snappy"
)

// Labels with a meaning to finelog rather than to the user: they pick the
// row's key and cluster and are not kept as attributes.
const (
	LokiKeyLabel     = "finelog_key"
	LokiClusterLabel = "finelog_cluster"
)

// lokiLevelLabels set a row's level, first one present wins; labels are
// looked at before structured metadata.
var lokiLevelLabels = [...]string{"level", "detected_level", "severity"}

// lokiEntry is one line of a stream, from either body format.
type lokiEntry struct {
	ns   int64
	line string
	meta []label // structured metadata, in the sender's order
	// noTimestamp: the sender sent none; the row gets the receive time.
	noTimestamp bool
}

// DecodeLokiProto decodes a Loki push body in its protobuf form:
// a snappy block (not framed) holding a PushRequest. A body that would
// decompress to more than maxBytes is refused before decompressing it.
func DecodeLokiProto(body []byte, maxBytes int64, nowMS int64) (Batch, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return Batch{}, fmt.Errorf("%w: not a snappy block (Loki's protobuf body is snappy-compressed): %v", ErrMalformed, err)
	}
	if int64(n) > maxBytes {
		return Batch{}, fmt.Errorf("%w: snappy body decompresses to %d bytes, limit is %d", ErrMalformed, n, maxBytes)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return Batch{}, fmt.Errorf("%w: not a snappy block (Loki's protobuf body is snappy-compressed): %v", ErrMalformed, err)
	}
	var b Batch
	var d lokiWire
	err = d.decode(raw, func(labelText string, entries []lokiEntry) {
		if len(entries) == 0 {
			return // nothing to store, nothing to refuse
		}
		labels, err := parseSelector(labelText)
		if err != nil {
			b.Rejected = append(b.Rejected, Rejection{Stream: labelText, Records: len(entries),
				Err: fmt.Errorf("%v: %w", err, ErrRefused)})
			return
		}
		b.addLokiStream(labels, entries, nowMS)
	})
	if err != nil {
		return Batch{}, fmt.Errorf("%w: not a Loki PushRequest: %v", ErrMalformed, err)
	}
	return b, nil
}

// addLokiStream maps one stream's entries to rows: key from finelog_key
// or the canonical selector, attributes from the labels and each entry's
// structured metadata (a label wins over metadata of the same name), level
// from the level labels, epoch_ms from the ns timestamp. Entries that break
// a limit are refused, counted under the stream's name.
func (b *Batch) addLokiStream(labels []label, entries []lokiEntry, nowMS int64) {
	key, cluster := "", ""
	streamAttrs := make(map[string]string, len(labels))
	var userLabels []label
	for _, l := range labels {
		switch l.name {
		case LokiKeyLabel:
			key = l.value
		case LokiClusterLabel:
			cluster = l.value
		default:
			userLabels = append(userLabels, l)
			streamAttrs[l.name] = l.value
		}
	}
	selector := canonicalSelector(userLabels)
	if key == "" {
		key = selector
	}
	streamLevel := int32(0)
	for _, name := range lokiLevelLabels {
		if v, ok := streamAttrs[name]; ok {
			streamLevel = levelFromName(v)
			break
		}
	}
	streamCheck := checkAttrs(streamAttrs)
	b.Rows = slices.Grow(b.Rows, len(entries))
	var refused int
	var firstErr error
	for i := range entries {
		e := &entries[i]
		r := Row{Attributes: streamAttrs}
		r.Key, r.Cluster, r.Source, r.Data, r.Level = key, cluster, SourceLoki, e.line, streamLevel
		check := streamCheck
		r.EpochMS = floorDiv(e.ns, 1e6)
		if e.noTimestamp || e.ns == 0 {
			r.EpochMS = nowMS
		}
		if len(e.meta) > 0 {
			// Rows without metadata share the stream's map; a row with
			// some gets its own.
			attrs := make(map[string]string, len(streamAttrs)+len(e.meta))
			for k, v := range streamAttrs {
				attrs[k] = v
			}
			for _, m := range e.meta {
				if _, isLabel := streamAttrs[m.name]; !isLabel {
					attrs[m.name] = m.value
				}
			}
			r.Attributes = attrs
			check = checkAttrs(attrs)
			if streamLevel == 0 {
				for _, name := range lokiLevelLabels {
					if v, ok := attrs[name]; ok {
						r.Level = levelFromName(v)
						break
					}
				}
			}
		}
		if err := checkRow(&r, check); err != nil {
			refused++
			if firstErr == nil {
				firstErr = fmt.Errorf("entry %d: %w", i, err)
			}
			continue
		}
		b.Rows = append(b.Rows, r)
	}
	if refused > 0 {
		b.Rejected = append(b.Rejected, Rejection{Stream: selector, Records: refused, Err: firstErr})
	}
}

// floorDiv rounds toward minus infinity, so a timestamp before 1970 maps
// to the millisecond it falls in.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
