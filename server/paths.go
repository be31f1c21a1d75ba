package server

import (
	"net/http"
	"strings"

	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
)

// legacyServicePath is the path prefix of the service's former name; the
// existing finelog server still answers it for older clients.
const legacyServicePath = "/iris.logging.LogService/"

// legacyService serves the former service name by rewriting the path to
// the current one. It is mounted behind the gate like the current path.
func legacyService(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, legacyServicePath)
		if !ok {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, withPath(r, "/"+loggingpbconnect.LogServiceName+"/"+rest))
	})
}

// stripForwardedPrefix removes an X-Forwarded-Prefix (finelogd behind a
// proxy that mounts it under a path, e.g. /logs) from the request path, as
// the existing server does. Only when the header is present and the path
// starts with it; routing, and so the gate, then sees the stripped path, so
// the header can reach nothing a request without it could not.
func stripForwardedPrefix(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prefix := strings.TrimRight(r.Header.Get("X-Forwarded-Prefix"), "/")
		if prefix == "" || !strings.HasPrefix(prefix, "/") {
			next.ServeHTTP(w, r)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			next.ServeHTTP(w, r)
			return
		}
		if rest == "" {
			rest = "/"
		}
		next.ServeHTTP(w, withPath(r, rest))
	})
}

// withPath is r with its URL path replaced (a shallow copy: the body and
// context are shared).
func withPath(r *http.Request, path string) *http.Request {
	r2 := r.Clone(r.Context())
	r2.URL.Path = path
	r2.URL.RawPath = ""
	r2.RequestURI = r2.URL.RequestURI()
	return r2
}
