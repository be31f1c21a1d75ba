package server

import (
	"net/http"
	"net/netip"
)

// Response compression policy for the Connect/gRPC service.
//
// A 1000-line tail is a ~200 KB message. Compressing it is worth its CPU
// across a network, where it shrinks to ~45 KB, and worth nothing on
// loopback, where gzip at the default level was the largest single cost of
// the read after the store itself (about 1.2 ms of a 6 ms tail). So:
//
//   - a request from a loopback address with no Forwarded or
//     X-Forwarded-For header (a local client, not a reverse proxy relaying
//     a remote one) gets an uncompressed response: its Accept-Encoding
//     lists are dropped before Connect negotiates;
//   - everyone else gets gzip at the fastest level (half the CPU of the
//     default level, ~8% more bytes) or zstd when they accept it;
//   - responses under respCompressMinBytes are never compressed (a push
//     acknowledgement is a few bytes; gzip only adds its header).
//
// Request bodies are unaffected: a client may still send gzip or zstd.

// respCompressMinBytes is the smallest response message worth compressing.
const respCompressMinBytes = 1024

// acceptEncodingHeaders are the headers in which the Connect unary,
// Connect streaming and gRPC protocols list the response compressions a
// client accepts.
var acceptEncodingHeaders = []string{"Accept-Encoding", "Connect-Accept-Encoding", "Grpc-Accept-Encoding"}

// responseCompression applies the policy above to the service handler.
func responseCompression(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if localPeer(r) {
			for _, h := range acceptEncodingHeaders {
				r.Header.Del(h)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// localPeer reports whether the request comes straight from this machine:
// a loopback peer address and no sign of a proxy in front.
func localPeer(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return false
	}
	return r.Header.Get("Forwarded") == "" && r.Header.Get("X-Forwarded-For") == ""
}
