package relay

import (
	"context"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/store"
)

// ClientSink is the Sink the daemon uses: the target finelogd's LogService
// through client.Client. NewClientSink builds it with gzip on every push
// (see docs/relay.md for bytes per row) and zstd once the target offers
// it.
type ClientSink struct {
	// Client pushes and asks for producer state. Build it with no retries
	// of its own (client.WithRetry(1, 0, 0)): the Forwarder retries with
	// backoff and must see every failure.
	Client *client.Client
	// ZstdClient, if set, is the same target sending zstd: pushes use it
	// once a response from the target lists zstd in its Accept-Encoding
	// (Zstd.Learn, wired by NewClientSink), and fall back to Client if the
	// target stops accepting it.
	ZstdClient *client.Client
	Zstd       *ZstdChoice
	// Timeout bounds each RPC (0: none; the caller's context still applies).
	// It lives here, not in the Forwarder, because it is real network time.
	Timeout time.Duration
}

// NewClientSink returns the daemon's sink for the finelogd at baseURL over
// httpClient. token, if set, is called before every RPC and sent as a
// bearer token (it is never logged); an error from it is an auth failure,
// retried slowly like a refused credential, never a dropped row.
func NewClientSink(baseURL string, httpClient connect.HTTPClient, token func(context.Context) (string, error), timeout time.Duration) ClientSink {
	choice := &ZstdChoice{}
	opts := []client.Option{client.WithHTTPClient(httpClient), client.WithRetry(1, 0, 0), client.WithResponseHeaders(choice.Learn)}
	if token != nil {
		opts = append(opts, client.WithToken(func(ctx context.Context) (string, error) {
			tok, err := token(ctx)
			if err != nil {
				return "", connect.NewError(connect.CodeUnauthenticated, err)
			}
			return tok, nil
		}))
	}
	return ClientSink{
		Client:     client.New(baseURL, append(opts, client.WithConnectOptions(GzipClientOptions()...))...),
		ZstdClient: client.New(baseURL, append(opts, client.WithConnectOptions(ZstdClientOptions()...))...),
		Zstd:       choice,
		Timeout:    timeout,
	}
}

// Push sends one PushLogs whose request key is empty, so every entry keeps
// its own key, with the producer and seq range that make it idempotent.
func (s ClientSink) Push(ctx context.Context, b Batch) (store.Ack, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	c, zstd := s.pushClient()
	resp, err := c.Push(ctx, PushRequest(b))
	if err != nil {
		if zstd && connect.CodeOf(err) == connect.CodeUnimplemented {
			// An older target behind the same address: back to gzip on
			// the retry.
			s.Zstd.ok.Store(false)
		}
		return store.Ack{}, err
	}
	return store.Ack{First: resp.GetFirstSeq(), Last: resp.GetLastSeq(), ProducerApplied: resp.GetProducerAppliedSeq()}, nil
}

// ProducerState asks the target (GetProducerState) where producer stopped.
func (s ClientSink) ProducerState(ctx context.Context, producer string) (ProducerState, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	st, err := s.Client.ProducerStatus(ctx, producer)
	if err != nil {
		return ProducerState{}, err
	}
	return ProducerState{Applied: st.Applied, Known: st.Known, RefusesGaps: st.RefusesGaps}, nil
}

func (s ClientSink) pushClient() (c *client.Client, zstd bool) {
	if s.ZstdClient != nil && s.Zstd != nil && s.Zstd.ok.Load() {
		return s.ZstdClient, true
	}
	return s.Client, false
}

func (s ClientSink) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.Timeout > 0 {
		return context.WithTimeout(ctx, s.Timeout)
	}
	return ctx, func() {}
}

// PushRequest is the PushLogs request for a batch: an empty request key
// (each entry carries its own), entry seq = source seq, and the producer
// and seq range when the batch is idempotent.
func PushRequest(b Batch) *loggingpb.PushLogsRequest {
	entries := make([]*loggingpb.LogEntry, len(b.Rows))
	for i := range b.Rows {
		r := &b.Rows[i]
		cluster := r.Cluster
		if cluster == b.Cluster {
			// The request's cluster applies to an entry without one: a
			// daemon's own rows (all a relay forwards) need not repeat it
			// 5000 times, each one encoded, compressed and decoded.
			cluster = ""
		}
		entries[i] = &loggingpb.LogEntry{
			Timestamp:  &loggingpb.Timestamp{EpochMs: r.EpochMS},
			Source:     r.Source,
			Data:       r.Data,
			AttemptId:  r.AttemptID,
			Level:      loggingpb.LogLevel(r.Level),
			Key:        r.Key,
			Seq:        r.Seq,
			Cluster:    cluster,
			Attributes: r.Attributes.Map(),
		}
	}
	return &loggingpb.PushLogsRequest{
		Entries:  entries,
		Cluster:  b.Cluster,
		Producer: b.Producer,
		FirstSeq: b.FirstSeq,
		LastSeq:  b.LastSeq,
	}
}
