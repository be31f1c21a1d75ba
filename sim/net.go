package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

// Endpoint is the target side of the simulated network: what the server
// does for a PushLogs carrying producer fields, and for the "applied" query.
// *store.Store satisfies it.
type Endpoint interface {
	Append(ctx context.Context, b store.Batch) (store.Ack, error)
	ProducerApplied(producer string) (seq int64, known bool)
}

// Gate decides whether a request is let in, the way the server's auth
// middleware does; identity is who it was admitted as.
type Gate func(remoteAddr string, h http.Header) (admitted bool, unauthenticated bool, identity string, reason string)

// Net is the simulated network between the source node's relay and the
// target node's store. Every fault is scheduled by the harness (a counter
// the next request consumes), never drawn at random inside a call, so a run
// is a pure function of its schedule.
type Net struct {
	trace *Trace

	// Target returns the target endpoint, or nil while the target process is
	// down.
	Target func() Endpoint
	// Token returns the bearer the source attaches (minted on the source's
	// clock); nil means no Authorization header.
	Token func() (string, error)
	// Gate checks the request on the target's clock; nil admits everything.
	Gate Gate
	// Advance moves simulated time forward by the request's latency.
	Advance func(time.Duration)
	// PeerAddr is the source's transport address as the target sees it.
	PeerAddr string
	// BeforeApply runs before the target applies a request: the target
	// daemon's background flush, which in production runs concurrently.
	BeforeApply func()
	// OnApplied sees every ack the target produced, whether or not the
	// response reached the sender (the target's own durability promise).
	OnApplied func(store.Ack)

	// Partitioned makes every request fail with Unavailable.
	Partitioned bool
	// Latency is how long each round trip takes in virtual time.
	Latency time.Duration
	// DropRequests, DropResponses and DelayRequests are consumed one per
	// request: a dropped request never reaches the target; a dropped response
	// is applied but the caller sees Unavailable; a delayed request is held
	// in flight (the caller sees DeadlineExceeded) until Deliver or Lose.
	DropRequests, DropResponses, DelayRequests int

	// AckWithoutStoring is a canary: the target acks every push without
	// applying it. A harness that does not report loss under it is broken.
	AckWithoutStoring bool

	inflight []relay.Batch

	// Counters the properties use.
	Pushes, Applied, Rejected int
	// AmbiguousFailures counts failures after which the target may hold a
	// batch the relay does not know it holds: dropped responses and delayed
	// requests that were later delivered. With non-idempotent batches each
	// may cost at most one duplicate batch.
	AmbiguousFailures int
	// AuthRejections counts requests the gate refused.
	AuthRejections int
}

// Sink is the relay.Sink the source's forwarder pushes through.
func (n *Net) Sink() relay.Sink { return netSink{n} }

// InFlight is how many delayed requests are still held.
func (n *Net) InFlight() int { return len(n.inflight) }

// Deliver applies the oldest delayed request to the target, as a packet
// arriving late would. The sender gave up on it long ago.
func (n *Net) Deliver(ctx context.Context) {
	if len(n.inflight) == 0 {
		n.trace.Addf("net deliver: nothing in flight")
		return
	}
	b := n.inflight[0]
	n.inflight = n.inflight[1:]
	t := n.target()
	if t == nil || n.Partitioned {
		n.trace.Addf("net deliver %s: lost (target unreachable)", batchString(b))
		return
	}
	ack, err := n.apply(ctx, t, b)
	if err == nil {
		n.AmbiguousFailures++
	}
	n.trace.Addf("net deliver %s: %s", batchString(b), ackString(ack, err))
}

// Lose drops every delayed request (they timed out in the network).
func (n *Net) Lose() {
	if len(n.inflight) > 0 {
		n.trace.Addf("net lose %d in-flight requests", len(n.inflight))
	}
	n.inflight = nil
}

func (n *Net) target() Endpoint {
	if n.Target == nil {
		return nil
	}
	return n.Target()
}

// apply is what the server does with an admitted PushLogs: stamp the
// request's cluster on rows that carry none, then one idempotent Append.
func (n *Net) apply(ctx context.Context, t Endpoint, b relay.Batch) (store.Ack, error) {
	if n.AckWithoutStoring {
		last := b.LastSeq
		return store.Ack{ProducerApplied: last}, nil
	}
	if n.BeforeApply != nil {
		n.BeforeApply()
	}
	rows := make([]store.Row, len(b.Rows))
	for i, r := range b.Rows {
		if r.Cluster == "" {
			r.Cluster = b.Cluster
		}
		rows[i] = r
	}
	ack, err := t.Append(ctx, store.Batch{Rows: rows, Producer: b.Producer, FirstSeq: b.FirstSeq, LastSeq: b.LastSeq})
	if err != nil {
		return store.Ack{}, relay.StoreErrorToConnect(err)
	}
	n.Applied++
	if n.OnApplied != nil {
		n.OnApplied(ack)
	}
	return ack, nil
}

