package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// Net is the simulated network. Every node's client traffic goes through
// the http.RoundTripper that Transport returns, which hands each request, in
// memory and on the caller's goroutine, to the real server handler of the
// node the URL names (http://<node name>/...). The gate, the codecs, the
// cluster stamping, the identity rule, idempotent append and the error
// mapping a request meets are the server's own. Faults live here and only
// here. Every fault is scheduled by the harness (a counter the next request
// consumes), never drawn at random inside a call, so a run is a pure
// function of its schedule.
type Net struct {
	trace *Trace

	// Handler returns the handler of the node named host, or nil while that
	// node's process is down (the request is refused, as a closed port is).
	Handler func(host string) http.Handler
	// Advance moves simulated time forward by a round trip's latency.
	Advance func(time.Duration)
	// BeforeDeliver runs before a request reaches host's handler: the
	// target daemon's background flush, which in production runs
	// concurrently.
	BeforeDeliver func(host string)
	// OnPushApplied runs after host answered a PushLogs with success,
	// whether or not the response then reaches the sender (the target's own
	// durability promise).
	OnPushApplied func(host string)
	// Redirect sends requests for a host to another node (the
	// ack-without-storing canary points the target at a black hole).
	Redirect map[string]string

	// Isolated nodes can neither send nor receive: a partition.
	Isolated map[string]bool
	// Latency is how long each round trip takes in virtual time.
	Latency time.Duration
	// DropRequests, DropResponses and DelayRequests are consumed one per
	// request: a dropped request never reaches the target; a dropped
	// response is applied but the caller gets a transport error; a delayed
	// request is held in flight (the caller sees its deadline pass) until
	// Deliver or Lose.
	DropRequests, DropResponses, DelayRequests int

	inflight []heldRequest

	// Counters the properties use.
	Pushes, Applied, Rejected int
	// AmbiguousFailures counts failures after which the target may hold a
	// batch the relay does not know it holds: dropped responses to applied
	// pushes and delayed pushes that were later applied. With
	// non-idempotent batches each may cost at most one duplicate batch.
	AmbiguousFailures int
	// AuthRejections counts 401 and 403 answers (the gate, or the identity
	// rule) to requests from a relay.
	AuthRejections int
}

// heldRequest is a delayed request: what the server will see when it
// finally arrives.
type heldRequest struct {
	from, host string
	peer       string
	req        *http.Request
	body       []byte
}

// Transport is the RoundTripper of node from, whose packets the servers
// see coming from peerAddr.
func (n *Net) Transport(from, peerAddr string) http.RoundTripper {
	return roundTripper{n: n, from: from, peer: peerAddr}
}

// Client is an http.Client over Transport. With no Timeout it makes no
// timers and no goroutines: a request runs to completion on the caller's
// goroutine.
func (n *Net) Client(from, peerAddr string) *http.Client {
	return &http.Client{Transport: n.Transport(from, peerAddr)}
}

// ObserverClient is the harness's own client: its requests reach the real
// handlers from peerAddr but bypass every fault and take no time, so
// checking the world does not change what happens in it.
func (n *Net) ObserverClient(peerAddr string) *http.Client {
	return &http.Client{Transport: roundTripper{n: n, from: "observer", peer: peerAddr, observer: true}}
}

// InFlight is how many delayed requests are still held.
func (n *Net) InFlight() int { return len(n.inflight) }

// The transport's errors reach the relay the way a socket error does:
// connect reports them as unavailable.
var (
	errPartitioned  = errors.New("sim: network partitioned")
	errDropped      = errors.New("sim: request dropped")
	errRefused      = errors.New("sim: connection refused (target down)")
	errResponseLost = errors.New("sim: response lost after the request was applied")
)

