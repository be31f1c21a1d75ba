package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/auth"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// FanOut is the cluster value that asks every cluster.
const FanOut = "*"

func errProxiedFanOut() error {
	return connect.NewError(connect.CodeInvalidArgument,
		errors.New(`a proxied read cannot fan out: cluster "*" is refused on a request another store proxied here`))
}

// Defaults for Options fields left zero.
const (
	DefaultMaxInflight = 16
	DefaultPeerTimeout = 10 * time.Second
	// DefaultDeadlineMargin is taken off the caller's deadline before it is
	// passed to a peer, so a peer's late answer still reaches the caller as
	// a named deadline_exceeded instead of the caller's own timeout.
	DefaultDeadlineMargin = 100 * time.Millisecond
	// DelegationTTL is the lifetime of the token minted per proxied call.
	DelegationTTL = 30 * time.Second
)

// Options configures a Router.
type Options struct {
	// Cluster is this store's --cluster (required): the proxying cluster
	// in delegation tokens and the local part of a fan-out.
	Cluster string
	// Local answers reads of this store.
	Local Fetcher
	// PeersFile is the peers file path; Reload re-reads it.
	PeersFile string
	FS        vfs.FS
	Clock     clock.Clock
	Logger    *slog.Logger
	// Registerer receives the finelog_federation_* metrics (nil: none).
	Registerer prometheus.Registerer
	// Dial makes each peer's Fetcher (nil: ClientDial(nil)).
	Dial Dial
	// MaxInflight bounds the peers one fan-out calls at once.
	MaxInflight int
	// PeerTimeout bounds each peer call (a long-poll gets its wait on top).
	PeerTimeout time.Duration
	// DeadlineMargin is taken off the caller's deadline for peer calls.
	DeadlineMargin time.Duration
}

// Router is the Fetcher the server answers FetchLogs with when a peers
// file is configured: proxy if remote, fan out on "*", otherwise the
// local store. It is safe for concurrent use; Reload swaps the peers
// atomically.
type Router struct {
	o     Options
	log   *slog.Logger
	m     *metrics
	peers atomic.Pointer[peerSet]
	// reloadMu serializes Reload (SIGHUP may arrive twice quickly).
	reloadMu sync.Mutex
}

// peerSet is one loaded peers file with a Fetcher per peer.
type peerSet struct {
	cfg     *Peers
	fetcher map[string]Fetcher
}

