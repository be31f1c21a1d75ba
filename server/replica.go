package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/peer"
	"github.com/finelog/finelog/store"
)

// This file is the only place the server touches the peer package: the
// replica port (docs/replica.md).

// PeerConfig configures the replica port. Listen empty and ReplicaOf empty:
// no peer port, no replication (the default).
type PeerConfig struct {
	// Listen is --peer-listen: accept replicas on this address.
	Listen string
	// PSKFile is --peer-psk-file; PSKEnv the FINELOG_PEER_PSK value (the
	// file wins). NextPSKFile is --peer-psk-next-file, the key being rolled
	// in: the acceptor accepts either.
	PSKFile     string
	PSKEnv      auth.Secret
	NextPSKFile string
	// NodeName is --node-name (the daemon defaults it to the hostname).
	NodeName         string
	MaxFrame         int
	HandshakeTimeout time.Duration
	// ReplicaOf is --replica-of HOST:PORT: follow that primary, refuse
	// pushes, serve reads.
	ReplicaOf string
	// MinReplicaAcks is --min-replica-acks: a push is acknowledged only
	// once this many replicas have synced its record.
	MinReplicaAcks int
	// AckTimeout bounds that wait (--replica-ack-timeout); past it the
	// push fails with unavailable and the client retries.
	AckTimeout time.Duration
	// Rand is the nonce source (default crypto/rand.Reader).
	Rand io.Reader
	// DriveLinks: no port is bound and no follow loop runs; the caller
	// (the simulation) accepts, dials and steps the links itself through
	// PeerPrimary and PeerReplica, on its own schedule.
	DriveLinks bool
}

// DefaultReplicaAckTimeout is --replica-ack-timeout's default.
const DefaultReplicaAckTimeout = 10 * time.Second

// promotedName marks a data dir whose store was promoted from replica to
// primary: a restart with --replica-of still set must not follow again.
const promotedName = "promoted.json"

// peerRunner is the replica port's state in the server.
type peerRunner struct {
	cfg     PeerConfig
	psk     peer.PSK
	nextPSK peer.PSK
	stats   *peer.Stats

	primary     *peer.Primary
	serveCancel context.CancelFunc
	serveDone   chan struct{}
	addr        net.Addr

	replica *peer.Replica
	// store is the following store, for its retention to resume on
	// promotion.
	store        *store.Store
	following    atomic.Bool
	followCancel context.CancelFunc
	followDone   chan struct{}
	promoteMu    sync.Mutex
}

// newPeer checks the peer flags and loads the keys, so a missing or short
// PSK stops finelogd before any port is bound.
func (s *Server) newPeer() error {
	c := &s.cfg.Peer
	if c.Listen == "" && c.ReplicaOf == "" {
		if c.PSKFile != "" || c.NextPSKFile != "" || c.MinReplicaAcks != 0 {
			return errors.New("peer flags are set but neither --peer-listen nor --replica-of is: set one or drop the other --peer-* and --min-replica-acks flags")
		}
		return nil
	}
	if c.MinReplicaAcks < 0 {
		return fmt.Errorf("--min-replica-acks %d: want 0 or more", c.MinReplicaAcks)
	}
	if c.MinReplicaAcks > 0 && c.Listen == "" {
		return fmt.Errorf("--min-replica-acks %d needs --peer-listen: replicas connect to the primary's peer port", c.MinReplicaAcks)
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = peer.DefaultMaxFrame
	}
	if c.MaxFrame < peer.MinMaxFrame {
		return fmt.Errorf("--peer-max-frame %d: want at least %d bytes (one store record must fit in a frame)", c.MaxFrame, peer.MinMaxFrame)
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = peer.DefaultHandshakeTimeout
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultReplicaAckTimeout
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	psk, err := peer.LoadPSK(s.cfg.FS, c.PSKFile, string(c.PSKEnv))
	if err != nil {
		return err
	}
	next, err := peer.LoadNextPSK(s.cfg.FS, c.NextPSKFile)
	if err != nil {
		return err
	}
	s.peer = &peerRunner{cfg: *c, psk: psk, nextPSK: next, stats: peer.NewStats(s.reg, s.log.With("component", "peer"))}
	s.registerReplicaMetrics()
	return nil
}

// follows: the store opens as a follower (--replica-of, not promoted), so
// it runs no retention of its own; the floor is the primary's. A data dir
// whose promotion marker cannot be read counts as following: startPeer then
// fails on it anyway.
func (s *Server) follows() bool {
	if s.peer == nil || s.cfg.Peer.ReplicaOf == "" {
		return false
	}
	_, err := s.cfg.FS.Stat(filepath.Join(s.cfg.DataDir, promotedName))
	return err != nil
}

// startPeer binds the peer port and starts following, after the store
// opened.
func (s *Server) startPeer(ctx context.Context, st *store.Store) error {
	pr := s.peer
	if pr == nil {
		return nil
	}
	c := pr.cfg
	cluster, node := peer.NameID(s.cfg.Cluster), peer.NameID(c.NodeName)
	log := s.log.With("component", "peer")
	if c.Listen != "" {
		acc, err := peer.NewAcceptor(peer.AcceptorConfig{
			Cluster: cluster, Node: node, PSK: pr.psk, NextPSK: pr.nextPSK, Rand: c.Rand, Clock: s.clk,
			HandshakeTimeout: c.HandshakeTimeout, MaxFrame: c.MaxFrame, Stats: pr.stats, Defects: s.cfg.Defects.Peer,
		})
		if err != nil {
			return err
		}
		p, err := peer.NewPrimary(peer.PrimaryConfig{Source: peer.StoreSource(st), Acceptor: acc, Clock: s.clk, Log: log, MaxFrame: c.MaxFrame, Defects: s.cfg.Defects.Peer})
		if err != nil {
			return err
		}
		pr.primary = p
		if c.DriveLinks {
			return s.startFollowing(ctx, st)
		}
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			return fmt.Errorf("--peer-listen %s: %w", c.Listen, err)
		}
		pr.addr = ln.Addr()
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		pr.serveCancel, pr.serveDone = cancel, make(chan struct{})
		go func() {
			defer close(pr.serveDone)
			if err := p.Serve(sctx, ln); err != nil {
				s.log.Error("peer port stopped", "err", err)
			}
		}()
		s.log.Info("peer port listening", "addr", ln.Addr().String(), "node", c.NodeName, "min_replica_acks", c.MinReplicaAcks)
	}
	return s.startFollowing(ctx, st)
}

