package store

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// Regex budgets. A regular expression is matched against every candidate
// key (REGEX scope) or row (the data filter), so its cost is multiplied by
// the data it meets: RE2 runs in time linear in the input but proportional
// to the compiled program, and a bounded repeat such as [a-z]{1,1000}
// compiles to thousands of instructions from a few bytes of pattern. The
// budgets refuse such a pattern up front, as invalid_argument naming the
// limit, instead of letting one query burn minutes of CPU.
const (
	// MaxRegexBytes caps the pattern's length.
	MaxRegexBytes = 1 << 10
	// MaxRegexProgram caps the compiled program's instruction count.
	// Patterns people write for keys and log lines ("^/user/job-[0-9]+/",
	// "timeout|refused") compile to tens of instructions.
	MaxRegexProgram = 1000
)

// compileRegex compiles an RE2 pattern within the regex budgets; what names
// the request field in errors ("source", "regex").
func compileRegex(what, src string) (*regexp.Regexp, error) {
	if len(src) > MaxRegexBytes {
		return nil, fmt.Errorf("%s: regular expression is %d bytes, the limit is %d (MaxRegexBytes): %w",
			what, len(src), MaxRegexBytes, ErrInvalidArgument)
	}
	parsed, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a valid regular expression: %v: %w", what, src, err, ErrInvalidArgument)
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a valid regular expression: %v: %w", what, src, err, ErrInvalidArgument)
	}
	if n := len(prog.Inst); n > MaxRegexProgram {
		return nil, fmt.Errorf("%s: regular expression compiles to %d instructions, the limit is %d (MaxRegexProgram); "+
			"large bounded repeats like {1,1000} are the usual cause: %w", what, n, MaxRegexProgram, ErrInvalidArgument)
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a valid regular expression: %v: %w", what, src, err, ErrInvalidArgument)
	}
	return re, nil
}

// regexKeyPrefix is the prefix a key must have to match a REGEX-scope
// source. As in the existing finelog server, the source's leading literal
// (its text before the first metacharacter) must be a prefix of the key,
// and the whole expression is then searched in the key unanchored: so
// "cf/job/" matches "cf/job/1" but not "/cf/job/1". A quantifier that allows
// zero repetitions (*, ?, {) right after the literal makes its last
// character optional, so that character is not part of it ("/ab*" requires
// "/a"); + requires the character and keeps it ("/ab+" requires "/ab"). A
// source that starts with a metacharacter (such as "^" or "(?i)") has no
// leading literal; "^/user/" still prunes by the prefix its anchor
// guarantees.
func regexKeyPrefix(src string) string {
	i := strings.IndexAny(src, `\.+*?()|[]{}^$`)
	if i < 0 {
		return src
	}
	lit := src[:i]
	if lit != "" && strings.ContainsRune("*?{", rune(src[i])) {
		_, size := utf8.DecodeLastRuneInString(lit)
		lit = lit[:len(lit)-size]
	}
	if lit == "" {
		return anchoredLiteralPrefix(src)
	}
	return lit
}

// dataFilter is the optional regex on a row's data (FetchLogsRequest.regex).
type dataFilter struct{ re *regexp.Regexp }

func compileDataFilter(src string) (dataFilter, error) {
	if src == "" {
		return dataFilter{}, nil
	}
	re, err := compileRegex("regex", src)
	if err != nil {
		return dataFilter{}, err
	}
	return dataFilter{re: re}, nil
}

func (f dataFilter) match(data []byte) bool { return f.re == nil || f.re.Match(data) }

func (f dataFilter) matchString(data string) bool { return f.re == nil || f.re.MatchString(data) }
