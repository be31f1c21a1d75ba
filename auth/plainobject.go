package auth

// plainMembers walks one JSON object's top-level members in place, for
// the first-seen token paths that must not allocate: the repeated-name
// check, the claims decode and the pinned-header check. It handles only
// the common shape, member names of plain ASCII without escapes (so a
// name's bytes are its value), and says memberUnsure for anything else
// (an escaped or non-ASCII name, odd syntax, bytes after the object), so
// each caller can leave that input to encoding/json. Values are skipped by
// bracket depth and string quoting, which is exact for well-formed JSON;
// callers that need the value checked check it themselves.
type plainMembers struct {
	b       []byte
	i       int
	started bool
}

type memberStep int

const (
	memberNext   memberStep = iota // name and raw hold the next member
	memberEnd                      // the object closed; only whitespace followed it
	memberUnsure                   // the walk met something it leaves to encoding/json
)

// next returns the object's next member. After memberEnd or memberUnsure
// the walk is over.
func (w *plainMembers) next() (name, raw []byte, step memberStep) {
	b, i := w.b, w.i
	if !w.started {
		w.started = true
		i = skipSpace(b, 0)
		if i >= len(b) || b[i] != '{' {
			return nil, nil, memberUnsure
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return nil, nil, w.end(i)
		}
	} else {
		// Just past the previous member's value: a separator or the end.
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, nil, memberUnsure
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return nil, nil, w.end(i)
		default:
			return nil, nil, memberUnsure
		}
	}
	if i >= len(b) || b[i] != '"' {
		return nil, nil, memberUnsure
	}
	j := i + 1
	for j < len(b) && b[j] != '"' {
		if c := b[j]; c == '\\' || c < 0x20 || c >= 0x80 {
			return nil, nil, memberUnsure
		}
		j++
	}
	if j >= len(b) {
		return nil, nil, memberUnsure
	}
	name = b[i+1 : j]
	i = skipSpace(b, j+1)
	if i >= len(b) || b[i] != ':' {
		return nil, nil, memberUnsure
	}
	start := skipSpace(b, i+1)
	end, ok := skipValue(b, start)
	if !ok {
		return nil, nil, memberUnsure
	}
	w.i = end
	return name, b[start:end], memberNext
}

// end is the step for the object's closing brace at i.
func (w *plainMembers) end(i int) memberStep {
	if skipSpace(w.b, i+1) != len(w.b) {
		return memberUnsure
	}
	return memberEnd
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
