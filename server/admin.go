package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// requireAdmin keeps /metrics and /debug/* to admin identities: a jwt key
// with "admin": true, or a cidr layer not marked "admin": false. Heap
// profiles, goroutine dumps and the command line are an operator's, not
// every cluster's that may push logs.
func requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := callerFrom(r.Context()); !c.admin {
			http.Error(w, fmt.Sprintf("permission denied: %s is not an admin identity; /metrics and /debug/* need a jwt key with \"admin\": true or a cidr layer", c.key),
				http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminWriteTimeout bounds a /metrics or /debug/pprof/* response (other
// than a profile or trace, which get their duration plus profileSlack).
const adminWriteTimeout = 60 * time.Second

// rpcWriteSlack is what an RPC may take beyond its body and long-poll
// wait: the store work and writing the response.
const rpcWriteSlack = 60 * time.Second

// writeWithin bounds a response by a write deadline. Wall clock: it is the
// transport's deadline.
func writeWithin(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
		next.ServeHTTP(w, r)
	})
}

// MaxProfileSeconds bounds ?seconds= of /debug/pprof/profile and trace.
const MaxProfileSeconds = 60

// profileSlack is how long past the profile a response may take to write.
const profileSlack = 30 * time.Second

// boundProfile refuses a profile or trace longer than MaxProfileSeconds and
// bounds the whole response by a write deadline, so a profiling request
// cannot hold a connection (and a CPU profiler) without end.
func boundProfile(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sec := 30 // pprof's own default for profile; trace defaults to 1
		if v := r.FormValue("seconds"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > MaxProfileSeconds {
				http.Error(w, fmt.Sprintf("seconds=%q: want a whole number of seconds in [1, %d]", v, MaxProfileSeconds), http.StatusBadRequest)
				return
			}
			sec = n
		}
		// Wall clock: the transport's deadline, not simulated time.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Duration(sec)*time.Second + profileSlack))
		h(w, r)
	})
}
