package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// lokiJSONPush is Loki's JSON push body:
// {"streams":[{"stream":{"app":"api"},"values":[["<ns>","line",{"meta":"x"}]]}]}.
type stdLokiJSONPush struct {
	Streams []struct {
		Stream map[string]string `json:"stream"`
		Values []json.RawMessage `json:"values"`
	} `json:"streams"`
}

// decodeLokiJSONStd is the oracle for DecodeLokiJSON: the same decoder
// written with encoding/json, which the hand scanner must agree with.
func decodeLokiJSONStd(body []byte, nowMS int64) (Batch, error) {
	var req stdLokiJSONPush
	if err := json.Unmarshal(body, &req); err != nil {
		return Batch{}, fmt.Errorf("%w: not a Loki JSON push: %v", ErrMalformed, err)
	}
	var b Batch
	for si, s := range req.Streams {
		if len(s.Values) == 0 {
			continue // nothing to store, nothing to refuse
		}
		labels := make([]label, 0, len(s.Stream))
		for k, v := range s.Stream {
			labels = append(labels, label{k, v})
		}
		entries := make([]lokiEntry, len(s.Values))
		for i, raw := range s.Values {
			e, err := stdLokiJSONValue(raw)
			if err != nil {
				return Batch{}, fmt.Errorf("%w: stream %d, value %d: %v", ErrMalformed, si, i, err)
			}
			entries[i] = e
		}
		sorted, err := sortLabels(labels)
		if err == nil {
			for _, l := range sorted {
				if !validLabelName(l.name) {
					err = fmt.Errorf("%q is not a label name", l.name)
					break
				}
			}
		}
		if err != nil {
			b.Rejected = append(b.Rejected, Rejection{Stream: canonicalSelector(labels), Records: len(entries),
				Err: fmt.Errorf("%v: %w", err, ErrRefused)})
			continue
		}
		b.addLokiStream(sorted, entries, nowMS)
	}
	return b, nil
}

func stdLokiJSONValue(raw json.RawMessage) (lokiEntry, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil || len(parts) < 2 || len(parts) > 3 {
		return lokiEntry{}, fmt.Errorf("want [\"<unix ns>\", \"<line>\"] or with a third {metadata} element, got %s", stdClip(raw))
	}
	var ts string
	if err := json.Unmarshal(parts[0], &ts); err != nil {
		return lokiEntry{}, fmt.Errorf("timestamp %s: want a string of unix nanoseconds", stdClip(parts[0]))
	}
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return lokiEntry{}, fmt.Errorf("timestamp %q: want a string of unix nanoseconds", ts)
	}
	e := lokiEntry{ns: ns}
	if err := json.Unmarshal(parts[1], &e.line); err != nil {
		return lokiEntry{}, fmt.Errorf("line %s: want a string", stdClip(parts[1]))
	}
	if len(parts) == 3 && !bytes.Equal(bytes.TrimSpace(parts[2]), []byte("null")) {
		var meta map[string]string
		if err := json.Unmarshal(parts[2], &meta); err != nil {
			return lokiEntry{}, fmt.Errorf("structured metadata %s: want an object of strings", stdClip(parts[2]))
		}
		for k, v := range meta {
			e.meta = append(e.meta, label{k, v})
		}
	}
	return e, nil
}

func stdClip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}
