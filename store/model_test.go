package store

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/vfs"
)

// model is the reference: every row in a slice, every query a linear scan.
type model struct{ rows []Row }

func (m *model) fetch(q Query) (Result, error) {
	scope := q.Scope
	if scope == ScopeUnspecified {
		scope = ScopeRegex
	}
	var re, dataRe *regexp.Regexp
	if q.Regex != "" {
		var err error
		if dataRe, err = regexp.Compile(q.Regex); err != nil {
			return Result{}, ErrInvalidArgument
		}
	}
	lit := ""
	switch scope {
	case ScopePrefix:
		if q.Source == "" {
			return Result{}, ErrInvalidArgument
		}
	case ScopeRegex:
		var err error
		if re, err = regexp.Compile(q.Source); err != nil {
			return Result{}, ErrInvalidArgument
		}
		// The existing server's rule: the text before the first
		// metacharacter must start the key (less the character a
		// zero-allowing quantifier right after it makes optional).
		for i, c := range q.Source {
			if strings.ContainsRune(`\.+*?()|[]{}^$`, c) {
				if strings.ContainsRune("*?{", c) && i > 0 {
					lit = lit[:len(lit)-1]
				}
				break
			}
			lit += string(c)
		}
	}
	limit := q.MaxLines
	if limit <= 0 {
		limit = 1000
	}
	if limit > MaxMaxLines {
		limit = MaxMaxLines
	}
	minLevel := map[string]int32{"debug": 1, "info": 2, "warning": 3, "error": 4, "critical": 5}[strings.ToLower(q.MinLevel)]
	var hits []Row
	for _, r := range m.rows {
		ok := r.Seq > q.Cursor && (q.UntilCursor <= 0 || r.Seq <= q.UntilCursor)
		if dataRe != nil && !dataRe.MatchString(r.Data) {
			ok = false
		}
		switch scope {
		case ScopeExact:
			ok = ok && r.Key == q.Source
		case ScopePrefix:
			ok = ok && strings.HasPrefix(r.Key, q.Source)
		default:
			ok = ok && strings.HasPrefix(r.Key, lit) && re.MatchString(r.Key)
		}
		if q.SinceMS > 0 && r.EpochMS <= q.SinceMS {
			ok = false
		}
		if q.Substring != "" && !strings.Contains(r.Data, q.Substring) {
			ok = false
		}
		if minLevel != 0 && r.Level != 0 && r.Level < minLevel {
			ok = false
		}
		if q.Cluster != "" && r.Cluster != q.Cluster {
			ok = false
		}
		if ok {
			hits = append(hits, r)
		}
	}
	if len(hits) > limit {
		if q.Tail {
			hits = hits[len(hits)-limit:]
		} else {
			hits = hits[:limit]
		}
	}
	res := Result{Rows: hits, Cursor: q.Cursor, MaxLines: limit}
	if len(hits) > 0 {
		res.Cursor = hits[len(hits)-1].Seq
	}
	return res, nil
}

var (
	modelKeys    = []string{"/user/job-1/task-0", "/user/job-1/task-1:2", "/user/job-10/task-0", "/user/job.2/x", "/other/a+b", "/user/job-1/task-0:x"}
	modelData    = []string{"alpha beta", "gamma ERROR delta", "req_id=abc123 done", "ümlaut ok", "", "alpha"}
	modelSources = []string{"", "/user/job-1/task-0", "/user/job-1", "/user/", "/other/a+b", "job-1", "^/user/job-1", "task-[01]", "^/other/a\\+b", "(", ".", "x$", "/nope", "user/", "/user/job-1+", "/user/job-1[0-9]"}
	modelSubs    = []string{"", "alpha", "ERROR", "abc1", "ümla", "zzz", "a"}
	modelLevels  = []string{"", "debug", "INFO", "Warning", "error", "CRITICAL", "bogus"}
	modelRegexes = []string{"", "", "alpha", "^alpha$", "ERROR|done", "[0-9]+", "(?i)error", "("}
)

