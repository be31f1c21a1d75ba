package peer

import (
	"context"

	"github.com/finelog/finelog/store"
)

// RecordSource is the primary's store as the peer port streams it.
type RecordSource interface {
	// Tail streams the committed records after afterSeq (store.Tail).
	Tail(afterSeq int64) (RecordStream, error)
	LastSeq() int64
	// Floor is the retention floor (store.Floor): a caught-up replica
	// learns of a rise from it, as no record is due to carry it.
	Floor() int64
}

// RecordStream yields records in seq order, waiting at the end.
type RecordStream interface {
	Next(ctx context.Context) (store.Record, error)
	Close()
}

// RecordApplier is the replica's store: it writes a received record with
// the primary's seqs and marks and returns once it is durable.
type RecordApplier interface {
	ApplyReplicated(ctx context.Context, rec store.Record) error
	// ApplyFloor takes the primary's retention floor (store.ApplyFloor).
	ApplyFloor(ctx context.Context, floor int64) error
	LastSeq() int64
}

// StoreSource adapts a *store.Store to RecordSource.
func StoreSource(s *store.Store) RecordSource { return storeSource{s} }

type storeSource struct{ s *store.Store }

func (ss storeSource) Tail(after int64) (RecordStream, error) {
	st, err := ss.s.Tail(after)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (ss storeSource) LastSeq() int64 { return ss.s.LastSeq() }

func (ss storeSource) Floor() int64 { return ss.s.Floor() }
