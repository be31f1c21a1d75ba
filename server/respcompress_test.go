package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// headerSpy adds request headers and records the last response's headers.
type headerSpy struct {
	next http.RoundTripper
	add  http.Header
	mu   sync.Mutex
	last http.Header
}

func (s *headerSpy) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range s.add {
		r.Header[k] = v
	}
	resp, err := s.next.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		s.last = resp.Header.Clone()
		s.mu.Unlock()
	}
	return resp, err
}

func (s *headerSpy) encoding() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.Get("Content-Encoding") + s.last.Get("Grpc-Encoding")
}

// A local client reading a large page gets it uncompressed; the same read
// through a proxy (Forwarded, X-Forwarded-For) or from another host gets
// gzip; a push acknowledgement is not compressed. The rows are the same
// whichever way they travel.
func TestResponseCompressionPolicy(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	entries := make([]*loggingpb.LogEntry, 200)
	for i := range entries {
		entries[i] = entry(strings.Repeat("an ordinary log line ", 4))
	}
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/k", Entries: entries}); err != nil {
		t.Fatal(err)
	}
	read := &loggingpb.FetchLogsRequest{Source: "/k", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}
	for _, c := range []struct {
		name   string
		add    http.Header
		grpc   bool
		encode string
	}{
		{"loopback", nil, false, ""},
		{"loopback grpc", nil, true, ""},
		{"x-forwarded-for", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, false, "gzip"},
		{"forwarded", http.Header{"Forwarded": {"for=198.51.100.7"}}, false, "gzip"},
		{"forwarded grpc", http.Header{"Forwarded": {"for=198.51.100.7"}}, true, "gzip"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hc := client.HTTP1Client()
			if c.grpc {
				hc = client.H2CClient()
			}
			spy := &headerSpy{next: hc.Transport, add: c.add}
			hc.Transport = spy
			opts := []client.Option{client.WithRetry(1, 0, 0), client.WithHTTPClient(hc)}
			if c.grpc {
				opts = append(opts, client.WithGRPC())
			}
			cl := client.New(e.http.URL, opts...)
			got, err := cl.Fetch(ctx, read)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Entries) != len(entries) || got.Entries[199].Data != entries[199].Data {
				t.Fatalf("read %d entries, want %d intact", len(got.Entries), len(entries))
			}
			if enc := spy.encoding(); enc != c.encode {
				t.Errorf("a %d-line page came back with encoding %q, want %q", len(got.Entries), enc, c.encode)
			}
			if _, err := cl.Push(ctx, &loggingpb.PushLogsRequest{Key: "/small", Entries: []*loggingpb.LogEntry{entry("x")}}); err != nil {
				t.Fatal(err)
			}
			// gRPC names the negotiated encoding in its headers and
			// marks each message compressed or not, so only the
			// Connect protocol shows the small message going plain.
			if enc := spy.encoding(); enc != "" && !c.grpc {
				t.Errorf("a push acknowledgement came back with encoding %q, want none", enc)
			}
		})
	}
}

func TestLocalPeer(t *testing.T) {
	for _, c := range []struct {
		remote string
		hdr    http.Header
		local  bool
	}{
		{"127.0.0.1:5000", nil, true},
		{"127.8.9.10:5000", nil, true},
		{"[::1]:5000", nil, true},
		{"[::ffff:127.0.0.1]:5000", nil, true},
		{"192.0.2.1:5000", nil, false},
		{"[2001:db8::1]:5000", nil, false},
		{"not an address", nil, false},
		{"127.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, false},
		{"127.0.0.1:5000", http.Header{"Forwarded": {"for=203.0.113.9"}}, false},
	} {
		r := &http.Request{RemoteAddr: c.remote, Header: c.hdr}
		if r.Header == nil {
			r.Header = http.Header{}
		}
		if got := localPeer(r); got != c.local {
			t.Errorf("localPeer(%q, %v) = %v, want %v", c.remote, c.hdr, got, c.local)
		}
	}
}