func genRow(t *rapid.T) Row {
	return Row{
		Key:       rapid.SampledFrom(modelKeys).Draw(t, "key"),
		Source:    rapid.SampledFrom([]string{"stdout", "stderr"}).Draw(t, "source"),
		Data:      rapid.SampledFrom(modelData).Draw(t, "data"),
		EpochMS:   rapid.Int64Range(1000, 1003).Draw(t, "epoch"),
		AttemptID: rapid.Int32Range(0, 2).Draw(t, "attempt"),
		Level:     rapid.Int32Range(-1, 7).Draw(t, "level"),
		Cluster:   rapid.SampledFrom([]string{"", "east", "west"}).Draw(t, "cluster"),
	}
}

func genQuery(t *rapid.T, last int64) Query {
	return Query{
		Source:      rapid.SampledFrom(modelSources).Draw(t, "source"),
		Scope:       Scope(rapid.IntRange(0, 3).Draw(t, "scope")),
		SinceMS:     rapid.SampledFrom([]int64{0, 999, 1000, 1001, 1002, 1003}).Draw(t, "since"),
		Cursor:      rapid.Int64Range(0, last+1).Draw(t, "cursor"),
		UntilCursor: rapid.SampledFrom([]int64{0, 0, -1, 1, last / 2, last - 1, last + 3}).Draw(t, "until"),
		Regex:       rapid.SampledFrom(modelRegexes).Draw(t, "regex"),
		Substring:   rapid.SampledFrom(modelSubs).Draw(t, "substring"),
		MaxLines:    rapid.SampledFrom([]int{-1, 0, 1, 2, 3, 7, 50}).Draw(t, "maxlines"),
		Tail:        rapid.Bool().Draw(t, "tail"),
		MinLevel:    rapid.SampledFrom(modelLevels).Draw(t, "minlevel"),
		Cluster:     rapid.SampledFrom([]string{"", "", "east", "west", "north"}).Draw(t, "cluster"),
	}
}

// TestFetchMatchesModel: across random appends, flushes, compactions and
// reopens, every Fetch and Scan answers exactly like the reference model.
func TestFetchMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		fs := vfs.NewMemFS()
		opts := memOpts(fs)
		opts.TargetSegmentBytes = 1 << 20
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close() }()
		m := &model{}
		ctx := context.Background()
		t.Repeat(map[string]func(*rapid.T){
			"append": func(t *rapid.T) {
				rows := rapid.SliceOfN(rapid.Custom(genRow), 1, 6).Draw(t, "rows")
				ack, err := s.Append(ctx, Batch{Rows: rows})
				if err != nil {
					t.Fatal(err)
				}
				for i := range rows {
					rows[i].Seq = ack.First + int64(i)
				}
				m.rows = append(m.rows, rows...)
				if ack.Last != int64(len(m.rows)) {
					t.Fatalf("ack %+v after %d rows", ack, len(m.rows))
				}
			},
			"flush": func(t *rapid.T) {
				if err := s.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			},
			"compact": func(t *rapid.T) {
				if err := s.Compact(ctx); err != nil {
					t.Fatal(err)
				}
			},
			"reopen": func(t *rapid.T) {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if s, err = Open(opts); err != nil {
					t.Fatal(err)
				}
			},
			"fetch": func(t *rapid.T) {
				q := genQuery(t, int64(len(m.rows)))
				want, werr := m.fetch(q)
				got, gerr := s.Fetch(ctx, q)
				if (werr != nil) != (gerr != nil) {
					t.Fatalf("query %+v: error %v, model says %v", q, gerr, werr)
				}
				if werr != nil {
					if !errors.Is(gerr, ErrInvalidArgument) {
						t.Fatalf("query %+v: error %v does not wrap ErrInvalidArgument", q, gerr)
					}
					return
				}
				got.Examined = 0 // how much work the read did is not part of the answer
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("query %+v (-model +store):\n%s", q, diff)
				}
			},
			"scan": func(t *rapid.T) {
				after := rapid.Int64Range(0, int64(len(m.rows))).Draw(t, "after")
				n := rapid.IntRange(1, 20).Draw(t, "n")
				got, err := s.Scan(ctx, after, n, 0)
				if err != nil {
					t.Fatal(err)
				}
				want := m.rows[after:min(int(after)+n, len(m.rows))]
				if diff := cmp.Diff(want, got, cmpEmpty); diff != "" {
					t.Fatalf("Scan(%d, %d) (-model +store):\n%s", after, n, diff)
				}
			},
		})
	})
}

var cmpEmpty = cmp.Transformer("nilRows", func(r []Row) []Row {
	if len(r) == 0 {
		return nil
	}
	return r
})
