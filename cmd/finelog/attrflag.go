package main

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/finelog/finelog/store"
)

// attrFlag is a repeatable --attr NAME=VALUE.
type attrFlag struct {
	m map[string]string
}

func (a *attrFlag) String() string {
	if a == nil || len(a.m) == 0 {
		return ""
	}
	return formatAttrs(a.m)
}

func (a *attrFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	if _, dup := a.m[name]; dup {
		return fmt.Errorf("attribute %q is given twice", name)
	}
	next := map[string]string{name: value}
	for k, v := range a.m {
		next[k] = v
	}
	// The store's limits, checked here so the error names the flag.
	if _, err := store.MakeAttributes(next); err != nil {
		return errors.New(strings.TrimSuffix(err.Error(), ": "+store.ErrInvalidArgument.Error()))
	}
	a.m = next
	return nil
}

// get is the flag's map (nil when none were given).
func (a *attrFlag) get() map[string]string { return a.m }

// formatAttrs writes attributes sorted by name as NAME=VALUE separated by
// spaces; a value that is empty or holds a space, quote, '=' or a control
// character is quoted so the line still splits unambiguously.
func formatAttrs(m map[string]string) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteAttr(k))
		b.WriteByte('=')
		b.WriteString(quoteAttr(m[k]))
	}
	return b.String()
}

func quoteAttr(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\"=") || strconv.Quote(s) != `"`+s+`"` {
		return strconv.Quote(s)
	}
	return s
}
