package ingest

import (
	"fmt"
	"strconv"
	"strings"
)

// DecodeLokiJSON decodes a Loki push body in its JSON form:
// {"streams":[{"stream":{"app":"api"},"values":[["<ns>","line",{"meta":"x"}]]}]}.
// A value that is not ["<ns>", "line"] or ["<ns>", "line", {metadata}],
// with ns a decimal string, makes the whole body malformed: Loki refuses
// it whole too, and a shipper that sent it has a bug to fix, not a row to
// drop.
//
// It accepts exactly what encoding/json would decoding into the obvious
// struct (field names matched case-insensitively, the last of a repeated
// field winning, null as empty), which TestLokiJSONMatchesStd and
// FuzzLokiJSON check, at a fraction of the cost: lines point into body,
// which the caller must not change afterwards.
func DecodeLokiJSON(body []byte, nowMS int64) (Batch, error) {
	d := lokiJSON{s: jsonScan{b: body}}
	if err := d.push(); err != nil {
		return Batch{}, fmt.Errorf("%w: not a Loki JSON push: %v", ErrMalformed, err)
	}
	var b Batch
	for si, s := range d.streams {
		if len(s.entries) == 0 {
			continue // nothing to store, nothing to refuse
		}
		if s.err != nil {
			return Batch{}, fmt.Errorf("%w: stream %d, %v", ErrMalformed, si, s.err)
		}
		labels := make([]label, 0, len(s.labels))
		for k, v := range s.labels {
			labels = append(labels, label{k, v})
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
			b.Rejected = append(b.Rejected, Rejection{Stream: canonicalSelector(labels), Records: len(s.entries),
				Err: fmt.Errorf("%v: %w", err, ErrRefused)})
			continue
		}
		b.addLokiStream(sorted, s.entries, nowMS)
	}
	return b, nil
}

type lokiJSON struct {
	s       jsonScan
	streams []lokiJSONStream
}

type lokiJSONStream struct {
	labels  map[string]string
	entries []lokiEntry
	// err is the first bad value: it fails the push only if these values
	// are the stream's last "values" (an earlier one is replaced).
	err error
}

func (d *lokiJSON) push() error {
	if null, err := d.s.null(); null || err != nil {
		if err != nil {
			return err
		}
		return d.s.end()
	}
	err := d.s.object(0, func(key string) error {
		if !strings.EqualFold(key, "streams") {
			return d.s.skip(1)
		}
		if null, err := d.s.null(); null || err != nil {
			d.streams = nil
			return err
		}
		// A repeated "streams" decodes over the earlier one's elements
		// without clearing them, as encoding/json does.
		d.streams = d.streams[:0]
		return d.s.array(1, func() error {
			if len(d.streams) < cap(d.streams) {
				d.streams = d.streams[:len(d.streams)+1]
			} else {
				d.streams = append(d.streams, lokiJSONStream{})
			}
			return d.stream(&d.streams[len(d.streams)-1])
		})
	})
	if err != nil {
		return err
	}
	return d.s.end()
}

func (d *lokiJSON) stream(st *lokiJSONStream) error {
	if null, err := d.s.null(); null || err != nil {
		return err
	}
	return d.s.object(2, func(key string) error {
		switch {
		case strings.EqualFold(key, "stream"):
			if null, err := d.s.null(); null || err != nil {
				st.labels = nil
				return err
			}
			if st.labels == nil {
				st.labels = map[string]string{}
			}
			return d.strings(3, st.labels)
		case strings.EqualFold(key, "values"):
			st.entries, st.err = st.entries[:0], nil
			if null, err := d.s.null(); null || err != nil {
				return err
			}
			n := 0
			return d.s.array(3, func() error {
				e, bad, err := d.value()
				if err != nil {
					return err
				}
				if bad != nil && st.err == nil {
					st.err = fmt.Errorf("value %d: %v", n, bad)
				}
				st.entries = append(st.entries, e)
				n++
				return nil
			})
		default:
			return d.s.skip(3)
		}
	})
}

// strings reads an object of strings (null is "") into m.
func (d *lokiJSON) strings(depth int, m map[string]string) error {
	return d.s.object(depth, func(key string) error {
		if null, err := d.s.null(); null || err != nil {
			m[key] = ""
			return err
		}
		if d.s.peek() != '"' {
			return d.s.errorf("%q: want a string value", key)
		}
		v, err := d.s.str()
		if err != nil {
			return err
		}
		m[key] = v
		return nil
	})
}

// value reads one ["<ns>", "line", {metadata}]. err is a syntax error
// (the body is not JSON); bad is a value of the wrong shape (the body is
// not a Loki push, if these values are kept).
func (d *lokiJSON) value() (e lokiEntry, bad, err error) {
	const shape = `want ["<unix ns>", "<line>"] or with a third {metadata} element`
	if d.s.peek() != '[' {
		return e, fmt.Errorf("%s", shape), d.s.skip(4)
	}
	n := 0
	err = d.s.array(4, func() error {
		defer func() { n++ }()
		if bad != nil || n >= 3 {
			if bad == nil {
				bad = fmt.Errorf("%s, got more elements", shape)
			}
			return d.s.skip(5)
		}
		switch n {
		case 0:
			if d.s.peek() != '"' {
				bad = fmt.Errorf("timestamp: want a string of unix nanoseconds")
				return d.s.skip(5)
			}
			ts, err := d.s.str()
			if err != nil {
				return err
			}
			if e.ns, err = strconv.ParseInt(ts, 10, 64); err != nil {
				bad = fmt.Errorf("timestamp %q: want a string of unix nanoseconds", ts)
			}
		case 1:
			if null, err := d.s.null(); null || err != nil {
				return err
			}
			if d.s.peek() != '"' {
				bad = fmt.Errorf("line: want a string")
				return d.s.skip(5)
			}
			line, err := d.s.str()
			e.line = line
			return err
		case 2:
			if null, err := d.s.null(); null || err != nil {
				return err
			}
			if d.s.peek() != '{' {
				bad = fmt.Errorf("structured metadata: want an object of strings")
				return d.s.skip(5)
			}
			m := map[string]string{}
			if err := d.strings(5, m); err != nil {
				return err
			}
			for k, v := range m {
				e.meta = append(e.meta, label{k, v})
			}
		}
		return nil
	})
	if err == nil && bad == nil && n < 2 {
		bad = fmt.Errorf("%s", shape)
	}
	return e, bad, err
}