// startFollowing follows --replica-of, unless this data dir was promoted.
func (s *Server) startFollowing(ctx context.Context, st *store.Store) error {
	pr := s.peer
	c := pr.cfg
	cluster, node := peer.NameID(s.cfg.Cluster), peer.NameID(c.NodeName)
	log := s.log.With("component", "peer")
	if c.ReplicaOf == "" {
		return nil
	}
	if data, err := vfs.ReadFile(s.cfg.FS, filepath.Join(s.cfg.DataDir, promotedName)); err == nil {
		// The store opened as a primary (follows), retention included.
		s.log.Warn("this data dir was promoted to primary; ignoring --replica-of (remove the flag, or delete the file and the data dir to follow again)",
			"replica_of", c.ReplicaOf, "file", filepath.Join(s.cfg.DataDir, promotedName), "promotion", string(data))
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", promotedName, err)
	}
	r, err := peer.NewReplica(peer.ReplicaConfig{
		Primary: c.ReplicaOf,
		Dial: func(ctx context.Context) (net.Conn, error) {
			d := net.Dialer{Timeout: c.HandshakeTimeout}
			return d.DialContext(ctx, "tcp", c.ReplicaOf)
		},
		Dialer: peer.DialerConfig{Cluster: cluster, Node: node, PSK: pr.psk, Rand: c.Rand, Clock: s.clk,
			HandshakeTimeout: c.HandshakeTimeout, MaxFrame: c.MaxFrame, Stats: pr.stats, Defects: s.cfg.Defects.Peer},
		Store:   st,
		Clock:   s.clk,
		Log:     log,
		Defects: s.cfg.Defects.Peer,
	})
	if err != nil {
		return err
	}
	if c.DriveLinks {
		pr.replica, pr.store = r, st
		pr.following.Store(true)
		return nil
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pr.replica, pr.store, pr.followCancel, pr.followDone = r, st, cancel, make(chan struct{})
	pr.following.Store(true)
	go func() {
		defer close(pr.followDone)
		r.Run(fctx)
	}()
	s.log.Info("following primary", "primary", c.ReplicaOf, "node", c.NodeName, "last_seq", st.LastSeq())
	return nil
}

func (s *Server) stopPeer() {
	pr := s.peer
	if pr == nil {
		return
	}
	if pr.followCancel != nil {
		pr.followCancel()
		<-pr.followDone
	}
	if pr.serveCancel != nil {
		pr.serveCancel()
		<-pr.serveDone
	}
}

// PeerPrimary is the primary's end of the replica port (nil without
// --peer-listen), for a caller that drives the links (DriveLinks).
func (s *Server) PeerPrimary() *peer.Primary {
	if s.peer == nil {
		return nil
	}
	return s.peer.primary
}

// PeerReplica is the follower (nil without --replica-of, or when the data
// dir was promoted), for a caller that drives the links (DriveLinks).
func (s *Server) PeerReplica() *peer.Replica {
	if s.peer == nil {
		return nil
	}
	return s.peer.replica
}

// Following says whether this server follows a primary now (not yet
// promoted).
func (s *Server) Following() bool { return s.peer != nil && s.peer.following.Load() }

// PeerAddr is the bound peer port address (nil when not listening).
func (s *Server) PeerAddr() net.Addr {
	if s.peer == nil {
		return nil
	}
	return s.peer.addr
}

// refuseIfReplica: a following replica takes no writes; its seqs are the
// primary's.
func (s *Server) refuseIfReplica() error {
	if s.peer == nil || !s.peer.following.Load() {
		return nil
	}
	return connect.NewError(connect.CodeFailedPrecondition,
		fmt.Errorf("this finelogd is a replica of %s and takes no pushes: push to the primary (or promote this replica with 'finelog replica promote')", s.peer.cfg.ReplicaOf))
}

// awaitReplicas holds a push's ack until --min-replica-acks replicas have
// synced it. A batch that appended nothing (a duplicate) waits for all the
// store holds: the original may not have reached a replica yet.
func (s *Server) awaitReplicas(ctx context.Context, st logStore, ack store.Ack) error {
	pr := s.peer
	if pr == nil || pr.primary == nil || pr.cfg.MinReplicaAcks == 0 {
		return nil
	}
	seq := ack.Last
	if seq == 0 {
		seq = st.LastSeq()
	}
	// The timeout runs on the server's clock, like every other wait here,
	// so the simulation decides when it passes.
	err := pr.primary.WaitSynced(ctx, seq, pr.cfg.MinReplicaAcks, pr.cfg.AckTimeout)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return contextError(ctx.Err())
	}
	return connect.NewError(connect.CodeUnavailable,
		fmt.Errorf("the rows are durable here but not yet on --min-replica-acks %d replicas within %s (%v); nothing is lost, retry the push", pr.cfg.MinReplicaAcks, pr.cfg.AckTimeout, err))
}

