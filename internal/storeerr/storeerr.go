// Package storeerr is the one mapping from store errors to the Connect
// codes finelogd answers with. The server uses it for every RPC, and the
// in-process targets (relay.StoreSink, the simulation) use it so the relay
// sees exactly what a remote finelogd would send.
package storeerr

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
	"github.com/finelog/finelog/wire"
)

// budgetError is a store error that says a read ran out of one of its
// budgets (rows examined, time, regex program size); Budget names it.
type budgetError interface {
	error
	Budget() string
}

// ToConnect returns the Connect error for a store error from operation op
// ("push", "fetch"). Unknown errors are internal; they are the only ones a
// caller should log (Internal reports whether an error is one).
func ToConnect(op string, err error) *connect.Error {
	var be budgetError
	switch {
	case errors.Is(err, store.ErrInvalidArgument):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, store.ErrProducerGap):
		return connect.NewError(connect.CodeAborted, err)
	case errors.Is(err, store.ErrNoSpace):
		ce := connect.NewError(connect.CodeResourceExhausted,
			errors.New("finelogd's disk is full: nothing was written; retry once space is freed"))
		// Transient, unlike an oversize request: clients retry it.
		ce.Meta().Set(wire.RetryHeader, "disk-full")
		return ce
	case errors.Is(err, store.ErrQueryBudget):
		// Not retryable (no retry header): the same query would examine
		// the same rows again. The message names the budget.
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.As(err, &be):
		// Not retryable: the same query would exceed the same budget.
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("query exceeded the %s budget; narrow it (a longer literal prefix, a cluster, since_ms or cursor): %w", be.Budget(), err))
	case errors.Is(err, store.ErrClosed):
		return connect.NewError(connect.CodeUnavailable, errors.New("finelogd is shutting down"))
	case errors.Is(err, objstore.ErrUnavailable):
		// A remote-only segment could not be read; the message names the
		// bucket. Retryable: the bucket may be back on the next try.
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s: %w", op, err))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	default:
		return connect.NewError(connect.CodeInternal, fmt.Errorf("%s: %w", op, err))
	}
}
