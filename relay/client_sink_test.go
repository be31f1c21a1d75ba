package relay

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/wirecompress"
	"github.com/finelog/finelog/store"
)

// recordingService is a LogService that keeps what it was sent.
type recordingService struct {
	loggingpbconnect.UnimplementedLogServiceHandler
	mu       sync.Mutex
	pushes   []*loggingpb.PushLogsRequest
	auth     []string
	pushErr  error
	applied  int64
	known    bool
	producer string
}

func (s *recordingService) PushLogs(_ context.Context, req *connect.Request[loggingpb.PushLogsRequest]) (*connect.Response[loggingpb.PushLogsResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, req.Header().Get("Authorization"))
	if s.pushErr != nil {
		return nil, s.pushErr
	}
	s.pushes = append(s.pushes, req.Msg)
	n := int64(len(req.Msg.GetEntries()))
	return connect.NewResponse(&loggingpb.PushLogsResponse{FirstSeq: 1, LastSeq: n, ProducerAppliedSeq: req.Msg.GetLastSeq()}), nil
}

func (s *recordingService) GetProducerState(_ context.Context, req *connect.Request[loggingpb.GetProducerStateRequest]) (*connect.Response[loggingpb.GetProducerStateResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, req.Header().Get("Authorization"))
	s.producer = req.Msg.GetProducer()
	return connect.NewResponse(&loggingpb.GetProducerStateResponse{AppliedSeq: s.applied, Known: s.known, RefusesGaps: true}), nil
}

// wireCounter counts request body bytes as they arrive, before Connect
// decompresses them: what crosses the network.
type wireCounter struct {
	next     http.Handler
	bytes    atomic.Int64
	encoding atomic.Value
}

func (w *wireCounter) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.bytes.Add(int64(len(body)))
	w.encoding.Store(r.Header.Get("Content-Encoding"))
	r.Body = io.NopCloser(bytes.NewReader(body))
	w.next.ServeHTTP(rw, r)
}

func newTestServer(t *testing.T, svc *recordingService) (*httptest.Server, *wireCounter) {
	t.Helper()
	mux := http.NewServeMux()
	path, h := loggingpbconnect.NewLogServiceHandler(svc, wirecompress.HandlerOptions()...)
	mux.Handle(path, h)
	wc := &wireCounter{next: mux}
	srv := httptest.NewServer(wc)
	t.Cleanup(func() {
		srv.Client().CloseIdleConnections()
		srv.Close()
	})
	return srv, wc
}

