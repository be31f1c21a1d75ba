package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strings"
	"unicode/utf8"
)

// Attribute limits: a row over one is refused with an error wrapping
// ErrInvalidArgument that names the limit. The encoded attributes count in
// MaxRowBytes.
const (
	MaxAttributes          = 64
	MaxAttributeNameBytes  = 256
	MaxAttributeValueBytes = 4 << 10
)

// Attributes are a row's labels (Loki labels and structured metadata, OTLP
// attributes, trace and span ids) in one canonical byte string: pairs
// sorted by name, names unique and non-empty, each pair encoded as
// uvarint len(name), name, uvarint len(value), value. "" is no attributes.
//
// A string rather than a map keeps rows comparable and lets the memtable
// store a row's attributes next to its data, pointer-free, and the WAL copy
// them as bytes; equal label sets encode to equal strings, so a run of rows
// of one Loki stream repeats one value.
type Attributes string

// Attribute is one name/value pair.
type Attribute struct{ Name, Value string }

// MakeAttributes encodes m, checking the attribute limits.
func MakeAttributes(m map[string]string) (Attributes, error) {
	if len(m) == 0 {
		return "", nil
	}
	pairs := make([]Attribute, 0, len(m))
	for k, v := range m {
		pairs = append(pairs, Attribute{k, v})
	}
	return AttributesOf(pairs...)
}

// AttributesOf encodes pairs (in any order), checking the attribute limits;
// a name given twice is an error.
func AttributesOf(pairs ...Attribute) (Attributes, error) {
	if len(pairs) == 0 {
		return "", nil
	}
	if len(pairs) > MaxAttributes {
		return "", fmt.Errorf("%d attributes, limit is %d: %w", len(pairs), MaxAttributes, ErrInvalidArgument)
	}
	sorted := append([]Attribute(nil), pairs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	n := 0
	for i, p := range sorted {
		if err := checkAttribute(p.Name, p.Value); err != nil {
			return "", err
		}
		if i > 0 && sorted[i-1].Name == p.Name {
			return "", fmt.Errorf("attribute %q is given twice: %w", truncateName(p.Name), ErrInvalidArgument)
		}
		n += len(p.Name) + len(p.Value) + 2*binary.MaxVarintLen16
	}
	b := make([]byte, 0, n)
	for _, p := range sorted {
		b = binary.AppendUvarint(b, uint64(len(p.Name)))
		b = append(b, p.Name...)
		b = binary.AppendUvarint(b, uint64(len(p.Value)))
		b = append(b, p.Value...)
	}
	return Attributes(b), nil
}

func checkAttribute(name, value string) error {
	switch {
	case name == "":
		return fmt.Errorf("an attribute has an empty name: %w", ErrInvalidArgument)
	case len(name) > MaxAttributeNameBytes:
		return fmt.Errorf("attribute name %q... is %d bytes, limit is %d: %w",
			truncateName(name), len(name), MaxAttributeNameBytes, ErrInvalidArgument)
	case len(value) > MaxAttributeValueBytes:
		return fmt.Errorf("attribute %q value is %d bytes, limit is %d: %w",
			truncateName(name), len(value), MaxAttributeValueBytes, ErrInvalidArgument)
	}
	return nil
}

func truncateName(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

var errBadAttributes = errors.New("malformed attribute encoding")

// next splits the first pair off a well-formed encoding.
func (a Attributes) next() (name, value string, rest Attributes, err error) {
	s := string(a)
	name, s, err = cutString(s)
	if err != nil {
		return "", "", "", err
	}
	value, s, err = cutString(s)
	if err != nil {
		return "", "", "", err
	}
	return name, value, Attributes(s), nil
}

func cutString(s string) (string, string, error) {
	n, k := uvarintString(s)
	if k <= 0 || n > uint64(len(s)-k) {
		return "", "", errBadAttributes
	}
	return s[k : k+int(n)], s[k+int(n):], nil
}

// uvarintString is binary.Uvarint on a string, without converting it.
func uvarintString(s string) (uint64, int) {
	var x uint64
	var sh uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -1
			}
			return x | uint64(c)<<sh, i + 1
		}
		x |= uint64(c&0x7f) << sh
		sh += 7
	}
	return 0, 0
}

// All yields the pairs in name order. A malformed encoding (only possible
// for a value not built by this package and not checked by Append) yields
// the pairs before the damage.
func (a Attributes) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for a != "" {
			k, v, rest, err := a.next()
			if err != nil || !yield(k, v) {
				return
			}
			a = rest
		}
	}
}

// Map returns the pairs as a map (nil when there are none).
func (a Attributes) Map() map[string]string {
	if a == "" {
		return nil
	}
	m := map[string]string{}
	for k, v := range a.All() {
		m[k] = v
	}
	return m
}

// Get returns the value of name.
func (a Attributes) Get(name string) (string, bool) {
	for k, v := range a.All() {
		if k == name {
			return v, true
		}
		if k > name {
			break
		}
	}
	return "", false
}

// Len is the number of pairs.
func (a Attributes) Len() int {
	n := 0
	for range a.All() {
		n++
	}
	return n
}

// String shows the pairs as name=value separated by spaces, for logs and
// the CLI's text output.
func (a Attributes) String() string {
	var b strings.Builder
	for k, v := range a.All() {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	return b.String()
}

// Check reports whether a is a canonical encoding within the limits: what
// Append requires of every row.
func (a Attributes) Check() error {
	n := 0
	prev := ""
	for s := a; s != ""; n++ {
		k, v, rest, err := s.next()
		if err != nil {
			return fmt.Errorf("attributes: %w: %w", errBadAttributes, ErrInvalidArgument)
		}
		if n == MaxAttributes {
			return fmt.Errorf("more than %d attributes, limit is %d: %w", n, MaxAttributes, ErrInvalidArgument)
		}
		if err := checkAttribute(k, v); err != nil {
			return err
		}
		if n > 0 && k <= prev {
			return fmt.Errorf("attributes: %q after %q is out of order or repeated (build them with MakeAttributes): %w",
				truncateName(k), truncateName(prev), ErrInvalidArgument)
		}
		prev, s = k, rest
	}
	return nil
}

// contains reports whether every pair of want (canonical) is in a
// (canonical): one merge pass over both sorted lists.
func (a Attributes) contains(want Attributes) bool {
	for want != "" {
		wk, wv, wrest, err := want.next()
		if err != nil {
			return false
		}
		for {
			if a == "" {
				return false
			}
			k, v, rest, err := a.next()
			if err != nil || k > wk {
				return false
			}
			a = rest
			if k == wk {
				if v != wv {
					return false
				}
				break
			}
		}
		want = wrest
	}
	return true
}
