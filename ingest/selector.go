package ingest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// label is one name="value" pair of a Loki stream.
type label struct{ name, value string }

// parseSelector parses a stream's label set as Loki clients write it in a
// push: {name="value", other="x"}, values quoted as Go strings (double
// quotes or backticks). It returns the pairs sorted by name and refuses
// duplicate or empty names.
func parseSelector(s string) ([]label, error) {
	p := strings.TrimSpace(s)
	if !strings.HasPrefix(p, "{") || !strings.HasSuffix(p, "}") {
		return nil, fmt.Errorf("labels %q: want {name=\"value\", ...}", s)
	}
	p = strings.TrimSpace(p[1 : len(p)-1])
	var out []label
	for p != "" {
		eq := strings.IndexByte(p, '=')
		if eq < 0 {
			return nil, fmt.Errorf("labels %q: %q has no =", s, p)
		}
		name := strings.TrimSpace(p[:eq])
		if !validLabelName(name) {
			return nil, fmt.Errorf("labels %q: %q is not a label name", s, name)
		}
		p = strings.TrimSpace(p[eq+1:])
		n := quotedLen(p)
		if n < 0 {
			return nil, fmt.Errorf("labels %q: the value of %s is not a quoted string", s, name)
		}
		value, err := strconv.Unquote(p[:n])
		if err != nil {
			return nil, fmt.Errorf("labels %q: the value of %s: %v", s, name, err)
		}
		out = append(out, label{name, value})
		p = strings.TrimSpace(p[n:])
		if p == "" {
			break
		}
		if p[0] != ',' {
			return nil, fmt.Errorf("labels %q: want , or } after the value of %s", s, name)
		}
		p = strings.TrimSpace(p[1:])
	}
	return sortLabels(out)
}

// quotedLen is the length of the quoted string p starts with, or -1.
func quotedLen(p string) int {
	if p == "" {
		return -1
	}
	switch q := p[0]; q {
	case '`':
		if i := strings.IndexByte(p[1:], '`'); i >= 0 {
			return i + 2
		}
	case '"':
		for i := 1; i < len(p); i++ {
			switch p[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
	}
	return -1
}

// validLabelName is Prometheus's rule: [a-zA-Z_][a-zA-Z0-9_]*.
func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

func sortLabels(ls []label) ([]label, error) {
	sort.Slice(ls, func(i, j int) bool { return ls[i].name < ls[j].name })
	for i := 1; i < len(ls); i++ {
		if ls[i].name == ls[i-1].name {
			return nil, fmt.Errorf("label %s appears twice", ls[i].name)
		}
	}
	return ls, nil
}

// canonicalSelector writes sorted labels as {a="x",b="y"}: one spelling
// per label set, so a PREFIX read of `{app="api"` finds the stream
// whatever order or spacing the shipper used.
func canonicalSelector(ls []label) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(l.name)
		sb.WriteByte('=')
		sb.WriteString(strconv.Quote(l.value))
	}
	sb.WriteByte('}')
	return sb.String()
}