// admit runs the gate and the server's identity-bound write rule: a jwt
// identity of cluster C may push only rows of cluster C (or none).
func (n *Net) admit(cluster string, rows ...store.Row) error {
	h := http.Header{}
	if n.Token != nil {
		tok, err := n.Token()
		if err != nil {
			// The source could not mint: the request goes out without a
			// bearer and the gate decides.
			n.trace.Addf("net mint failed: %v", err)
		} else {
			h.Set("Authorization", "Bearer "+tok)
		}
	}
	if n.Gate == nil {
		return nil
	}
	ok, unauth, identity, reason := n.Gate(n.PeerAddr, h)
	if !ok {
		n.AuthRejections++
		code := connect.CodePermissionDenied
		if unauth {
			code = connect.CodeUnauthenticated
		}
		return connect.NewError(code, fmt.Errorf("denied: %s", reason))
	}
	if identity == "" || isCIDRIdentity(identity) {
		return nil
	}
	if cluster != "" && identity != cluster {
		n.AuthRejections++
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("identity %q may not push cluster %q", identity, cluster))
	}
	for _, r := range rows {
		if r.Cluster != "" && r.Cluster != identity {
			n.AuthRejections++
			return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("identity %q may not push a row of cluster %q (seq %d)", identity, r.Cluster, r.Seq))
		}
	}
	return nil
}

// isCIDRIdentity: a peer admitted by address carries no cluster claim.
func isCIDRIdentity(id string) bool {
	for _, c := range id {
		if c == '/' {
			return true
		}
	}
	return false
}

type netSink struct{ n *Net }

func (s netSink) Push(ctx context.Context, b relay.Batch) (store.Ack, error) {
	n := s.n
	n.Pushes++
	ack, err := s.push(ctx, b)
	n.trace.Addf("net push %s: %s", batchString(b), ackString(ack, err))
	if n.Latency > 0 && n.Advance != nil {
		n.Advance(n.Latency)
	}
	return ack, err
}

func (s netSink) push(ctx context.Context, b relay.Batch) (store.Ack, error) {
	n := s.n
	if n.Partitioned {
		return store.Ack{}, connect.NewError(connect.CodeUnavailable, errors.New("sim: network partitioned"))
	}
	if n.DropRequests > 0 {
		n.DropRequests--
		return store.Ack{}, connect.NewError(connect.CodeUnavailable, errors.New("sim: request dropped"))
	}
	if err := n.admit(b.Cluster, b.Rows...); err != nil {
		n.Rejected++
		return store.Ack{}, err
	}
	if n.DelayRequests > 0 {
		n.DelayRequests--
		n.inflight = append(n.inflight, cloneBatch(b))
		return store.Ack{}, connect.NewError(connect.CodeDeadlineExceeded, errors.New("sim: request delayed past its deadline"))
	}
	t := n.target()
	if t == nil {
		return store.Ack{}, connect.NewError(connect.CodeUnavailable, errors.New("sim: target down"))
	}
	ack, err := n.apply(ctx, t, b)
	if err != nil {
		return store.Ack{}, err
	}
	if n.DropResponses > 0 {
		n.DropResponses--
		n.AmbiguousFailures++
		return store.Ack{}, connect.NewError(connect.CodeUnavailable, errors.New("sim: response lost after apply"))
	}
	return ack, nil
}

func (s netSink) ProducerState(ctx context.Context, producer string) (relay.ProducerState, error) {
	n := s.n
	seq, known, err := s.applied(producer)
	n.trace.Addf("net applied %q: seq=%d known=%v err=%v", producer, seq, known, errString(err))
	return relay.ProducerState{Applied: seq, Known: known, RefusesGaps: true}, err
}

func (s netSink) applied(producer string) (int64, bool, error) {
	n := s.n
	if n.Partitioned {
		return 0, false, connect.NewError(connect.CodeUnavailable, errors.New("sim: network partitioned"))
	}
	if n.DropRequests > 0 {
		n.DropRequests--
		return 0, false, connect.NewError(connect.CodeUnavailable, errors.New("sim: request dropped"))
	}
	if err := n.admit(""); err != nil {
		return 0, false, err
	}
	t := n.target()
	if t == nil {
		return 0, false, connect.NewError(connect.CodeUnavailable, errors.New("sim: target down"))
	}
	if n.AckWithoutStoring {
		return 0, false, nil
	}
	seq, known := t.ProducerApplied(producer)
	return seq, known, nil
}

func cloneBatch(b relay.Batch) relay.Batch {
	b.Rows = append([]store.Row(nil), b.Rows...)
	return b
}

func batchString(b relay.Batch) string {
	return fmt.Sprintf("{producer=%q cluster=%q seq=%d..%d rows=%d}", b.Producer, b.Cluster, b.FirstSeq, b.LastSeq, len(b.Rows))
}

func ackString(a store.Ack, err error) string {
	if err != nil {
		return "err " + errString(err)
	}
	return fmt.Sprintf("ok first=%d last=%d applied=%d", a.First, a.Last, a.ProducerApplied)
}

// errString keeps trace lines stable: the Connect code plus the message.
func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
