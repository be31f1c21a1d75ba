// Package client is the Go client for finelogd's LogService. The CLI, the
// relay and the end-to-end tests use it.
//
// It speaks the Connect protocol over HTTP/1.1 by default, or gRPC over h2c
// (WithGRPC). Push retries the errors a caller cannot act on (the server
// restarting, a full disk, a deadline) with exponential backoff and full
// jitter, a bounded number of times; it never retries a request the server
// rejected as invalid or unauthorised.
package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/klauspost/compress/gzip"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/wirecompress"
	"github.com/finelog/finelog/wire"
)

// RetryHeader is the error metadata key finelogd sets on a
// resource_exhausted error that is transient (the disk is full), so clients
// can tell it apart from an oversize request, which is permanent.
const RetryHeader = wire.RetryHeader

// Client talks to one finelogd.
type Client struct {
	baseURL string
	logs    loggingpbconnect.LogServiceClient
	o       options
}

type options struct {
	httpClient  connect.HTTPClient
	token       func(ctx context.Context) (string, error)
	grpc        bool
	gzip        bool
	acceptZstd  bool
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
	clk         clock.Clock
	rand        func(n int64) int64
	connectOpts []connect.ClientOption
	onHeaders   func(http.Header)
}

// Option configures New.
type Option func(*options)

// WithHTTPClient replaces the HTTP client. For WithGRPC it must speak h2c.
func WithHTTPClient(c connect.HTTPClient) Option { return func(o *options) { o.httpClient = c } }

// WithToken sets a bearer-token source; it is called before every request
// so a minter can refresh tokens before they expire.
func WithToken(f func(ctx context.Context) (string, error)) Option {
	return func(o *options) { o.token = f }
}

// WithGRPC uses the gRPC protocol (over h2c for http:// addresses).
func WithGRPC() Option { return func(o *options) { o.grpc = true } }

// WithGzip compresses requests with gzip.
func WithGzip() Option { return func(o *options) { o.gzip = true } }

// WithAcceptZstd asks for zstd-compressed responses ahead of gzip (finelogd
// sends either). For a large page zstd's fastest level costs a fraction
// of gzip's time at both ends; a server that lacks it still answers gzip.
func WithAcceptZstd() Option { return func(o *options) { o.acceptZstd = true } }

// WithRetry bounds Push retries: at most attempts tries in total (1 means
// no retry), sleeping a random duration in [0, min(max, base·2^n)) between
// them.
func WithRetry(attempts int, base, max time.Duration) Option {
	return func(o *options) {
		o.maxAttempts, o.baseDelay, o.maxDelay = attempts, base, max
	}
}

// WithConnectOptions adds Connect client options after the client's own,
// so they take precedence (a compressor registered under a name the client
// already registers replaces it). The relay uses it for its compression.
func WithConnectOptions(opts ...connect.ClientOption) Option {
	return func(o *options) { o.connectOpts = append(o.connectOpts, opts...) }
}

// WithResponseHeaders calls fn with the headers of every successful
// response (the relay learns from Accept-Encoding which compressions the
// server takes). fn must be safe for concurrent use.
func WithResponseHeaders(fn func(http.Header)) Option {
	return func(o *options) { o.onHeaders = fn }
}

// WithClock sets the clock used for backoff sleeps (tests use a fake).
func WithClock(c clock.Clock) Option { return func(o *options) { o.clk = c } }

// New returns a client for the finelogd at baseURL (e.g.
// "http://127.0.0.1:7070").
func New(baseURL string, opts ...Option) *Client {
	o := options{
		maxAttempts: 6,
		baseDelay:   100 * time.Millisecond,
		maxDelay:    5 * time.Second,
		clk:         clock.Real{},
		rand:        rand.Int64N,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxAttempts < 1 {
		o.maxAttempts = 1
	}
	if o.httpClient == nil {
		if o.grpc {
			o.httpClient = H2CClient()
		} else {
			o.httpClient = HTTP1Client()
		}
	}
	baseURL = strings.TrimRight(baseURL, "/")
	var copts []connect.ClientOption
	if o.grpc {
		copts = append(copts, connect.WithGRPC())
	}
	// gzip both ways through klauspost's implementation (ordinary gzip on
	// the wire, several times faster than the standard library's).
	copts = append(copts, connect.WithAcceptCompression(wirecompress.Gzip, wirecompress.GzipDecompressor, wirecompress.GzipCompressor(gzip.DefaultCompression)))
	if o.acceptZstd {
		// Registered last: Connect lists the last one first in Accept-Encoding.
		copts = append(copts, connect.WithAcceptCompression(wirecompress.Zstd, wirecompress.ZstdDecompressor, wirecompress.ZstdCompressor))
	}
	if o.gzip {
		copts = append(copts, connect.WithSendCompression(wirecompress.Gzip))
	}
	if o.token != nil {
		copts = append(copts, connect.WithInterceptors(bearer(o.token)))
	}
	if o.onHeaders != nil {
		copts = append(copts, connect.WithInterceptors(responseHeaders(o.onHeaders)))
	}
	copts = append(copts, o.connectOpts...)
	return &Client{
		baseURL: baseURL,
		logs:    loggingpbconnect.NewLogServiceClient(o.httpClient, baseURL, copts...),
		o:       o,
	}
}

// BaseURL is the address the client talks to.
func (c *Client) BaseURL() string { return c.baseURL }

// HTTP1Client is an HTTP/1.1 client that keeps enough idle connections for
// a handful of concurrent pushers (the default of 2 per host makes a
// 4-pusher load generator reconnect constantly).
func HTTP1Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr}
}

