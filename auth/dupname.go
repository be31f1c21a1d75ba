package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// repeatsName reports whether the token's header or claims object names a
// member twice. encoding/json keeps the last, so {"exp":1,"exp":9e9} would
// be read as whatever a different parser's first-wins rule does not say.
//
// This runs on every first-seen token, so the common shape (an object of
// plain ASCII names) is walked in place without allocating; anything the
// walk does not handle exactly (escaped or non-ASCII names, odd syntax)
// and every duplicate it finds are decided by encoding/json's tokenizer,
// so the answer is always the tokenizer's.
func repeatsName(tok string) bool {
	head, rest, _ := strings.Cut(tok, ".")
	payload, _, _ := strings.Cut(rest, ".")
	var buf [maxTokenBytes]byte
	for _, seg := range []string{head, payload} {
		n, err := base64.RawURLEncoding.Strict().Decode(buf[:], []byte(seg))
		if err != nil {
			return false // the parser reports the encoding
		}
		b := buf[:n]
		switch plainNamesRepeat(b) {
		case walkDistinct:
		case walkRepeat, walkUnsure:
			// A copy, so the tokenizer's reader does not pull buf
			// onto the heap on the common path.
			if dupMember(bytes.Clone(b)) {
				return true
			}
		}
	}
	return false
}

type walkResult int

const (
	walkDistinct walkResult = iota // every top-level name differs
	walkRepeat                     // a top-level name appears twice
	walkUnsure                     // the walk met something it leaves to encoding/json
)

// smallObject is how many names are compared pairwise before a map is
// cheaper; real tokens carry fewer than ten.
const smallObject = 16

// plainNamesRepeat walks one JSON object's top-level member names without
// decoding it (plainMembers). It only claims walkDistinct when every name
// is plain ASCII without escapes and the object is shaped as JSON. On
// malformed input it may say anything but walkDistinct where the tokenizer
// would find a repeat, because the tokenizer sees the same names up to the
// first syntax error.
func plainNamesRepeat(b []byte) walkResult {
	// Names are kept as offsets into b, not slices of it, so b does not
	// escape and the caller's buffer stays on its stack.
	var names [smallObject]struct{ lo, hi int }
	count := 0
	var seen map[string]struct{}
	w := plainMembers{b: b}
	for {
		name, _, step := w.next()
		switch step {
		case memberEnd:
			return walkDistinct
		case memberUnsure:
			return walkUnsure
		}
		if seen == nil {
			for _, n := range names[:count] {
				if bytes.Equal(b[n.lo:n.hi], name) {
					return walkRepeat
				}
			}
			lo := cap(b) - cap(name) // name is a sub-slice of b
			names[count].lo, names[count].hi = lo, lo+len(name)
			count++
			if count == smallObject {
				seen = make(map[string]struct{}, 2*smallObject)
				for _, n := range names {
					seen[string(b[n.lo:n.hi])] = struct{}{}
				}
			}
		} else {
			if _, dup := seen[string(name)]; dup {
				return walkRepeat
			}
			seen[string(name)] = struct{}{}
		}
	}
}

// dupMember walks one JSON object's top-level member names with
// encoding/json's tokenizer.
func dupMember(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		name, _ := t.(string)
		if seen[name] {
			return true
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}
