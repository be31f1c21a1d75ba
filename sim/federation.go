package sim

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/federation"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/server"
	"github.com/finelog/finelog/store"
)

// The federated world (Config.Federation, FederationNodes): besides the
// relaying pair (east serving its own store and relaying to global), the
// clusters home and west run servers, and home has a peers file naming
// east and west. Its peer calls go through the simulated network, so
// partitions, lost requests and responses, crashes and clock skew (which
// makes a peer refuse home's delegation token) all hit them. A FedRead
// asks home for one cluster (proxied when it is a peer) or for "*" (fan-
// out) and checks the answer against the owners' own answers
// (CheckFederatedRead): exactly the owner's rows for those filters, or a
// ClusterStatus / error naming the cluster it could not reach.

// Cluster names of the federated world.
const (
	FedHome = "home"
	FedWest = "west"
)

const (
	peersPath = "/etc/finelog/peers.json"
	// fedSkipCluster is asked for but configured nowhere: answered from
	// home's own store, like any cluster that is not a peer.
	fedSkipCluster = "north"
)

// FederationNodes is DefaultNodes with east serving its own store, plus
// home (peers east and west) and west.
func FederationNodes() []NodeSpec {
	nodes := DefaultNodes()
	nodes[0].Serves = true
	return append(nodes,
		NodeSpec{Name: FedHome, Cluster: FedHome, Serves: true, Peer: "10.20.31.1:7070"},
		NodeSpec{Name: FedWest, Cluster: FedWest, Serves: true, Peer: "10.20.32.1:7070"},
	)
}

// fedPeers are home's peers, in its peers file's order.
var fedPeers = []string{SourceCluster, FedWest}

// homeKeyPath is the secret home signs delegation tokens for peer with.
func homeKeyPath(peer string) string { return "/etc/finelog/peers/" + peer + ".key" }

// preparePeers writes home's peers file and keys onto its disk (durably:
// they are config, present before the first start).
func (w *World) preparePeers(n *Node) error {
	if !w.cfg.Federation || n.Name != FedHome {
		return nil
	}
	if err := n.FS.MkdirAll("/etc/finelog/peers"); err != nil {
		return err
	}
	var ps []string
	for _, p := range fedPeers {
		if err := vfs.WriteFileAtomic(n.FS, homeKeyPath(p), []byte(clusterKey(FedHome))); err != nil {
			return err
		}
		ps = append(ps, fmt.Sprintf(`{"cluster":%q,"address":%q,"key_file":%q}`, p, relayURL(p), homeKeyPath(p)))
	}
	return vfs.WriteFileAtomic(n.FS, peersPath, []byte(`{"peers":[`+strings.Join(ps, ",")+`]}`))
}

// federationConfig is home's server.Config.Federation. A fan-out asks
// home and both peers at once; the turnstile then lets the peer calls
// through one at a time in peers-file order, so the simulated network
// (driven as if from one goroutine) sees them in a fixed order.
func (w *World) federationConfig(n *Node) server.FederationConfig {
	if !w.cfg.Federation || n.Name != FedHome {
		return server.FederationConfig{}
	}
	dial := w.fanTurns.dial(federation.ClientDial(w.Net.Client(n.Name, n.spec.Peer)))
	if w.cfg.DropPeerRows != "" {
		dial = dropRows(dial, w.cfg.DropPeerRows)
	}
	return server.FederationConfig{PeersFile: peersPath, MaxInflight: 1 + len(fedPeers), Dial: dial}
}

// turnstile orders a fan-out's concurrent peer calls: while order is set,
// a call for a peer waits until every peer before it in order has had
// its call. With no order (a proxied read: one call) calls pass at once.
type turnstile struct {
	mu    sync.Mutex
	cond  *sync.Cond
	order []string
}

// expect makes the next calls wait for order; expect(nil) ends it.
func (t *turnstile) expect(order []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cond == nil {
		t.cond = sync.NewCond(&t.mu)
	}
	t.order = append([]string(nil), order...)
	t.cond.Broadcast()
}