// replicaHealth is the replica part of /health: role and lag only.
type replicaHealth struct {
	Role       string  `json:"role"`
	Primary    string  `json:"primary,omitempty"`
	Connected  bool    `json:"connected"`
	Replicas   int     `json:"replicas"`
	LagRows    int64   `json:"lag_rows"`
	LagSeconds float64 `json:"lag_seconds"`
}

func (s *Server) replicaHealth() *replicaHealth {
	pr := s.peer
	if pr == nil {
		return nil
	}
	if pr.following.Load() {
		st := pr.replica.Status()
		return &replicaHealth{Role: "replica", Primary: st.Primary, Connected: st.Connected, LagRows: st.LagRows, LagSeconds: st.LagSeconds}
	}
	h := &replicaHealth{Role: "primary"}
	if pr.primary != nil {
		for _, r := range pr.primary.Replicas() {
			h.Replicas++
			h.LagRows = max(h.LagRows, r.LagRows)
			h.LagSeconds = max(h.LagSeconds, r.LagSeconds)
		}
		h.Connected = h.Replicas > 0
	}
	return h
}

func (s *Server) registerReplicaMetrics() {
	lag := func(seconds bool) func() float64 {
		return func() float64 {
			h := s.replicaHealth()
			if seconds {
				return h.LagSeconds
			}
			return float64(h.LagRows)
		}
	}
	s.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "finelog_replica_lag_rows",
			Help: "On a replica: rows the primary has that this store does not. On a primary: the largest lag of a connected replica.",
		}, lag(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "finelog_replica_lag_seconds",
			Help: "Seconds since the (most lagging) replica last held every row its primary had; 0 when caught up.",
		}, lag(true)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "finelog_replicas_connected",
			Help: "On a primary: replicas subscribed on the peer port. On a replica: 1 while its link to the primary is up.",
		}, func() float64 {
			h := s.replicaHealth()
			if h.Role == "replica" {
				if h.Connected {
					return 1
				}
				return 0
			}
			return float64(h.Replicas)
		}),
	)
}

// ReplicaStatus is GET /replica/status.
type ReplicaStatus struct {
	Role    string `json:"role"`
	LastSeq int64  `json:"last_seq"`
	// Node and NodeID name this finelogd (--node-name and the id the
	// handshake carries): a primary lists its replicas by NodeID only.
	Node           string               `json:"node"`
	NodeID         string               `json:"node_id"`
	MinReplicaAcks int                  `json:"min_replica_acks,omitempty"`
	PeerListen     string               `json:"peer_listen,omitempty"`
	Replicas       []peer.ReplicaStatus `json:"replicas,omitempty"`
	Following      *peer.FollowStatus   `json:"following,omitempty"`
}

