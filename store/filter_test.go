package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

func TestRegexKeyPrefix(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"cf/job/", "cf/job/"},
		{"/user/job-[0-9]+/", "/user/job-"},
		{"/ab*c", "/a"},
		{"/ab+", "/ab"}, // + requires the b
		{"/ab+c", "/ab"},
		{"/ab?", "/a"},
		{"/ab{2}", "/a"},
		{"/é*", "/"},
		{"/a.b", "/a"},
		{`/a\.b`, "/a"},
		{"/a|/b", "/a"},
		{"^/user/", "/user/"}, // no leading literal; the anchor's prefix prunes
		{"(?i)/user", ""},
		{"", ""},
	} {
		if got := regexKeyPrefix(tc.src); got != tc.want {
			t.Errorf("regexKeyPrefix(%q) = %q, want %q", tc.src, got, tc.want)
		}
	}
}

func TestRegexBudgets(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want string // "" = accepted
	}{
		{`^/user/job-\d+/task-\d+:\d+$`, ""},
		{`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}`, ""},
		{"[a-z]{1,499}X", ""},
		{"[a-z]{1,500}X", "MaxRegexProgram"},
		{"[a-z]{1,1000}X", "MaxRegexProgram"},
		{strings.Repeat("ab", MaxRegexBytes/2+1), "MaxRegexBytes"},
		{"(", "not a valid regular expression"},
	} {
		_, err := compileRegex("regex", tc.src)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.src, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidArgument)):
			t.Errorf("%q: error %v, want invalid argument naming %s", tc.src, err, tc.want)
		}
	}
}

// BenchmarkRegexWorstAllowed is the costliest key regex the budget lets
// through ([a-z]{1,499}X, 1000 instructions, no leading literal) over 10k
// distinct keys in a segment: the bound on what one REGEX fetch costs.
func BenchmarkRegexWorstAllowed(b *testing.B) {
	s := mustOpen(b, memOpts(vfs.NewMemFS()))
	defer s.Close()
	rows := make([]Row, 10000)
	for i := range rows {
		rows[i] = Row{Key: fmt.Sprintf("/user/job-%d/task-%d/abcdefghijklmnopqrstuvwxyz", i/8, i%8), Data: "a log line"}
	}
	mustAppend(b, s, rows)
	if err := s.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, src := range []string{"[a-z]{1,499}X", "[a-z]{1,1000}X"} {
		b.Run(src, func(b *testing.B) {
			for b.Loop() {
				s.Fetch(context.Background(), Query{Source: src, Scope: ScopeRegex})
			}
		})
	}
}
