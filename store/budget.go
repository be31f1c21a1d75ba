package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrQueryBudget: a read looked at more rows than its budget
// (Query.MaxExamined) allows without filling its answer. Nothing is
// returned; the caller narrows the query (an exact source, a cursor,
// since_ms) or raises the budget. The server answers it resource_exhausted.
var ErrQueryBudget = errors.New("query budget exceeded")

// DefaultMaxExamined is the budget of a Query with MaxExamined 0: rows (and,
// for a regex, keys) a read may look at. Ten million is a full scan of a
// large store's recent segments; one regex query over a busy store used to
// cost minutes of CPU with no bound at all.
const DefaultMaxExamined = 10_000_000

// examineEvery: a scan loop checks its context and budget every this many
// rows, so a cancelled or over-budget read stops within about a
// millisecond of work.
const examineEvery = 1024

// budget counts the work of one read and stops it when its context is done
// or it has examined more than its limit.
type budget struct {
	ctx      context.Context
	limit    int64 // 0: no limit (Scan, Tail)
	examined int64
	err      error // why the read stopped; sticky
}

// step counts one row (or key) examined. It reports false once the read
// must stop; err says why.
func (b *budget) step() bool {
	b.examined++
	if b.examined%examineEvery != 0 {
		return b.err == nil
	}
	return b.check()
}

// check looks at the context and the limit now.
func (b *budget) check() bool {
	if b.err != nil {
		return false
	}
	if b.ctx != nil {
		if err := b.ctx.Err(); err != nil {
			b.err = err
			return false
		}
	}
	if b.limit > 0 && b.examined > b.limit {
		b.err = fmt.Errorf("store: query examined more than %d rows (the MaxExamined budget) without filling its answer; use an exact source, a cursor or since_ms, or raise the budget: %w",
			b.limit, ErrQueryBudget)
		return false
	}
	return true
}
