package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// cancelAfter is a context that reports itself cancelled from its n-th Err
// call on: a cancellation that arrives in the middle of a read, at a point
// that does not depend on timing.
type cancelAfter struct {
	context.Context
	n atomic.Int64
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// manyKeys fills s with rows over 10,000 distinct keys (the regex-attack
// shape), in the memtable or, with flush, in segments.
func manyKeys(t *testing.T, s *Store, flush bool) int {
	const keys, perKey = 10000, 8
	for b := 0; b < perKey; b++ {
		rows := make([]Row, 0, keys)
		for k := 0; k < keys; k++ {
			rows = append(rows, Row{Key: fmt.Sprintf("/user/job-%05d/task", k), Data: "line"})
		}
		mustAppend(t, s, rows)
	}
	if flush {
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return keys * perKey
}

// A regex read that a client gave up on stops within examineEvery rows of
// the cancellation, in the memtable and in segments, for Fetch and Scan.
func TestCancelledReadStopsPromptly(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("segments=%v", flush), func(t *testing.T) {
			s := mustOpen(t, memOpts(vfs.NewMemFS()))
			defer s.Close()
			total := manyKeys(t, s, flush)
			q := Query{Source: "[a-z]{1,400}X", Scope: ScopeRegex, MaxLines: 10}
			ctx := &cancelAfter{Context: context.Background()}
			ctx.n.Store(3) // the first checks pass; cancelled from the fourth
			res, err := s.Fetch(ctx, q)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Fetch with a cancelled context = %v, want context.Canceled", err)
			}
			if res.Examined > 4*examineEvery || res.Examined >= int64(total)/4 {
				t.Fatalf("cancelled read examined %d of %d rows, want at most %d", res.Examined, total, 4*examineEvery)
			}
			// The same query uncancelled looks at everything and finds nothing.
			res, err = s.Fetch(context.Background(), q)
			if err != nil || len(res.Rows) != 0 || res.Examined < int64(total)/8 {
				t.Fatalf("uncancelled: %d rows, examined %d, %v", len(res.Rows), res.Examined, err)
			}
			// Already cancelled: nothing is examined.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			if res, err := s.Fetch(done, q); !errors.Is(err, context.Canceled) || res.Examined != 0 {
				t.Fatalf("pre-cancelled Fetch: examined %d, %v", res.Examined, err)
			}
			if _, err := s.Scan(done, 0, MaxMaxLines, 0); !errors.Is(err, context.Canceled) {
				t.Fatalf("pre-cancelled Scan: %v", err)
			}
			sctx := &cancelAfter{Context: context.Background()}
			sctx.n.Store(2)
			if _, err := s.Scan(sctx, 0, total, 0); !errors.Is(err, context.Canceled) {
				t.Fatalf("Scan cancelled midway: %v", err)
			}
		})
	}
}

// A query that examines more rows than its budget fails with
// ErrQueryBudget naming the budget, having looked at about that many.
func TestQueryBudget(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("segments=%v", flush), func(t *testing.T) {
			s := mustOpen(t, memOpts(vfs.NewMemFS()))
			defer s.Close()
			manyKeys(t, s, flush)
			for _, q := range []Query{
				{Source: "[a-z]{1,400}X", Scope: ScopeRegex, MaxExamined: 5000},
				{Source: "/user/", Scope: ScopePrefix, Substring: "not there", MaxExamined: 5000},
			} {
				res, err := s.Fetch(context.Background(), q)
				if !errors.Is(err, ErrQueryBudget) || !strings.Contains(err.Error(), "5000") || !strings.Contains(err.Error(), "MaxExamined") {
					t.Fatalf("%+v: %v, want ErrQueryBudget naming the 5000-row MaxExamined budget", q, err)
				}
				if res.Examined > 5000+examineEvery {
					t.Fatalf("%+v: examined %d rows with a budget of 5000", q, res.Examined)
				}
			}
			// A read that fills its answer within budget is fine.
			res, err := s.Fetch(context.Background(), Query{Source: "/user/job-00001/task", Scope: ScopeExact, MaxLines: 5, MaxExamined: 5000})
			if err != nil || len(res.Rows) != 5 {
				t.Fatalf("in-budget read: %d rows, %v", len(res.Rows), err)
			}
			if _, err := s.Fetch(context.Background(), Query{Source: "/x", Scope: ScopePrefix, MaxExamined: -1}); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("negative budget: %v", err)
			}
		})
	}
}

// A regex whose program is too large to try on every key is refused up
// front, naming the limit.
func TestRegexProgramBudget(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	_, err := s.Fetch(context.Background(), Query{Source: "[a-z]{1,1000}X", Scope: ScopeRegex})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "MaxRegexProgram") || !strings.Contains(err.Error(), "2002") {
		t.Fatalf("huge regex: %v, want an invalid argument naming MaxRegexProgram and the program size", err)
	}
	if _, err := s.Fetch(context.Background(), Query{Source: "^/user/job-[0-9]+/task-.*$", Scope: ScopeRegex}); err != nil {
		t.Fatalf("ordinary regex: %v", err)
	}
}
