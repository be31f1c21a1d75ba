package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scripted fails PushLogs with the queued errors, then succeeds.
type scripted struct {
	loggingpbconnect.UnimplementedLogServiceHandler
	errs     []error
	attempts atomic.Int32
	auth     atomic.Value // last Authorization header
}

func (s *scripted) PushLogs(ctx context.Context, req *connect.Request[loggingpb.PushLogsRequest]) (*connect.Response[loggingpb.PushLogsResponse], error) {
	n := int(s.attempts.Add(1))
	s.auth.Store(req.Header().Get("Authorization"))
	if n <= len(s.errs) {
		return nil, s.errs[n-1]
	}
	return connect.NewResponse(&loggingpb.PushLogsResponse{FirstSeq: 1, LastSeq: int64(len(req.Msg.Entries))}), nil
}

func serve(t *testing.T, h *scripted) string {
	path, handler := loggingpbconnect.NewLogServiceHandler(h)
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func diskFull() error {
	ce := connect.NewError(connect.CodeResourceExhausted, errors.New("disk full"))
	ce.Meta().Set(client.RetryHeader, "disk-full")
	return ce
}

var push = &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{{Data: "x"}}}

func TestPushRetries(t *testing.T) {
	unavailable := connect.NewError(connect.CodeUnavailable, errors.New("restarting"))
	for _, tc := range []struct {
		name         string
		errs         []error
		wantAttempts int32
		wantCode     connect.Code // 0: success
	}{
		{"unavailable then ok", []error{unavailable, unavailable}, 3, 0},
		{"deadline then ok", []error{connect.NewError(connect.CodeDeadlineExceeded, errors.New("slow"))}, 2, 0},
		{"disk full then ok", []error{diskFull()}, 2, 0},
		{"invalid argument is final", []error{connect.NewError(connect.CodeInvalidArgument, errors.New("bad"))}, 1, connect.CodeInvalidArgument},
		{"permission denied is final", []error{connect.NewError(connect.CodePermissionDenied, errors.New("no"))}, 1, connect.CodePermissionDenied},
		{"oversize is final", []error{connect.NewError(connect.CodeResourceExhausted, errors.New("message size 9 is larger than configured max 8"))}, 1, connect.CodeResourceExhausted},
		{"bounded attempts", []error{unavailable, unavailable, unavailable, unavailable, unavailable}, 4, connect.CodeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &scripted{errs: tc.errs}
			c := client.New(serve(t, h), client.WithRetry(4, time.Millisecond, 2*time.Millisecond))
			_, err := c.Push(context.Background(), push)
			if got := h.attempts.Load(); got != tc.wantAttempts {
				t.Errorf("attempts = %d, want %d", got, tc.wantAttempts)
			}
			if tc.wantCode == 0 && err != nil {
				t.Fatalf("push: %v", err)
			}
			if tc.wantCode != 0 && connect.CodeOf(err) != tc.wantCode {
				t.Fatalf("push error %v, want code %v", err, tc.wantCode)
			}
		})
	}
}

func TestPushStopsRetryingWhenContextEnds(t *testing.T) {
	h := &scripted{errs: []error{connect.NewError(connect.CodeUnavailable, errors.New("down"))}}
	clk := clock.NewFake(time.Unix(0, 0))
	c := client.New(serve(t, h), client.WithRetry(10, time.Hour, time.Hour), client.WithClock(clk))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the client sleeps before its second attempt.
		for clk.Pending() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := c.Push(ctx, push)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "down") {
		t.Fatalf("push = %v, want context.Canceled mentioning the last error", err)
	}
	if n := h.attempts.Load(); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

func TestTokenIsSentAsBearer(t *testing.T) {
	h := &scripted{}
	c := client.New(serve(t, h), client.WithToken(func(context.Context) (string, error) { return "tok-123", nil }))
	if _, err := c.Push(context.Background(), push); err != nil {
		t.Fatal(err)
	}
	if got := h.auth.Load(); got != "Bearer tok-123" {
		t.Fatalf("Authorization = %q", got)
	}
}

// TestTailFollows runs Tail against a real server: it yields the newest
// rows, then rows pushed later, in order, and ends cleanly when cancelled.
func TestTailFollows(t *testing.T) {
	srv, err := server.New(server.Config{FS: vfs.NewMemFS(), DataDir: "/d"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.Protocols = new(http.Protocols)
	hs.Config.Protocols.SetHTTP1(true)
	hs.Config.Protocols.SetUnencryptedHTTP2(true)
	hs.Start()
	defer func() {
		hs.Close()
		srv.Close()
	}()
	for _, grpc := range []bool{false, true} {
		var opts []client.Option
		key := "/tail/connect"
		if grpc {
			opts = append(opts, client.WithGRPC())
			key = "/tail/grpc"
		}
		c := client.New(hs.URL, opts...)
		ctx, cancel := context.WithCancel(context.Background())
		pushData := func(data ...string) {
			req := &loggingpb.PushLogsRequest{Key: key}
			for _, d := range data {
				req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: d})
			}
			if _, err := c.Push(context.Background(), req); err != nil {
				t.Error(err)
			}
		}
		pushData("old-1", "old-2", "old-3")
		var got []string
		pushed := make(chan struct{})
		for e, err := range c.Tail(ctx, &loggingpb.FetchLogsRequest{Source: key, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Tail: true, MaxLines: 2}) {
			if err != nil {
				t.Fatalf("grpc=%v after %q: %v", grpc, got, err)
			}
			got = append(got, e.Data)
			switch len(got) {
			case 2:
				// Pushed while the tail waits on its long-poll.
				go func() { pushData("new-1"); close(pushed) }()
			case 3:
				cancel()
			}
		}
		cancel()
		// The row wakes the tail before its push is answered; let the
		// push finish before the server goes away.
		if len(got) >= 2 {
			<-pushed
		}
		if want := "old-2 old-3 new-1"; strings.Join(got, " ") != want {
			t.Errorf("grpc=%v: tail yielded %q, want %q", grpc, got, want)
		}
	}
}
