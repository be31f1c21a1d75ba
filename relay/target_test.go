package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/wirecompress"
	"github.com/finelog/finelog/store"
)

// targetService is a minimal global finelogd: PushLogs and
// GetProducerState over a real store, as the server does it.
type targetService struct {
	loggingpbconnect.UnimplementedLogServiceHandler
	st    *store.Store
	token string
	// delay is how long a push takes to reach the handler after it was
	// sent: half a round trip (BenchmarkRelayDrainFar).
	delay time.Duration
}

func (s *targetService) check(h http.Header) error {
	if s.token != "" && h.Get("Authorization") != "Bearer "+s.token {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("bad token"))
	}
	return nil
}

func (s *targetService) PushLogs(ctx context.Context, req *connect.Request[loggingpb.PushLogsRequest]) (*connect.Response[loggingpb.PushLogsResponse], error) {
	if err := s.check(req.Header()); err != nil {
		return nil, err
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	m := req.Msg
	rows := make([]store.Row, len(m.GetEntries()))
	for i, e := range m.GetEntries() {
		c := e.GetCluster()
		if c == "" {
			c = m.GetCluster()
		}
		rows[i] = store.Row{Seq: e.GetSeq(), Key: e.GetKey(), Source: e.GetSource(), Data: e.GetData(), EpochMS: e.GetTimestamp().GetEpochMs(), AttemptID: e.GetAttemptId(), Level: int32(e.GetLevel()), Cluster: c}
	}
	ack, err := StoreSink{Store: s.st}.Push(ctx, Batch{Producer: m.GetProducer(), FirstSeq: m.GetFirstSeq(), LastSeq: m.GetLastSeq(), Rows: rows})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loggingpb.PushLogsResponse{FirstSeq: ack.First, LastSeq: ack.Last, ProducerAppliedSeq: ack.ProducerApplied}), nil
}

func (s *targetService) GetProducerState(_ context.Context, req *connect.Request[loggingpb.GetProducerStateRequest]) (*connect.Response[loggingpb.GetProducerStateResponse], error) {
	if err := s.check(req.Header()); err != nil {
		return nil, err
	}
	seq, known := s.st.ProducerApplied(req.Msg.GetProducer())
	// The store refuses a batch that overtakes the producer's mark, as
	// every finelogd does (server/logservice.go).
	return connect.NewResponse(&loggingpb.GetProducerStateResponse{AppliedSeq: seq, Known: known, RefusesGaps: true}), nil
}

func serveTarget(t testing.TB, svc *targetService) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	// gzip and zstd intake, as finelogd registers them.
	mux.Handle(loggingpbconnect.NewLogServiceHandler(svc, wirecompress.HandlerOptions()...))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Client().CloseIdleConnections()
		srv.Close()
	})
	return srv
}

// sinkClient is a client.Client as ClientSink wants it (no retries of its
// own) with the given Connect options.
func sinkClient(url string, hc connect.HTTPClient, opts ...connect.ClientOption) *client.Client {
	return client.New(url, client.WithHTTPClient(hc), client.WithRetry(1, 0, 0), client.WithConnectOptions(opts...))
}
