package relay

import (
	"context"
	"net/http/httptrace"
	"sync"

	"github.com/finelog/finelog/store"
)

// SentSink is a Sink that can say when a push has left the relay: its
// request is written in full, and only the target's work remains. With
// more than one batch in flight the relay starts each push once the one
// before it has been sent (or has returned), not all at once. A target
// that refuses overtaking batches then nearly always receives them in seq
// order, so they are not refused and sent again; and the relay's own work
// on a batch (encoding, compression) still overlaps the target's work on
// the one before. A Sink without it gets all its pushes started at once.
type SentSink interface {
	Sink
	// PushSent is Push that calls sent (at most once, from any goroutine)
	// once the batch's request is written, before the answer arrives.
	PushSent(ctx context.Context, b Batch, sent func()) (store.Ack, error)
}

// PushSent is Push reporting, through net/http's client trace, when the
// request has been written.
func (s ClientSink) PushSent(ctx context.Context, b Batch, sent func()) (store.Ack, error) {
	var once sync.Once
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(sent) },
	})
	return s.Push(ctx, b)
}

var _ SentSink = ClientSink{}