func TestClientSinkMapsBatchToPushLogs(t *testing.T) {
	svc := &recordingService{applied: 41, known: true}
	srv, wc := newTestServer(t, svc)
	attrs, err := store.MakeAttributes(map[string]string{"trace_id": "0af7", "env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	sink := NewClientSink(srv.URL, srv.Client(), func(context.Context) (string, error) { return "tok-123", nil }, 0)
	b := Batch{
		Producer: "east/abc", Cluster: "east", FirstSeq: 40, LastSeq: 43,
		Rows: []store.Row{
			{Seq: 41, Key: "/a/job:2", Source: "stderr", Data: "boom", EpochMS: 1700, AttemptID: 2, Level: store.LevelError},
			{Seq: 43, Key: "/b/job", Data: "ok", EpochMS: 1701, Level: 9, Cluster: "east", Attributes: attrs},
		},
	}
	ack, err := sink.Push(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if ack.ProducerApplied != 43 || ack.Last != 2 {
		t.Errorf("ack = %+v", ack)
	}
	if enc, _ := wc.encoding.Load().(string); enc != "gzip" {
		t.Errorf("request Content-Encoding = %q, want gzip", enc)
	}
	got := svc.pushes[0]
	want := &loggingpb.PushLogsRequest{
		Cluster: "east", Producer: "east/abc", FirstSeq: 40, LastSeq: 43,
		Entries: []*loggingpb.LogEntry{
			{Timestamp: &loggingpb.Timestamp{EpochMs: 1700}, Source: "stderr", Data: "boom", AttemptId: 2, Level: loggingpb.LogLevel_LOG_LEVEL_ERROR, Key: "/a/job:2", Seq: 41},
			// Its cluster is the request's: not repeated.
			{Timestamp: &loggingpb.Timestamp{EpochMs: 1701}, Data: "ok", Level: 9, Key: "/b/job", Seq: 43,
				Attributes: map[string]string{"trace_id": "0af7", "env": "prod"}},
		},
	}
	if !proto.Equal(got, want) {
		t.Errorf("request =\n%v\nwant\n%v", got, want)
	}
	st, err := sink.ProducerState(context.Background(), "east/abc")
	if err != nil || st != (ProducerState{Applied: 41, Known: true, RefusesGaps: true}) || svc.producer != "east/abc" {
		t.Errorf("ProducerState = %+v, %v (producer asked %q)", st, err, svc.producer)
	}
	for _, a := range svc.auth {
		if a != "Bearer tok-123" {
			t.Errorf("Authorization = %q", a)
		}
	}
}

func TestClientSinkErrorsClassify(t *testing.T) {
	for _, tc := range []struct {
		err   error
		class string
	}{
		{connect.NewError(connect.CodeInvalidArgument, errors.New("entry 3: key is required")), ClassInvalidArgument},
		{connect.NewError(connect.CodeUnauthenticated, errors.New("token expired")), ClassAuth},
		{connect.NewError(connect.CodePermissionDenied, errors.New("no")), ClassAuth},
		{connect.NewError(connect.CodeResourceExhausted, errors.New("disk full")), ClassUnavailable},
		{connect.NewError(connect.CodeInternal, errors.New("bug")), ClassUnavailable},
	} {
		svc := &recordingService{pushErr: tc.err}
		srv, _ := newTestServer(t, svc)
		sink := ClientSink{Client: sinkClient(srv.URL, srv.Client())}
		_, err := sink.Push(context.Background(), Batch{Rows: []store.Row{{Seq: 1, Key: "/k"}}})
		if got := classify(err); got != tc.class {
			t.Errorf("%v: class %s, want %s", tc.err, got, tc.class)
		}
	}
	// A token that cannot be minted is an auth problem, not a dropped row.
	sink := NewClientSink("http://127.0.0.1:1", http.DefaultClient, func(context.Context) (string, error) { return "", errors.New("key file unreadable") }, 0)
	if _, err := sink.Push(context.Background(), Batch{}); classify(err) != ClassAuth {
		t.Errorf("mint failure classified %s", classify(err))
	}
}

// realisticRows makes n log rows that look like an ML cluster's: a few
// hundred jobs' worker keys, training-step lines with varying numbers,
// data-loader chatter, warnings and the odd traceback.
func realisticRows(n int, seed int64) []store.Row {
	rng := rand.New(rand.NewSource(seed))
	users := []string{"alice", "bob", "carol", "dmitri", "eve", "farah"}
	kinds := []string{"train-llama-7b", "eval-mmlu", "sweep-lr", "pretrain-vit", "rl-ppo", "finetune-bert"}
	rows := make([]store.Row, n)
	ms := int64(1_763_950_000_000)
	for i := range rows {
		job := rng.Intn(300)
		worker := rng.Intn(64)
		key := fmt.Sprintf("/%s/%s-%d/worker-%d:%d", users[job%len(users)], kinds[job%len(kinds)], job, worker, rng.Intn(3))
		var data string
		level := store.LevelInfo
		switch r := rng.Intn(100); {
		case r < 60:
			data = fmt.Sprintf("step %d loss=%.4f lr=%.2e grad_norm=%.3f tokens/s=%d mem=%.1fGiB",
				rng.Intn(200000), rng.Float64()*4, rng.Float64()*1e-3, rng.Float64()*10, 20000+rng.Intn(40000), 20+rng.Float64()*60)
		case r < 80:
			data = fmt.Sprintf("I1124 %02d:%02d:%02d.%06d %d dataloader.py:%d] loaded shard %d/%d from gs://ml-data/%s/shard-%05d.tfrecord (%d examples)",
				rng.Intn(24), rng.Intn(60), rng.Intn(60), rng.Intn(1e6), 1000+rng.Intn(9000), 100+rng.Intn(300), rng.Intn(1024), 1024, kinds[job%len(kinds)], rng.Intn(1024), rng.Intn(100000))
		case r < 92:
			level = store.LevelWarning
			data = fmt.Sprintf("W1124 nccl: ring %d peer %d slow: %dms allreduce on %d bytes", rng.Intn(8), rng.Intn(64), rng.Intn(5000), rng.Intn(1<<30))
		case r < 98:
			data = fmt.Sprintf("checkpoint saved to gs://ml-ckpt/%s-%d/step-%d (%.2f GB in %.1fs)", kinds[job%len(kinds)], job, rng.Intn(200000), rng.Float64()*50, rng.Float64()*120)
		default:
			level = store.LevelError
			data = fmt.Sprintf("Traceback (most recent call last):\n  File \"train.py\", line %d, in <module>\n    main()\n  File \"train.py\", line %d, in main\n    loss.backward()\nRuntimeError: CUDA out of memory. Tried to allocate %d MiB", rng.Intn(500), rng.Intn(500), rng.Intn(4096))
		}
		ms += int64(rng.Intn(5))
		rows[i] = store.Row{Seq: int64(i + 1), Key: key, Source: []string{"stdout", "stderr"}[rng.Intn(2)], Data: data, EpochMS: ms, Level: level}
	}
	return rows
}

// TestEgressBytesPerRow measures what a 5000-row relay batch costs on the
// wire, uncompressed and with the gzip the daemon's client sends (and zstd
// for comparison). Run with -v to see the figures.
func TestEgressBytesPerRow(t *testing.T) {
	const n = 5000
	b := Batch{Producer: "east/0123456789abcdef", Cluster: "east", FirstSeq: 1, LastSeq: n, Rows: realisticRows(n, 1)}
	raw, err := proto.Marshal(PushRequest(b))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	w.Write(raw)
	w.Close()
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	zs := enc.EncodeAll(raw, nil)
	enc.Close()

	// And what actually crossed the wire through Connect's WithSendGzip.
	svc := &recordingService{}
	srv, wc := newTestServer(t, svc)
	for _, tc := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"uncompressed", nil},
		{"connect.WithSendGzip (compress/gzip)", []connect.ClientOption{connect.WithSendGzip()}},
		{"GzipClientOptions (klauspost gzip, what the daemon sends to an older target)", GzipClientOptions()},
		{"ZstdClientOptions (what the daemon sends to a target that lists zstd)", ZstdClientOptions()},
	} {
		wc.bytes.Store(0)
		c := loggingpbconnect.NewLogServiceClient(srv.Client(), srv.URL, tc.opts...)
		if _, err := c.PushLogs(context.Background(), connect.NewRequest(PushRequest(b))); err != nil {
			t.Fatal(err)
		}
		t.Logf("request body on the wire, %s: %d bytes, %.1f bytes/row", tc.name, wc.bytes.Load(), float64(wc.bytes.Load())/n)
		if tc.opts != nil && wc.bytes.Load() >= int64(len(raw))/2 {
			t.Errorf("%s: request body %d bytes is not under half the raw %d: compression not applied?", tc.name, wc.bytes.Load(), len(raw))
		}
	}
	if len(svc.pushes) != 4 || !proto.Equal(svc.pushes[2], svc.pushes[0]) || !proto.Equal(svc.pushes[3], svc.pushes[0]) {
		t.Fatal("the server did not decode the compressed requests to the same message")
	}
	t.Logf("5000-row batch: proto %d B (%.1f B/row), gzip %d B (%.1f B/row, %.2fx), zstd %d B (%.1f B/row, %.2fx)",
		len(raw), float64(len(raw))/n, gz.Len(), float64(gz.Len())/n, float64(len(raw))/float64(gz.Len()),
		len(zs), float64(len(zs))/n, float64(len(raw))/float64(len(zs)))
	if gz.Len() >= len(raw) {
		t.Fatalf("gzip (%d) did not shrink the batch (%d)", gz.Len(), len(raw))
	}
}

func BenchmarkPushRequestEncode(b *testing.B) {
	batch := Batch{Producer: "east/0123456789abcdef", Cluster: "east", FirstSeq: 1, LastSeq: 5000, Rows: realisticRows(5000, 1)}
	b.ReportAllocs()
	for b.Loop() {
		raw, _ := proto.Marshal(PushRequest(batch))
		var gz bytes.Buffer
		w := gzip.NewWriter(&gz)
		w.Write(raw)
		w.Close()
		b.SetBytes(int64(len(raw)))
	}
	b.ReportMetric(5000, "rows/op")
}

// A relayed entry names its cluster only when it is not the request's:
// the daemon's own rows all carry its cluster, which the request's
// cluster already gives them.
func TestPushRequestOmitsTheRequestsCluster(t *testing.T) {
	req := PushRequest(Batch{Cluster: "east", Rows: []store.Row{{Seq: 1, Key: "/a", Data: "x", Cluster: "east"}, {Seq: 2, Key: "/b", Data: "y"}, {Seq: 3, Key: "/c", Data: "z", Cluster: "west"}}})
	var got []string
	for _, e := range req.GetEntries() {
		got = append(got, e.GetCluster())
	}
	if req.GetCluster() != "east" || !slices.Equal(got, []string{"", "", "west"}) {
		t.Fatalf("request cluster %q, entry clusters %q; want east and \"\", \"\", \"west\"", req.GetCluster(), got)
	}
}
