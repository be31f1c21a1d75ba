// Package federation is the read side of federation: a FetchLogs whose
// cluster names a configured peer is proxied to that peer with a token
// minted for that one request; "*" fans out to this store and every peer
// and merges the answers; anything else falls through to the local store.
//
// Everything here talks to a Fetcher: the local store behind the server,
// each peer behind the Go client (or, in the simulation, an in-memory
// transport), so the same code runs in the daemon and in the simulation.
package federation

import (
	"context"
	"net/http"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/wirecompress"
)

// Fetcher answers FetchLogs at the proto level. The server's local store
// is one, a peer is one, and the Router that chooses between them is one,
// so a Router wraps the local Fetcher the way auth.Middleware wraps an
// http.Handler. Errors are *connect.Error values.
type Fetcher interface {
	FetchLogs(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error)

// FetchLogs calls f.
func (f FetcherFunc) FetchLogs(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
	return f(ctx, req)
}

// Dial makes the Fetcher for one peer. token returns the bearer token for
// one request (it reads the caller from ctx); the Fetcher must send it as
// "Authorization: Bearer" and nothing else of the caller's request.
type Dial func(p PeerConfig, token func(ctx context.Context) (string, error)) Fetcher

// ClientDial is the production Dial: the Go client over httpClient (nil:
// PeerHTTPClient()). A request is built from the decoded message, so
// no header, cookie or query parameter of the caller's request can reach
// the peer. Answers are kept undecoded (answerCodec) and asked for with the
// peer's compression.
func ClientDial(httpClient connect.HTTPClient) Dial {
	if httpClient == nil {
		httpClient = PeerHTTPClient()
	}
	return func(p PeerConfig, token func(ctx context.Context) (string, error)) Fetcher {
		opts := []client.Option{client.WithHTTPClient(httpClient), client.WithToken(token), client.WithRetry(1, 0, 0)}
		copts := []connect.ClientOption{connect.WithCodec(answerCodec{})}
		switch p.Compression {
		case CompressionGzip:
		case CompressionNone:
			// Unregistering gzip leaves nothing in Accept-Encoding.
			copts = append(copts, connect.WithAcceptCompression(wirecompress.Gzip, nil, nil))
		default:
			opts = append(opts, client.WithAcceptZstd())
		}
		c := client.New(p.Address, append(opts, client.WithConnectOptions(copts...))...)
		return FetcherFunc(c.Fetch)
	}
}

// noRedirects keeps a peer from bouncing the delegation token elsewhere:
// Go's client would re-send the Authorization header to a same-host
// redirect target.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// PeerHTTPClient is the HTTP client ClientDial uses in the daemon: pooled
// connections, and redirects are never followed.
func PeerHTTPClient() *http.Client {
	c := client.HTTP1Client()
	c.CheckRedirect = noRedirects
	return c
}

// LocalOnly wraps the local store's Fetcher for a store without peers: it
// answers everything locally but, like the Router, refuses to fan out a
// read another store proxied here.
func LocalOnly(local Fetcher) Fetcher {
	return FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
		if _, proxied := auth.DelegationFrom(ctx); proxied && req.GetCluster() == FanOut {
			return nil, errProxiedFanOut()
		}
		return local.FetchLogs(ctx, req)
	})
}
