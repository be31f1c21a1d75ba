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
// decoding it. It only claims walkDistinct when every name is plain ASCII
// without escapes (so its bytes are its value) and the object is shaped
// as JSON; values are skipped by bracket depth and string quoting, which
// is exact for well-formed JSON. On malformed input it may say anything
// but walkDistinct where the tokenizer would find a repeat, because the
// tokenizer sees the same names up to the first syntax error.
func plainNamesRepeat(b []byte) walkResult {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return walkUnsure
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return walkDistinct
	}
	// Names are kept as offsets into b, not slices of it, so b does not
	// escape and the caller's buffer stays on its stack.
	var names [smallObject]struct{ lo, hi int }
	count := 0
	var seen map[string]struct{}
	for {
		if i >= len(b) || b[i] != '"' {
			return walkUnsure
		}
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if c := b[j]; c == '\\' || c < 0x20 || c >= 0x80 {
				return walkUnsure
			}
			j++
		}
		if j >= len(b) {
			return walkUnsure
		}
		name := b[i+1 : j]
		if seen == nil {
			for _, n := range names[:count] {
				if bytes.Equal(b[n.lo:n.hi], name) {
					return walkRepeat
				}
			}
			names[count].lo, names[count].hi = i+1, j
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
		i = skipSpace(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return walkUnsure
		}
		var ok bool
		if i, ok = skipValue(b, skipSpace(b, i+1)); !ok {
			return walkUnsure
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return walkUnsure
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			if skipSpace(b, i+1) != len(b) {
				return walkUnsure
			}
			return walkDistinct
		default:
			return walkUnsure
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the value starting at i: a
// string, a bracketed value (by depth, honouring strings inside it) or a
// scalar (up to the next delimiter).
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				var ok bool
				if i, ok = skipString(b, i); !ok {
					return i, false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return i, false
	}
	start := i
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i, i > start
		}
		i++
	}
	return i, false
}

// skipString returns the index just past the string whose opening quote
// is at i.
func skipString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return i, false
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