// New loads the peers file; a bad file is a start error naming the field.
func New(o Options) (*Router, error) {
	if o.Cluster == "" {
		return nil, errors.New("--peers-file needs --cluster: peers address their delegation tokens to it")
	}
	if o.Local == nil {
		return nil, errors.New("federation: no local Fetcher")
	}
	if o.FS == nil {
		o.FS = vfs.OS{}
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dial == nil {
		o.Dial = ClientDial(nil)
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	if o.PeerTimeout <= 0 {
		o.PeerTimeout = DefaultPeerTimeout
	}
	if o.DeadlineMargin <= 0 {
		o.DeadlineMargin = DefaultDeadlineMargin
	}
	r := &Router{o: o, log: o.Logger, m: newMetrics(o.Registerer)}
	set, err := r.load()
	if err != nil {
		return nil, err
	}
	r.peers.Store(set)
	return r, nil
}

func (r *Router) load() (*peerSet, error) {
	cfg, err := LoadPeersFile(r.o.FS, r.o.PeersFile, r.o.Cluster)
	if err != nil {
		return nil, err
	}
	set := &peerSet{cfg: cfg, fetcher: make(map[string]Fetcher, len(cfg.names))}
	for _, name := range cfg.names {
		p := cfg.byName[name]
		set.fetcher[name] = r.o.Dial(p.PeerConfig, r.tokenFor(p))
	}
	return set, nil
}

// Reload re-reads the peers file. On error the peers in use are kept and
// the error (naming the field) is returned for the caller to log.
func (r *Router) Reload() error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	set, err := r.load()
	if err != nil {
		r.log.Error("peers file reload failed; keeping the peers in use", "err", err, "peers", len(r.peers.Load().cfg.names))
		return err
	}
	r.peers.Store(set)
	r.log.Info("peers file reloaded", "path", r.o.PeersFile, "peers", set.cfg.names)
	return nil
}

// Peers lists the peers in use (paths, never keys).
func (r *Router) Peers() []PeerConfig { return r.peers.Load().cfg.Configs() }

// tokenFor returns the bearer source for p: a delegation token minted per
// request (aud = p, sub = the caller here, a short exp, the proxied-read
// claim), or p's static token.
func (r *Router) tokenFor(p *peer) func(ctx context.Context) (string, error) {
	if p.token != nil {
		tok := string(p.token)
		return func(context.Context) (string, error) { return tok, nil }
	}
	key := p.key
	return func(ctx context.Context) (string, error) {
		return auth.MintDelegation(key, r.o.Cluster, p.Cluster, callerOf(ctx), DelegationTTL, r.o.Clock.Now())
	}
}

// callerOf is the caller's identity here, for the delegation token's sub.
func callerOf(ctx context.Context) string {
	if id, ok := auth.IdentityFrom(ctx); ok {
		return id.String()
	}
	return "none"
}

// FetchLogs answers one read: a delegated (already proxied) request
// locally and never further, "*" by fan-out, a peer's name by proxy, and
// anything else locally.
func (r *Router) FetchLogs(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
	if _, proxied := auth.DelegationFrom(ctx); proxied {
		// Loop guard: a read another store proxied here is answered from
		// this store only.
		if req.GetCluster() == FanOut {
			return nil, errProxiedFanOut()
		}
		return r.o.Local.FetchLogs(ctx, req)
	}
	set := r.peers.Load()
	if req.GetCluster() == FanOut {
		return r.fanOut(ctx, set, req)
	}
	p, ok := set.cfg.byName[req.GetCluster()]
	if !ok {
		return r.o.Local.FetchLogs(ctx, req)
	}
	resp, err := r.callPeer(ctx, set, p, req)
	if err == nil && !undecodedOK(ctx) {
		err = decodeAnswer(r.o.Cluster, p, resp)
	}
	if err == nil {
		return resp, nil
	}
	if stale, ok := r.fallback(ctx, p, req, err); ok {
		return stale, nil
	}
	return nil, err
}

// fallback answers a read of p from the local copy when p has
// "fallback": "local" and could not be reached, flagged stale with the
// reason. The copy's seqs are this store's, not the owner's, so its
// position is returned as a copy cursor (negative, see copyCursor): paging
// continues in the copy while the owner is down, and restarts at the
// owner's beginning once it answers again (rows may then be seen twice,
// never skipped). A read that continues from an owner cursor (> 0) cannot
// be continued in the copy, and a long-poll would hand out a snapshot on
// every poll; both get the peer's error instead.
func (r *Router) fallback(ctx context.Context, p *peer, req *loggingpb.FetchLogsRequest, peerErr error) (*loggingpb.FetchLogsResponse, bool) {
	code := connect.CodeOf(peerErr)
	if p.Fallback != FallbackLocal || req.GetWaitMs() > 0 || req.GetCursor() > 0 ||
		(code != connect.CodeUnavailable && code != connect.CodeDeadlineExceeded) || ctx.Err() != nil {
		return nil, false
	}
	local := proto.Clone(req).(*loggingpb.FetchLogsRequest)
	local.Cluster = p.Cluster
	local.Cursor = copyPosition(req.GetCursor())
	local.ClusterCursors = nil
	resp, err := r.o.Local.FetchLogs(ctx, local)
	if err != nil {
		r.log.Warn("fallback to the local copy failed", "peer", p.Cluster, "err", err)
		return nil, false
	}
	r.m.stale.WithLabelValues(p.Cluster).Inc()
	resp.Cursor = copyCursor(resp.GetCursor())
	resp.Clusters = []*loggingpb.ClusterStatus{{
		Cluster: p.Cluster,
		Code:    code.String(),
		Error:   message(peerErr) + "; answered from this store's relayed copy",
		Cursor:  resp.Cursor,
		Stale:   true,
	}}
	return resp, true
}

// copyCursor encodes a position in this store's copy of a peer's rows as a
// cursor the caller hands back: -(pos+1), which no owner seq can be.
func copyCursor(pos int64) int64 { return -pos - 1 }

// copyPosition decodes a copy cursor (an owner cursor, >= 0, has no
// position in the copy: the copy is read from its start).
func copyPosition(cursor int64) int64 {
	if cursor < 0 {
		return -cursor - 1
	}
	return 0
}

// callPeer proxies req to p: a new request built from the message (the
// Fetcher adds only p's token), the caller's deadline minus the margin,
// at most the per-peer timeout plus the request's wait, and a wait cut so
// the peer answers before that deadline. Errors come back mapped by
// peerError.
func (r *Router) callPeer(ctx context.Context, set *peerSet, p *peer, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
	out := proto.Clone(req).(*loggingpb.FetchLogsRequest)
	out.ClusterCursors = nil
	if out.Cursor < 0 {
		// A copy cursor: the owner is back; start over at the owner.
		out.Cursor = 0
	}
	wait := time.Duration(out.GetWaitMs()) * time.Millisecond
	budget := r.o.PeerTimeout + wait
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		margin := min(r.o.DeadlineMargin, left/2)
		budget = min(budget, left-margin)
		if wait > 0 {
			// Leave the peer time to answer an empty page after its wait.
			w := min(wait, budget-margin)
			out.WaitMs = int32(max(w, 0) / time.Millisecond)
		}
	}
	if budget <= 0 {
		err := peerError(r.o.Cluster, p, context.DeadlineExceeded)
		r.m.requests.WithLabelValues(p.Cluster, codeName(err)).Inc()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	start := r.o.Clock.Now()
	resp, err := set.fetcher[p.Cluster].FetchLogs(cctx, out)
	took := r.o.Clock.Now().Sub(start)
	r.m.latency.WithLabelValues(p.Cluster).Observe(took.Seconds())
	rows := 0
	if err == nil {
		rows, err = checkRows(p, resp)
	}
	if err != nil {
		var mapped *connect.Error
		if ctx.Err() != nil {
			mapped = callerGone(p, ctx.Err())
		} else {
			mapped = peerError(r.o.Cluster, p, err)
		}
		r.m.requests.WithLabelValues(p.Cluster, codeName(mapped)).Inc()
		r.log.Debug("proxied read failed", "peer", p.Cluster, "caller", callerOf(ctx), "code", codeName(mapped), "took", took, "err", mapped.Message())
		return nil, mapped
	}
	r.m.requests.WithLabelValues(p.Cluster, "ok").Inc()
	r.log.Debug("proxied read", "peer", p.Cluster, "caller", callerOf(ctx), "rows", rows, "took", took)
	return resp, nil
}

// checkRows refuses an answer with rows of another cluster, or one that
// does not decode: a peer speaks for its own rows only, and a fan-out must
// not count a row twice. Rows still undecoded (answerCodec) are checked in
// their bytes. It returns the number of rows.
func checkRows(p *peer, resp *loggingpb.FetchLogsResponse) (int, error) {
	for _, e := range resp.GetEntries() {
		if e.GetCluster() != p.Cluster {
			return 0, fmt.Errorf("answered with a row of cluster %q (seq %d), not its own", e.GetCluster(), e.GetSeq())
		}
	}
	n, err := checkAnswer(resp.ProtoReflect().GetUnknown(), p.Cluster)
	return n + len(resp.GetEntries()), err
}

// decodeAnswer decodes a pass-through answer for a caller that needs its
// fields; a failure is the peer's (unavailable, naming it).
func decodeAnswer(self string, p *peer, resp *loggingpb.FetchLogsResponse) error {
	if err := Decode(resp); err != nil {
		return peerError(self, p, err)
	}
	return nil
}
