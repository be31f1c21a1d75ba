package relay

import (
	"context"
	"time"

	"connectrpc.com/connect"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/store"
)

// ClientSink is the Sink the daemon uses: the target finelogd's LogService
// over Connect. Build the client with GzipClientOptions so egress is
// compressed (see docs/relay.md for bytes per row).
type ClientSink struct {
	Client loggingpbconnect.LogServiceClient
	// ZstdClient, if set, is the same target with ZstdClientOptions: pushes
	// use it once a response from the target lists zstd in its
	// Accept-Encoding, and fall back to Client if the target stops
	// accepting it.
	ZstdClient loggingpbconnect.LogServiceClient
	zstd       *zstdChoice
	// Token, if set, is called before every RPC and sent as a bearer token
	// (a delegation token minted from the cluster key and refreshed before
	// expiry, or a static token). It is never logged.
	Token func(ctx context.Context) (string, error)
	// Timeout bounds each RPC (0: none; the caller's context still applies).
	// It lives here, not in the Forwarder, because it is real network time.
	Timeout time.Duration
}

// Push sends one PushLogs whose request key is empty, so every entry keeps
// its own key, with the producer and seq range that make it idempotent.
func (s ClientSink) Push(ctx context.Context, b Batch) (store.Ack, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	req := connect.NewRequest(PushRequest(b))
	if err := s.authorize(ctx, req.Header()); err != nil {
		return store.Ack{}, err
	}
	c, zstd := s.pushClient()
	resp, err := c.PushLogs(ctx, req)
	if err != nil {
		if zstd && connect.CodeOf(err) == connect.CodeUnimplemented {
			// An older target behind the same address: back to gzip on
			// the retry.
			s.zstd.ok.Store(false)
		}
		return store.Ack{}, err
	}
	return store.Ack{First: resp.Msg.GetFirstSeq(), Last: resp.Msg.GetLastSeq(), ProducerApplied: resp.Msg.GetProducerAppliedSeq()}, nil
}

// ProducerState asks the target (GetProducerState) where producer stopped.
func (s ClientSink) ProducerState(ctx context.Context, producer string) (ProducerState, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	req := connect.NewRequest(&loggingpb.GetProducerStateRequest{Producer: producer})
	if err := s.authorize(ctx, req.Header()); err != nil {
		return ProducerState{}, err
	}
	resp, err := s.Client.GetProducerState(ctx, req)
	if err != nil {
		return ProducerState{}, err
	}
	if s.zstd != nil {
		s.zstd.learn(resp.Header())
	}
	return ProducerState{Applied: resp.Msg.GetAppliedSeq(), Known: resp.Msg.GetKnown(), RefusesGaps: resp.Msg.GetRefusesGaps()}, nil
}

// WithZstd returns the sink with c as its ZstdClient.
func (s ClientSink) WithZstd(c loggingpbconnect.LogServiceClient) ClientSink {
	s.ZstdClient, s.zstd = c, &zstdChoice{}
	return s
}

func (s ClientSink) pushClient() (c loggingpbconnect.LogServiceClient, zstd bool) {
	if s.ZstdClient != nil && s.zstd != nil && s.zstd.ok.Load() {
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

type headerSetter interface{ Set(key, value string) }

func (s ClientSink) authorize(ctx context.Context, h headerSetter) error {
	if s.Token == nil {
		return nil
	}
	tok, err := s.Token(ctx)
	if err != nil {
		// A token we cannot mint is the same operator problem as one the
		// target refuses: retry slowly, loudly.
		return connect.NewError(connect.CodeUnauthenticated, err)
	}
	h.Set("Authorization", "Bearer "+tok)
	return nil
}

// PushRequest is the PushLogs request for a batch: an empty request key
// (each entry carries its own), entry seq = source seq, and the producer
// and seq range when the batch is idempotent.
func PushRequest(b Batch) *loggingpb.PushLogsRequest {
	entries := make([]*loggingpb.LogEntry, len(b.Rows))
	for i := range b.Rows {
		r := &b.Rows[i]
		entries[i] = &loggingpb.LogEntry{
			Timestamp: &loggingpb.Timestamp{EpochMs: r.EpochMS},
			Source:    r.Source,
			Data:      r.Data,
			AttemptId: r.AttemptID,
			Level:     loggingpb.LogLevel(r.Level),
			Key:       r.Key,
			Seq:       r.Seq,
			// Empty for local rows: the request's cluster applies.
			Cluster: r.Cluster,
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