func (t *turnstile) dial(next federation.Dial) federation.Dial {
	return func(p federation.PeerConfig, token func(context.Context) (string, error)) federation.Fetcher {
		f := next(p, token)
		return federation.FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
			t.mu.Lock()
			for len(t.order) > 0 && t.order[0] != p.Cluster && slices.Contains(t.order, p.Cluster) {
				t.cond.Wait()
			}
			ordered := len(t.order) > 0 && t.order[0] == p.Cluster
			t.mu.Unlock()
			resp, err := f.FetchLogs(ctx, req)
			if ordered {
				t.mu.Lock()
				t.order = t.order[1:]
				t.cond.Broadcast()
				t.mu.Unlock()
			}
			return resp, err
		})
	}
}

// dropRows is the federation canary: home's path to peer silently drops
// the first row of every answer.
func dropRows(next federation.Dial, peer string) federation.Dial {
	return func(p federation.PeerConfig, token func(context.Context) (string, error)) federation.Fetcher {
		f := next(p, token)
		if p.Cluster != peer {
			return f
		}
		return federation.FetcherFunc(func(ctx context.Context, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
			resp, err := f.FetchLogs(ctx, req)
			if err == nil {
				err = federation.Decode(resp)
			}
			if err == nil && len(resp.Entries) > 0 {
				resp.Entries = resp.Entries[1:]
			}
			return resp, err
		})
	}
}

// localAppend writes n rows straight into a serving node's store (a local
// writer of that cluster), so home and west have rows of their own.
func (w *World) localAppend(n *Node, rows int) {
	if n.Store == nil {
		w.Trace.Addf("  %s is down", n.Name)
		return
	}
	now := n.Clock.Now()
	batch := make([]store.Row, rows)
	for i := range batch {
		w.nextRow++
		id := w.nextRow
		batch[i] = store.Row{Key: fmt.Sprintf("/%s/job-%d", n.Cluster, id%2), Source: "stdout", Cluster: n.Cluster,
			Data: fmt.Sprintf("%s-row-%06d", n.Cluster, id), EpochMS: now.UnixMilli() + int64(i), Level: int32(id % 6)}
	}
	ack, err := n.Store.Append(w.ctx, store.Batch{Rows: batch})
	w.Trace.Addf("  %s local append %d rows: %s", n.Name, rows, ackString(ack, err))
}

// fedFilters are the filters FedReads draw from (FedRead.N indexes it).
var fedFilters = []*loggingpb.FetchLogsRequest{
	{},
	{Tail: true, MaxLines: 3},
	{Cursor: 2, MaxLines: 4},
	{MinLevel: "warning"},
	{Substring: "row-00"},
	{Source: "/", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX},
}

// fedClusters are what a FedRead may name.
var fedClusters = []string{SourceCluster, FedWest, FedHome, federation.FanOut, fedSkipCluster, TargetName}

func (w *World) fedClient(node string) loggingpbconnect.LogServiceClient {
	// The reader's own hop is the observer's (home's peer calls are the
	// hops under test); it is admitted by address.
	return loggingpbconnect.NewLogServiceClient(w.Net.ObserverClient(readerPeer), relayURL(node))
}

// fedRead asks home for cluster with filters f and checks the answer.
func (w *World) fedRead(cluster string, f int) {
	if !w.cfg.Federation {
		w.Trace.Addf("  no federation in this world")
		return
	}
	home := w.byName[FedHome]
	if home.Server == nil || home.down {
		w.Trace.Addf("  home is down: the caller cannot reach its own store")
		return
	}
	req := proto.Clone(fedFilters[f%len(fedFilters)]).(*loggingpb.FetchLogsRequest)
	req.Cluster = cluster
	if cluster == federation.FanOut {
		w.fanTurns.expect(fedPeers)
	}
	resp, err := w.fedClient(FedHome).FetchLogs(w.ctx, connect.NewRequest(req))
	w.fanTurns.expect(nil)
	var msg *loggingpb.FetchLogsResponse
	if err == nil {
		msg = resp.Msg
	}
	w.FedReads++
	if verr := w.checkFederatedRead(req, msg, err); verr != nil {
		w.violate("federation: %v", verr)
		return
	}
	w.Trace.Addf("  fed read %s %v: %d rows, %s", cluster, req, len(msg.GetEntries()), errString(err))
}

