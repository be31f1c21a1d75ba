package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/federation"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
)

// This file is the only place the server touches the federation package.

// FederationConfig turns on federated reads. PeersFile empty: FetchLogs
// answers from the local store only (proxied reads from other stores are
// still served, under DelegationGate's rules).
type FederationConfig struct {
	PeersFile string
	// MaxInflight bounds the peers one fan-out asks at once (0 = 16).
	MaxInflight int
	// PeerTimeout bounds each peer call, a long-poll's wait on top (0 = 10 s).
	PeerTimeout time.Duration
	// Dial replaces the Go client for peer calls (the simulation's
	// in-memory transport); nil in the daemon.
	Dial federation.Dial
}

// newFederation builds the FetchLogs path: the local store, behind the
// federation Router when a peers file is configured.
func (s *Server) newFederation() error {
	local := localReads{s}
	fc := s.cfg.Federation
	if fc.PeersFile == "" {
		if fc.MaxInflight != 0 || fc.PeerTimeout != 0 {
			return errors.New("federation flags are set but --peers-file is not: set it or drop --federation-max-inflight and --federation-peer-timeout")
		}
		s.fetchPath = federation.LocalOnly(local)
		return nil
	}
	if fc.MaxInflight < 0 {
		return fmt.Errorf("--federation-max-inflight %d: want 0 (the default, %d) or more", fc.MaxInflight, federation.DefaultMaxInflight)
	}
	if fc.PeerTimeout < 0 {
		return fmt.Errorf("--federation-peer-timeout %v: want 0 (the default, %v) or more", fc.PeerTimeout, federation.DefaultPeerTimeout)
	}
	r, err := federation.New(federation.Options{
		Cluster:     s.cfg.Cluster,
		Local:       local,
		PeersFile:   fc.PeersFile,
		FS:          s.cfg.FS,
		Clock:       s.clk,
		Logger:      s.log.With("component", "federation"),
		Registerer:  s.reg,
		Dial:        fc.Dial,
		MaxInflight: fc.MaxInflight,
		PeerTimeout: fc.PeerTimeout,
	})
	if err != nil {
		return err
	}
	s.fed = r
	s.fetchPath = r
	s.log.Info("federation peers loaded", "path", fc.PeersFile, "peers", len(r.Peers()))
	return nil
}

// ReloadPeers re-reads the peers file (SIGHUP). A bad file is logged and
// returned, and the peers in use are kept.
func (s *Server) ReloadPeers() error {
	if s.fed == nil {
		return errors.New("no --peers-file configured")
	}
	return s.fed.Reload()
}

// delegationGate applies the proxied-read rules to every gated route:
// a delegation token must be addressed to this store's cluster and may
// reach FetchLogs only; its request is then never proxied again.
func (s *Server) delegationGate(next http.Handler) http.Handler {
	served := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "finelog_federation_proxied_reads_served_total",
		Help: "Proxied reads other stores made here and this store admitted, by proxying cluster.",
	}, []string{"by"})
	s.reg.MustRegister(served)
	return auth.DelegationGate(auth.DelegationGateOptions{
		Cluster:    s.cfg.Cluster,
		Paths:      []string{loggingpbconnect.LogServiceFetchLogsProcedure},
		Logger:     s.log.With("component", "auth"),
		Served:     func(by string) { served.WithLabelValues(by).Inc() },
		Registerer: s.reg,
		Clock:      s.clk,
	})(next)
}

// readContext lets a proxied answer pass through undecoded when the
// response will be written as binary protobuf (Connect, gRPC and gRPC-Web
// with proto), the codec that writes its bytes back verbatim. JSON callers
// get decoded answers.
func readContext(ctx context.Context, h http.Header) context.Context {
	if strings.Contains(strings.ToLower(h.Get("Content-Type")), "json") {
		return ctx
	}
	return federation.WithUndecodedAnswers(ctx)
}

// scopedRead applies the caller's read scope to a FetchLogs before the
// federation Router sees it: a caller scoped to some clusters may proxy
// only to those, and may not fan out (that reads every cluster).
func scopedRead(c caller, msg *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsRequest, error) {
	if c.readAll {
		return msg, nil
	}
	if msg.GetCluster() == federation.FanOut {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
			"identity %s may read only clusters %s: a fan-out (cluster \"*\") reads every cluster", c.key, strings.Join(c.readClusters, ", ")))
	}
	cluster, err := readCluster(c, msg.GetCluster())
	if err != nil {
		return nil, err
	}
	if cluster == msg.GetCluster() {
		return msg, nil
	}
	out := proto.Clone(msg).(*loggingpb.FetchLogsRequest)
	out.Cluster = cluster
	return out, nil
}