type roundTripper struct {
	n          *Net
	from, peer string
	observer   bool
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	n := rt.n
	host := req.URL.Host
	if rt.observer {
		return rt.observe(host, req)
	}
	if to, ok := n.Redirect[host]; ok {
		host = to
	}
	path := req.URL.Path
	push := strings.HasSuffix(path, "/PushLogs")
	if push {
		n.Pushes++
	}
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	if n.Latency > 0 && n.Advance != nil {
		// The round trip takes its time whatever happens to it.
		defer n.Advance(n.Latency)
	}
	switch {
	case n.Isolated[rt.from] || n.Isolated[host]:
		n.trace.Addf("net %s->%s %s: partitioned", rt.from, host, path)
		return nil, errPartitioned
	case n.DropRequests > 0:
		n.DropRequests--
		n.trace.Addf("net %s->%s %s: request dropped", rt.from, host, path)
		return nil, errDropped
	case n.Handler(host) == nil:
		n.trace.Addf("net %s->%s %s: refused (down)", rt.from, host, path)
		return nil, errRefused
	case n.DelayRequests > 0 && push:
		n.DelayRequests--
		n.inflight = append(n.inflight, heldRequest{from: rt.from, host: host, peer: rt.peer, req: req.Clone(context.Background()), body: body})
		n.trace.Addf("net %s->%s %s: held in flight", rt.from, host, path)
		return nil, fmt.Errorf("sim: request held in the network past its deadline: %w", context.DeadlineExceeded)
	}
	rec := n.serve(rt.from, rt.peer, host, req, body)
	ok := rec.Code == http.StatusOK
	n.trace.Addf("net %s->%s %s: %s", rt.from, host, path, outcome(rec))
	if push {
		switch {
		case ok:
			n.Applied++
		case rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden:
			n.AuthRejections++
			n.Rejected++
		default:
			n.Rejected++
		}
	} else if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden {
		n.AuthRejections++
	}
	if ok && n.DropResponses > 0 {
		n.DropResponses--
		if push {
			n.AmbiguousFailures++
		}
		n.trace.Addf("  response lost")
		return nil, errResponseLost
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

func (rt roundTripper) observe(host string, req *http.Request) (*http.Response, error) {
	h := rt.n.Handler(host)
	if h == nil {
		return nil, errRefused
	}
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	resp := handle(h, rt.peer, req, body).Result()
	resp.Request = req
	return resp, nil
}

func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, fmt.Errorf("sim: read request body: %w", err)
	}
	return b, nil
}

// handle runs req through h as a server sees a request arriving from peer.
func handle(h http.Handler, peer string, req *http.Request, body []byte) *httptest.ResponseRecorder {
	sreq := req.Clone(req.Context())
	sreq.Body = io.NopCloser(bytes.NewReader(body))
	sreq.ContentLength = int64(len(body))
	sreq.RemoteAddr = peer
	sreq.RequestURI = req.URL.RequestURI()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, sreq)
	return rec
}

// serve runs one request through host's handler as a server would see it
// arriving from peer.
func (n *Net) serve(from, peer, host string, req *http.Request, body []byte) *httptest.ResponseRecorder {
	if n.BeforeDeliver != nil {
		n.BeforeDeliver(host)
	}
	rec := handle(n.Handler(host), peer, req, body)
	if rec.Code == http.StatusOK && strings.HasSuffix(req.URL.Path, "/PushLogs") && n.OnPushApplied != nil {
		n.OnPushApplied(host)
	}
	return rec
}

// Deliver hands the oldest delayed request to its target, as a packet
// arriving late would. The sender gave up on it long ago.
func (n *Net) Deliver(ctx context.Context) {
	if len(n.inflight) == 0 {
		n.trace.Addf("net deliver: nothing in flight")
		return
	}
	h := n.inflight[0]
	n.inflight = n.inflight[1:]
	if n.Isolated[h.from] || n.Isolated[h.host] || n.Handler(h.host) == nil {
		n.trace.Addf("net deliver %s->%s %s: lost (target unreachable)", h.from, h.host, h.req.URL.Path)
		return
	}
	rec := n.serve(h.from, h.peer, h.host, h.req.WithContext(ctx), h.body)
	if rec.Code == http.StatusOK {
		n.AmbiguousFailures++
		n.Applied++
	}
	n.trace.Addf("net deliver %s->%s %s: %s", h.from, h.host, h.req.URL.Path, outcome(rec))
}

// Lose drops every delayed request (they timed out in the network).
func (n *Net) Lose() {
	if len(n.inflight) > 0 {
		n.trace.Addf("net lose %d in-flight requests", len(n.inflight))
	}
	n.inflight = nil
}

// outcome is a response as one stable trace word: the status, and for an
// error the start of its body (the Connect error code and message).
func outcome(rec *httptest.ResponseRecorder) string {
	if rec.Code == http.StatusOK {
		return "200"
	}
	msg := rec.Body.String()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return fmt.Sprintf("%d %s", rec.Code, strings.TrimSpace(msg))
}