// H2CClient is an HTTP/2 client that speaks cleartext HTTP/2 with prior
// knowledge to http:// addresses, as gRPC requires.
func H2CClient() *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// bearer adds "Authorization: Bearer <token>" to every request.
func bearer(token func(ctx context.Context) (string, error)) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			tok, err := token(ctx)
			if err != nil {
				return nil, fmt.Errorf("get bearer token: %w", err)
			}
			req.Header().Set("Authorization", "Bearer "+tok)
			return next(ctx, req)
		}
	}
}

// responseHeaders passes every successful response's headers to fn.
func responseHeaders(fn func(http.Header)) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			resp, err := next(ctx, req)
			if err == nil {
				fn(resp.Header())
			}
			return resp, err
		}
	}
}

// Push sends one batch. Retryable failures are retried (see WithRetry); a
// retried push without a producer may be applied twice if an ack was lost,
// so the relay always sets producer/first_seq/last_seq.
func (c *Client) Push(ctx context.Context, req *loggingpb.PushLogsRequest) (*loggingpb.PushLogsResponse, error) {
	var last error
	for attempt := 0; attempt < c.o.maxAttempts; attempt++ {
		if attempt > 0 {
			if err := clock.Sleep(ctx, c.o.clk, c.backoff(attempt-1)); err != nil {
				return nil, fmt.Errorf("%w (last error: %v)", err, last)
			}
		}
		resp, err := c.logs.PushLogs(ctx, connect.NewRequest(req))
		if err == nil {
			return resp.Msg, nil
		}
		last = err
		if !Retryable(err) || ctx.Err() != nil {
			return nil, err
		}
	}
	if c.o.maxAttempts == 1 {
		return nil, last
	}
	return nil, fmt.Errorf("push failed after %d attempts: %w", c.o.maxAttempts, last)
}

// backoff is full jitter: uniform in [0, min(max, base·2^n)).
func (c *Client) backoff(n int) time.Duration {
	d := c.o.baseDelay
	for i := 0; i < n && d < c.o.maxDelay; i++ {
		d *= 2
	}
	d = min(d, c.o.maxDelay)
	if d <= 0 {
		return 0
	}
	return time.Duration(c.o.rand(int64(d)))
}

// Retryable reports whether a failed call may succeed if repeated unchanged:
// the server was unavailable (restarting, shutting down, unreachable), the
// deadline passed, or the server reported a transient resource_exhausted
// (disk full). Invalid, unauthenticated and forbidden requests are final,
// and so is a request over the size limit.
func Retryable(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code() {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeAborted:
		return true
	case connect.CodeResourceExhausted:
		return ce.Meta().Get(RetryHeader) != ""
	default:
		return false
	}
}

// Fetch runs one FetchLogs.
func (c *Client) Fetch(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
	resp, err := c.logs.FetchLogs(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// ProducerState asks which producer seq the server has applied last.
func (c *Client) ProducerState(ctx context.Context, producer string) (applied int64, known bool, err error) {
	st, err := c.ProducerStatus(ctx, producer)
	return st.Applied, st.Known, err
}

// ProducerStatus is what a server reports of one idempotent producer.
type ProducerStatus struct {
	Applied int64 // the highest producer seq applied
	Known   bool  // the server has applied a batch of this producer
	// RefusesGaps: the server refuses (aborted) a batch that starts past
	// Applied+1 instead of applying it over an earlier one still in flight.
	RefusesGaps bool
}

// ProducerStatus asks the server (GetProducerState) about producer.
func (c *Client) ProducerStatus(ctx context.Context, producer string) (ProducerStatus, error) {
	resp, err := c.logs.GetProducerState(ctx, connect.NewRequest(&loggingpb.GetProducerStateRequest{Producer: producer}))
	if err != nil {
		return ProducerStatus{}, err
	}
	return ProducerStatus{Applied: resp.Msg.GetAppliedSeq(), Known: resp.Msg.GetKnown(), RefusesGaps: resp.Msg.GetRefusesGaps()}, nil
}
