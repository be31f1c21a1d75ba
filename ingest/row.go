// Package ingest decodes the protocols log shippers already speak, Loki's
// push API and OTLP logs, into finelog rows with their attributes. It does
// no I/O: the server reads bodies, checks identities and appends; this
// package turns bytes into rows and says which parts it refused and why.
package ingest

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/finelog/finelog/store"
)

// Attribute limits, the store's. A row over one is refused with an error
// wrapping ErrRefused that names the limit; attributes count in
// store.MaxRowBytes.
const (
	MaxAttributes          = store.MaxAttributes
	MaxAttributeNameBytes  = store.MaxAttributeNameBytes
	MaxAttributeValueBytes = store.MaxAttributeValueBytes
)

// Source values of ingested rows: which protocol a row arrived by.
const (
	SourceLoki = "loki"
	SourceOTLP = "otlp"
)

var (
	// ErrMalformed: the body cannot be decoded at all; nothing of it may be
	// stored. Retrying the same bytes cannot succeed.
	ErrMalformed = errors.New("malformed request body")
	// ErrRefused: one stream or record breaks a limit or a rule; the rest
	// of the request is still good. Retrying it cannot succeed.
	ErrRefused = errors.New("refused")
)

// Row is one decoded log line: the store row (Key, Source, Data, EpochMS,
// Level, Cluster when the sender asked for one, and Row.Attributes, the
// encoding of Attributes) and its attributes as a map.
type Row struct {
	store.Row
	Attributes map[string]string
}

// Rejection is a part of a request that was refused: entries of a Loki
// stream, or records of one OTLP resource (Stream is then its key). Err
// wraps ErrRefused.
type Rejection struct {
	Stream  string
	Records int
	Err     error
	otlp    bool
}

// Batch is what one request decodes to: the rows to store, in request
// order, and the parts refused.
type Batch struct {
	Rows     []Row
	Rejected []Rejection
}

// RejectedRecords is the number of log lines refused.
func (b *Batch) RejectedRecords() int {
	n := 0
	for _, r := range b.Rejected {
		n += r.Records
	}
	return n
}

// maxStreamInMessage bounds how much of a stream name an error message
// repeats: a name can be a 1 KiB selector.
const maxStreamInMessage = 200

// RejectionMessage says which parts were refused and why, one per line
// (at most the first 10, then a count), for the sender's operator.
func (b *Batch) RejectionMessage() string {
	var sb strings.Builder
	for i, r := range b.Rejected {
		if i == 10 {
			fmt.Fprintf(&sb, "... and %d more\n", len(b.Rejected)-i)
			break
		}
		name := r.Stream
		if len(name) > maxStreamInMessage {
			name = truncateUTF8(name, maxStreamInMessage) + "..."
		}
		if r.otlp {
			fmt.Fprintf(&sb, "key %s: %d records refused: %v\n", name, r.Records, r.Err)
		} else {
			fmt.Fprintf(&sb, "stream %s: %d entries refused: %v\n", name, r.Records, r.Err)
		}
	}
	return strings.TrimSuffix(sb.String(), "\n")
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// rowOverhead is what the store counts for a row beyond its strings
// (store's rowBytes); attributes add their names and values on top.
const rowOverhead = 48

// attrCheck is the attribute part of checkRow for one attributes map:
// rows of a stream share their map, so it is checked once, not per row.
type attrCheck struct {
	err error
	enc store.Attributes
}

func checkAttrs(attrs map[string]string) attrCheck {
	if err := checkAttributes(attrs); err != nil {
		return attrCheck{err: err}
	}
	enc, err := store.MakeAttributes(attrs)
	if err != nil { // checkAttributes applies the same limits first
		return attrCheck{err: fmt.Errorf("%v: %w", err, ErrRefused)}
	}
	return attrCheck{enc: enc}
}

// checkRow applies the attribute limits (a is the check of r.Attributes)
// and the store's key and row-size limits, so a refused row is refused
// here with its stream named rather than failing the whole append. It sets
// the store row's encoded attributes.
func checkRow(r *Row, a attrCheck) error {
	if a.err != nil {
		return a.err
	}
	r.Row.Attributes = a.enc
	switch {
	case r.Key == "":
		return fmt.Errorf("key is empty: %w", ErrRefused)
	case len(r.Key) > store.MaxKeyBytes:
		return fmt.Errorf("key is %d bytes, limit is %d: %w", len(r.Key), store.MaxKeyBytes, ErrRefused)
	}
	n := rowOverhead + len(r.Key) + len(r.Source) + len(r.Data) + len(r.Cluster) + len(a.enc)
	if n > store.MaxRowBytes {
		return fmt.Errorf("row is %d bytes with its attributes, limit is %d: %w", n, store.MaxRowBytes, ErrRefused)
	}
	return nil
}

// checkAttributes reports the first broken limit, in name order so the
// message is the same for the same input.
func checkAttributes(attrs map[string]string) error {
	if len(attrs) > MaxAttributes {
		return fmt.Errorf("%d attributes, limit is %d: %w", len(attrs), MaxAttributes, ErrRefused)
	}
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := attrs[k]
		switch {
		case k == "":
			return fmt.Errorf("an attribute has an empty name: %w", ErrRefused)
		case len(k) > MaxAttributeNameBytes:
			return fmt.Errorf("attribute name %q... is %d bytes, limit is %d: %w",
				truncateUTF8(k, 40), len(k), MaxAttributeNameBytes, ErrRefused)
		case len(v) > MaxAttributeValueBytes:
			return fmt.Errorf("attribute %q value is %d bytes, limit is %d: %w",
				k, len(v), MaxAttributeValueBytes, ErrRefused)
		}
	}
	return nil
}
