// Package relay forwards every new row of a cluster's store to the global
// finelogd, durably and without duplicates.
//
// CONTRACT (fixed by the lead so sim/ and server/ can be built in parallel;
// the implementation may add to it but must not change these):
//
//	type Source interface { ... }  // below
//	type Sink interface { ... }    // below
//	func New(cfg Config) (*Forwarder, error)
//	func (f *Forwarder) Enable(ctx context.Context) error // fix the start point durably (Step calls it too)
//	func (f *Forwarder) Step(ctx context.Context) (next time.Duration, err error)
//	func (f *Forwarder) Run(ctx context.Context) error
//
// Sink errors are classified by their connect code (connect.CodeOf):
// Unavailable/DeadlineExceeded/Unknown/Internal/ResourceExhausted/Aborted →
// retry with backoff; Unauthenticated/PermissionDenied → retry slowly, loudly;
// InvalidArgument → split the batch and dead-letter the offending rows.
package relay

import (
	"context"

	"github.com/finelog/finelog/store"
)

// Source is the store the relay tails.
type Source interface {
	// Read returns up to maxRows rows (and roughly at most maxBytes) with
	// seq > after, in seq order.
	Read(ctx context.Context, after int64, maxRows, maxBytes int) ([]store.Row, error)
	// LastSeq is the source's newest seq (its current cursor).
	LastSeq(ctx context.Context) (int64, error)
}

// Sink is the target the relay pushes to.
type Sink interface {
	// Push sends one batch; a nil error means the target durably applied it.
	Push(ctx context.Context, b Batch) (store.Ack, error)
	// ProducerState asks the target what it has applied from producer.
	ProducerState(ctx context.Context, producer string) (ProducerState, error)
}

// ProducerState is what a target knows of one producer.
type ProducerState struct {
	// Applied is the highest producer seq the target applied (its mark).
	Applied int64
	Known   bool
	// RefusesGaps: the target refuses (Aborted) a batch whose FirstSeq is
	// past Applied+1 instead of applying it over an earlier batch still in
	// flight. Only then does the relay keep more than one batch in flight;
	// against an older target that dedups by high-water mark alone, an
	// overtaking batch would make it drop the earlier one.
	RefusesGaps bool
}

// Batch is one PushLogs to the target. Rows keep their source Seq; Cluster
// is the source's cluster name (the request's cluster field).
type Batch struct {
	Producer          string
	Cluster           string
	FirstSeq, LastSeq int64
	Rows              []store.Row
}