// owner reads q directly from its owner's server, as the reference.
func (w *World) owner(cluster string, q *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
	n := w.byName[cluster]
	if n == nil || n.Server == nil {
		return nil, fmt.Errorf("owner %s has no server", cluster)
	}
	resp, err := w.fedClient(cluster).FetchLogs(w.ctx, connect.NewRequest(q))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// checkFederatedRead is the federation property for one read of home.
func (w *World) checkFederatedRead(req *loggingpb.FetchLogsRequest, resp *loggingpb.FetchLogsResponse, err error) error {
	cluster := req.GetCluster()
	isPeer := false
	for _, p := range fedPeers {
		isPeer = isPeer || p == cluster
	}
	switch {
	case cluster == federation.FanOut:
		if err != nil {
			return fmt.Errorf("fan-out from home failed as a whole: %v", err)
		}
		byCluster := map[string][]*loggingpb.LogEntry{}
		for _, e := range resp.Entries {
			byCluster[e.Cluster] = append(byCluster[e.Cluster], e)
		}
		seen := map[string]bool{}
		for _, st := range resp.Clusters {
			seen[st.Cluster] = true
			if st.Code != "" {
				w.Coverage.FedUnreachable++
				if len(byCluster[st.Cluster]) != 0 || (st.Cluster != FedHome && !strings.Contains(st.Error, "peer "+st.Cluster+" (")) {
					return fmt.Errorf("fan-out from home: cluster %s failed (%s %s) but the answer does not say so cleanly", st.Cluster, st.Code, st.Error)
				}
				continue
			}
			q := proto.Clone(req).(*loggingpb.FetchLogsRequest)
			q.Cluster, q.MaxLines, q.Tail = st.Cluster, 10000, false
			want, err := w.owner(st.Cluster, q)
			if err != nil {
				return fmt.Errorf("reference read of %s: %v", st.Cluster, err)
			}
			if (req.GetMaxLines() != 0 || req.GetTail()) && req.GetCursor() == 0 {
				// A page of the merge: every row it has of this cluster
				// is one of the owner's, none invented or altered.
				for _, e := range byCluster[st.Cluster] {
					if !containsEntry(want.Entries, e) {
						return fmt.Errorf("fan-out from home (%v): cluster %s row seq %d (%q) is not one of the owner's", req, st.Cluster, e.GetSeq(), trim(e.GetData()))
					}
				}
			}
			if req.GetMaxLines() == 0 && !req.GetTail() {
				if !entriesEqual(byCluster[st.Cluster], want.Entries) {
					return fmt.Errorf("fan-out from home (%v): cluster %s answered %d rows, the owner holds %d", req, st.Cluster, len(byCluster[st.Cluster]), len(want.Entries))
				}
				if len(want.Entries) > 0 {
					w.Coverage.FedRowsChecked++
				}
			}
		}
		for _, c := range append([]string{FedHome}, fedPeers...) {
			if !seen[c] {
				return fmt.Errorf("fan-out from home: no status for cluster %s", c)
			}
		}
		return nil
	case isPeer:
		if err != nil {
			code := connect.CodeOf(err)
			if !strings.Contains(err.Error(), "peer "+cluster+" (") || code == connect.CodeInternal || code == connect.CodeUnknown {
				return fmt.Errorf("proxied read of %s: error does not name the peer cleanly: %v", cluster, err)
			}
			w.Coverage.FedUnreachable++
			return nil
		}
		want, err := w.owner(cluster, req)
		if err != nil {
			return fmt.Errorf("reference read of %s: %v", cluster, err)
		}
		if !proto.Equal(resp, want) {
			return fmt.Errorf("proxied read of %s (%v): %d rows, the owner answers %d", cluster, req, len(resp.Entries), len(want.Entries))
		}
		if len(want.Entries) > 0 {
			w.Coverage.FedRowsChecked++
		}
		return nil
	default:
		if err != nil {
			return fmt.Errorf("local read at home of %q failed: %v", cluster, err)
		}
		return nil
	}
}

func entriesEqual(a, b []*loggingpb.LogEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func containsEntry(list []*loggingpb.LogEntry, e *loggingpb.LogEntry) bool {
	for _, x := range list {
		if proto.Equal(x, e) {
			return true
		}
	}
	return false
}
