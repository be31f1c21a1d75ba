package relay

import (
	"context"

	"github.com/finelog/finelog/internal/storeerr"
	"github.com/finelog/finelog/store"
)

// The adapters take interfaces so tests can fake them; *store.Store is
// what the daemon and the simulation pass.
var (
	_ StoreReader = (*store.Store)(nil)
	_ StoreWriter = (*store.Store)(nil)
)

// StoreReader is the part of *store.Store the relay reads from.
type StoreReader interface {
	Scan(ctx context.Context, after int64, maxRows int, maxBytes int) ([]store.Row, error)
	LastSeq() int64
}

// StoreSource is a Source over a local store (*store.Store).
type StoreSource struct{ Store StoreReader }

// Read returns rows with seq > after, at most maxRows and about maxBytes.
func (s StoreSource) Read(ctx context.Context, after int64, maxRows, maxBytes int) ([]store.Row, error) {
	return s.Store.Scan(ctx, after, maxRows, maxBytes)
}

// LastSeq is the store's newest seq.
func (s StoreSource) LastSeq(context.Context) (int64, error) { return s.Store.LastSeq(), nil }

// StoreWriter is the part of *store.Store an in-process target needs.
type StoreWriter interface {
	Append(ctx context.Context, b store.Batch) (store.Ack, error)
	ProducerApplied(producer string) (seq int64, known bool)
}

// StoreSink is a Sink that appends straight into a store in the same
// process (the simulation and tests; the daemon uses ClientSink). Store
// errors become the connect codes the server would send, so the relay
// classifies them the same way.
type StoreSink struct{ Store StoreWriter }

// Push appends the batch idempotently (when it names a producer). Rows
// without a cluster take the batch's, as the server does for PushLogs.
func (s StoreSink) Push(ctx context.Context, b Batch) (store.Ack, error) {
	rows := make([]store.Row, len(b.Rows))
	for i, r := range b.Rows {
		if r.Cluster == "" {
			r.Cluster = b.Cluster
		}
		rows[i] = r
	}
	ack, err := s.Store.Append(ctx, store.Batch{Rows: rows, Producer: b.Producer, FirstSeq: b.FirstSeq, LastSeq: b.LastSeq})
	if err != nil {
		return ack, StoreErrorToConnect(err)
	}
	return ack, nil
}

// ProducerState reports the store's applied mark for producer. A store
// refuses batches that would leave a gap (store.ErrProducerGap).
func (s StoreSink) ProducerState(_ context.Context, producer string) (ProducerState, error) {
	seq, ok := s.Store.ProducerApplied(producer)
	return ProducerState{Applied: seq, Known: ok, RefusesGaps: true}, nil
}

// StoreErrorToConnect is storeerr.ToConnect for a push: the Connect error
// finelogd's server answers a store error with, for in-process targets
// that must look the same to the relay.
func StoreErrorToConnect(err error) error { return storeerr.ToConnect("push", err) }