// replicaAdmin serves /replica/status (GET) and /replica/promote (POST,
// ?force=true to promote while the primary is reachable). It sits behind
// the auth gate like every route but /health.
func (s *Server) replicaAdmin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /replica/status", func(w http.ResponseWriter, r *http.Request) {
		if s.peer == nil {
			adminError(w, http.StatusNotFound, "no replica port configured: start finelogd with --peer-listen or --replica-of")
			return
		}
		writeJSON(w, http.StatusOK, s.replicaStatus())
	})
	mux.HandleFunc("POST /replica/promote", func(w http.ResponseWriter, r *http.Request) {
		force := r.URL.Query().Get("force") == "true"
		code, msg := s.promote(r.Context(), force)
		if code != http.StatusOK {
			adminError(w, code, msg)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"promoted": true, "message": msg, "status": s.replicaStatus()})
	})
	return mux
}

func (s *Server) replicaStatus() ReplicaStatus {
	pr := s.peer
	id := peer.NameID(pr.cfg.NodeName)
	out := ReplicaStatus{Role: "primary", MinReplicaAcks: pr.cfg.MinReplicaAcks,
		Node: pr.cfg.NodeName, NodeID: hex.EncodeToString(id[:])}
	if ref := s.st.Load(); ref != nil {
		out.LastSeq = ref.s.LastSeq()
	}
	if pr.addr != nil {
		out.PeerListen = pr.addr.String()
	}
	if pr.primary != nil {
		out.Replicas = pr.primary.Replicas()
	}
	if pr.following.Load() {
		out.Role = "replica"
		st := pr.replica.Status()
		out.Following = &st
	}
	return out
}

// promote stops following and takes writes. Without force it refuses while
// the primary is reachable: two primaries would both hand out seqs.
func (s *Server) promote(ctx context.Context, force bool) (int, string) {
	pr := s.peer
	if pr == nil || pr.replica == nil {
		return http.StatusConflict, "this finelogd is not a replica (no --replica-of): nothing to promote"
	}
	pr.promoteMu.Lock()
	defer pr.promoteMu.Unlock()
	if !pr.following.Load() {
		return http.StatusOK, "already promoted"
	}
	if !force {
		if why, up := s.primaryReachable(ctx); up {
			return http.StatusConflict, fmt.Sprintf("primary %s is still reachable (%s): stop it first, or promote with --force if you are sure it takes no more writes", pr.cfg.ReplicaOf, why)
		}
	}
	if pr.followCancel != nil {
		pr.followCancel()
		<-pr.followDone
	}
	ref := s.st.Load()
	if ref == nil {
		return http.StatusServiceUnavailable, "finelogd is shutting down"
	}
	last := ref.s.LastSeq()
	marker, _ := json.Marshal(map[string]any{"promoted_at": s.clk.Now().UTC(), "former_primary": pr.cfg.ReplicaOf, "last_seq": last, "forced": force})
	if err := vfs.WriteFileAtomic(s.cfg.FS, filepath.Join(s.cfg.DataDir, promotedName), marker); err != nil {
		// Writes are not taken until the promotion is durable, or a restart
		// with --replica-of would follow again and diverge.
		if pr.cfg.DriveLinks {
			return http.StatusInternalServerError, fmt.Sprintf("promotion not recorded (%v); still following %s", err, pr.cfg.ReplicaOf)
		}
		fctx, cancel := context.WithCancel(context.Background())
		pr.followCancel, pr.followDone = cancel, make(chan struct{})
		go func() {
			defer close(pr.followDone)
			pr.replica.Run(fctx)
		}()
		return http.StatusInternalServerError, fmt.Sprintf("promotion not recorded (%v); still following %s", err, pr.cfg.ReplicaOf)
	}
	pr.following.Store(false)
	pr.store.StopFollowing()
	s.log.Warn("promoted to primary: no longer following; taking writes", "former_primary", pr.cfg.ReplicaOf, "last_seq", last, "forced", force)
	return http.StatusOK, fmt.Sprintf("promoted at seq %d; former primary %s", last, pr.cfg.ReplicaOf)
}

// primaryReachable: the link is up, or a TCP connection to the primary's
// peer port opens within two seconds.
func (s *Server) primaryReachable(ctx context.Context) (string, bool) {
	pr := s.peer
	if st := pr.replica.Status(); st.Connected && s.clk.Now().Sub(st.LastContact) < 5*time.Second {
		return "the replica link is up", true
	}
	if pr.cfg.DriveLinks {
		return "", false // the caller owns the network: the link is all we know
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", pr.cfg.ReplicaOf)
	if err != nil {
		return "", false
	}
	nc.Close()
	return "its peer port accepts connections", true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func adminError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
