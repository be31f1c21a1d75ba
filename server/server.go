// Package server wires the store, auth and relay behind one http.Handler:
// the Connect LogService (Connect, gRPC and gRPC-Web, proto or JSON, over
// HTTP/1.1 and h2c on one port), /metrics, /debug/pprof and an open /health.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/finelog/finelog/federation"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/internal/wirecompress"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxRequestBytes = 32 << 20
	// DefaultMaxInflightRequestBytes is twice the default request limit:
	// two largest requests, or hundreds of typical ones, at once.
	DefaultMaxInflightRequestBytes = 2 * DefaultMaxRequestBytes
	// inflightWait is how long a request waits for its share of the
	// in-flight limit before it is refused as busy.
	inflightWait   = 5 * time.Second
	DefaultMaxWait = 30 * time.Second
	// DefaultRequestBodyTimeout lets a largest (32 MiB) body arrive at
	// about 0.5 MiB/s.
	DefaultRequestBodyTimeout = 60 * time.Second
	DefaultShutdownTimeout    = 30 * time.Second
)

// Config is everything the daemon decides. Effects (FS, Clock, Logger) are
// injected so tests run the same server on an in-memory FS.
type Config struct {
	DataDir        string
	Cluster        string
	RetentionAge   time.Duration
	RetentionBytes int64
	MemtableBytes  int64

	// AuthPolicy is the FINELOG_AUTH_POLICY value; AuthPolicyFile the
	// --auth-policy-file path. Neither set: loopback peers only.
	AuthPolicy     string
	AuthPolicyFile string

	// MaxRequestBytes caps a request body (after decompression); larger
	// requests get resource_exhausted naming the limit.
	MaxRequestBytes int64
	// MaxInflightRequestBytes caps the request bytes held at once across
	// all requests, charged as they arrive (after decompression); one
	// identity holds at most MaxRequestBytes of it. Past it requests wait,
	// then get a retryable resource_exhausted.
	MaxInflightRequestBytes int64
	// RequestBodyTimeout bounds how long a request body may take to
	// arrive (0 = DefaultRequestBodyTimeout); past it the request is dropped
	// and its share of the in-flight budget freed.
	RequestBodyTimeout time.Duration
	// MaxProducersPerIdentity caps the producers one identity keeps
	// active (0 = DefaultMaxProducersPerIdentity).
	MaxProducersPerIdentity int
	// MaxReadsPerIdentity caps the FetchLogs store scans one identity runs
	// at once (0 = DefaultMaxReadsPerIdentity).
	MaxReadsPerIdentity int
	// MaxLongPolls and MaxLongPollsPerIdentity cap parked long-polls
	// (0 = the defaults); past them a long-poll answers at once.
	MaxLongPolls            int
	MaxLongPollsPerIdentity int
	// MaxConnections and MaxConnectionsPerPeer cap open connections, in
	// all and per peer address (0 = the defaults). Run enforces them.
	MaxConnections        int
	MaxConnectionsPerPeer int
	// MaxWait caps a FetchLogs long-poll (wait_ms).
	MaxWait time.Duration
	// ShutdownTimeout bounds how long graceful shutdown waits for
	// in-flight requests.
	ShutdownTimeout time.Duration

	Relay      RelayConfig
	Peer       PeerConfig
	Federation FederationConfig

	ObjectStore ObjectStoreConfig

	// Defects is for the simulation's canaries only (see Defects).
	Defects Defects

	FS     vfs.FS
	Clock  clock.Clock
	Logger *slog.Logger
}

// logStore is the part of *store.Store the server uses.
type logStore interface {
	Append(ctx context.Context, b store.Batch) (store.Ack, error)
	Fetch(ctx context.Context, q store.Query) (store.Result, error)
	LastSeq() int64
	Changed() <-chan struct{}
	ProducerApplied(producer string) (int64, bool)
	Stats() store.Stats
	Close() error
}

type state int32

const (
	stateStarting state = iota
	stateReady
	stateStopping
	stateStopped
)

func (s state) String() string {
	switch s {
	case stateStarting:
		return "starting"
	case stateReady:
		return "ready"
	case stateStopping:
		return "stopping"
	default:
		return "stopped"
	}
}

// Server is one finelogd.
type Server struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	reg     *prometheus.Registry
	m       *metrics
	handler http.Handler

	state    atomic.Int32
	st       atomic.Pointer[storeRef]
	stopping chan struct{} // closed when shutdown begins: long-polls return
	stopOnce sync.Once

	// onPark, when set (tests), is called each time a long-poll starts
	// waiting, so a test can act exactly then instead of sleeping.
	onPark func()

	// ownsNamespace reports whether a producer namespace belongs to a jwt
	// key of the policy (see tenancy.go).
	ownsNamespace func(cluster string) bool
	producers     *producerBook
	intake        *intake
	reads         *slots // concurrent store scans per identity
	longPolls     *slots // parked long-polls, in all and per identity

	fetchPath federation.Fetcher // FetchLogs: the local store, or the federation Router around it
	fed       *federation.Router // nil without a peers file

	relay  *relayRunner // nil when no relay is configured
	peer   *peerRunner  // nil when no replica port is configured
	bucket objstore.Bucket
	tier   *tierRunner // nil without an object store
	self   []string    // this daemon's own URLs (the relay refuses them as a target)
}

type storeRef struct{ s logStore }

// New validates cfg, loads the auth policy and checks the data directory is
// writable, so a bad start fails before the port is bound. It does not
// open the store: Open or Run does.
func New(cfg Config) (*Server, error) {
	if cfg.FS == nil {
		cfg.FS = vfs.OS{}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("data dir is required")
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxInflightRequestBytes <= 0 {
		cfg.MaxInflightRequestBytes = max(DefaultMaxInflightRequestBytes, cfg.MaxRequestBytes)
	}
	if cfg.MaxInflightRequestBytes < cfg.MaxRequestBytes {
		return nil, fmt.Errorf("%w (%d < %d)", errInflightConfig, cfg.MaxInflightRequestBytes, cfg.MaxRequestBytes)
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.RequestBodyTimeout <= 0 {
		cfg.RequestBodyTimeout = DefaultRequestBodyTimeout
	}
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&cfg.MaxReadsPerIdentity, DefaultMaxReadsPerIdentity},
		{&cfg.MaxLongPolls, DefaultMaxLongPolls},
		{&cfg.MaxLongPollsPerIdentity, DefaultMaxLongPollsPerIdentity},
		{&cfg.MaxConnections, DefaultMaxConnections},
		{&cfg.MaxConnectionsPerPeer, DefaultMaxConnectionsPerPeer},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxProducersPerIdentity <= 0 {
		cfg.MaxProducersPerIdentity = DefaultMaxProducersPerIdentity
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Relay.Address != "" && cfg.Relay.StatePath == "" {
		cfg.Relay.StatePath = filepath.Join(cfg.DataDir, "relay", "state.json")
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		clk:       cfg.Clock,
		reg:       prometheus.NewRegistry(),
		stopping:  make(chan struct{}),
		producers: newProducerBook(cfg.MaxProducersPerIdentity),
		reads:     newSlots(0, cfg.MaxReadsPerIdentity, cfg.Clock),
		longPolls: newSlots(cfg.MaxLongPolls, cfg.MaxLongPollsPerIdentity, cfg.Clock),
	}
	if err := checkWritable(cfg.FS, cfg.DataDir); err != nil {
		return nil, err
	}
	bucket, err := openBucket(cfg.FS, cfg.ObjectStore)
	if err != nil {
		return nil, err
	}
	s.bucket = bucket
	gate, err := s.loadAuth()
	if err != nil {
		return nil, err
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.m = newMetrics(s.reg, s)
	if err := s.newRelay(); err != nil {
		return nil, err
	}
	if err := s.newPeer(); err != nil {
		return nil, err
	}
	if err := s.newFederation(); err != nil {
		return nil, err
	}
	s.handler = s.routes(gate)
	return s, nil
}

// checkWritable creates the data dir and a probe file in it, so an
// unwritable directory is a clear start error, not a failed first push.
func checkWritable(fsys vfs.FS, dir string) error {
	if err := fsys.MkdirAll(dir); err != nil {
		return fmt.Errorf("data dir %s: cannot create it: %w", dir, err)
	}
	probe := filepath.Join(dir, ".write-probe")
	f, err := fsys.Create(probe)
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	f.Close()
	if err := fsys.Remove(probe); err != nil {
		return fmt.Errorf("data dir %s: cannot remove probe file: %w", dir, err)
	}
	return nil
}

func (s *Server) routes(gate gate) http.Handler {
	path, svc := loggingpbconnect.NewLogServiceHandler(&logService{s: s},
		connect.WithReadMaxBytes(int(s.cfg.MaxRequestBytes)),
		connect.WithCodec(pushCodec{}),
		// gzip and zstd through klauspost/compress: relayed batches and
		// most remote clients send one of them. Responses follow the
		// policy in respcompress.go.
		connect.WithHandlerOptions(wirecompress.HandlerOptions()...),
		connect.WithCompressMinBytes(respCompressMinBytes),
		connect.WithInterceptors(s.m.interceptor()),
	)
	gated := http.NewServeMux()
	limit := newInflightLimit(s.cfg.MaxInflightRequestBytes, s.cfg.MaxRequestBytes, inflightWait, s.m.busy.Inc)
	s.intake = newIntake(limit, s.cfg.MaxRequestBytes, s.cfg.RequestBodyTimeout, s.cfg.RequestBodyTimeout+s.cfg.MaxWait+rpcWriteSlack)
	rpc := s.m.countInFlight(s.intake.wrap(responseCompression(svc)))
	gated.Handle(path, rpc)
	gated.Handle(legacyServicePath, legacyService(rpc))
	s.ingestRoutes(gated, func(h http.Handler) http.Handler { return s.m.countInFlight(s.intake.wrap(h)) })
	gated.Handle("/metrics", requireAdmin(writeWithin(adminWriteTimeout, promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))))
	gated.Handle("/replica/", requireAdmin(s.replicaAdmin()))
	gated.Handle("/debug/pprof/", requireAdmin(writeWithin(adminWriteTimeout, http.HandlerFunc(pprof.Index))))
	gated.Handle("/debug/pprof/cmdline", requireAdmin(writeWithin(adminWriteTimeout, http.HandlerFunc(pprof.Cmdline))))
	gated.Handle("/debug/pprof/profile", requireAdmin(boundProfile(pprof.Profile)))
	gated.Handle("/debug/pprof/symbol", requireAdmin(writeWithin(adminWriteTimeout, http.HandlerFunc(pprof.Symbol))))
	gated.Handle("/debug/pprof/trace", requireAdmin(boundProfile(pprof.Trace)))

	root := http.NewServeMux()
	if s.cfg.Defects.UngatedPprof {
		root.HandleFunc("/debug/pprof/", pprof.Index)
	}
	root.HandleFunc("/health", s.health)
	root.HandleFunc("/health/relay", s.healthRelay)
	root.Handle("/", gate(s.delegationGate(gated)))
	return stripForwardedPrefix(root)
}

// Handler is the server's single HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry is the server's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Open opens the store (replaying its WAL) and starts the relay; the
// server answers RPCs once it returns nil.
func (s *Server) Open(ctx context.Context) error {
	dir := filepath.Join(s.cfg.DataDir, "store")
	storeFS, err := s.openTier(ctx, dir)
	if err != nil {
		return err
	}
	st, err := store.Open(store.Options{
		FS:             storeFS,
		Clock:          s.clk,
		Dir:            dir,
		MemtableBytes:  s.cfg.MemtableBytes,
		RetentionAge:   s.cfg.RetentionAge,
		RetentionBytes: s.cfg.RetentionBytes,
		Background:     true,
		Following:      s.follows(),
		Logger:         s.log.With("component", "store"),
		Registerer:     s.reg,
		PinMaxBytes:    s.cfg.Relay.PinMaxBytes,
		Pins:           relayPins(s.cfg.Relay),
		OnPinnedLoss: func(pin string, first, last int64) {
			// The relay counts the gap when it reaches it
			// (finelog_relay_source_gap_rows_total); this is the operator's first word.
			s.log.Error("retention deleted rows the relay had not forwarded: relay pin byte cap exceeded",
				"pin", pin, "first_seq", first, "last_seq", last, "cap_bytes", s.cfg.Relay.PinMaxBytes)
		},
	})
	var locked *vfs.LockedError
	if errors.As(err, &locked) {
		// Name the --data-dir the operator typed, not the store's subdir.
		who := "pid unknown"
		if locked.PID > 0 {
			who = fmt.Sprintf("pid %d", locked.PID)
		}
		return fmt.Errorf("data dir %s is in use by another finelogd (%s): stop it first, or use another --data-dir (lock file %s): %w",
			s.cfg.DataDir, who, locked.Path, store.ErrDirInUse)
	}
	if err != nil {
		return fmt.Errorf("open store in %s: %w", dir, err)
	}
	if err := s.ServeStore(ctx, st); err != nil {
		st.Close()
		return err
	}
	return nil
}

// ServeStore is Open with a store the caller opened and whose lifecycle it
// owns: the simulation opens stores with background work off, steps their
// flushes itself and crashes them with Abandon. It starts the relay, if one
// is configured, and then the server answers RPCs. Close closes st.
func (s *Server) ServeStore(ctx context.Context, st *store.Store) error {
	s.st.Store(&storeRef{st})
	s.startTier()
	if err := s.startRelay(ctx, st); err != nil {
		if s.tier != nil {
			s.tier.close(0)
		}
		s.st.Store(nil)
		return err
	}
	if err := s.startPeer(ctx, st); err != nil {
		s.stopRelay()
		if s.tier != nil {
			s.tier.close(0)
		}
		s.st.Store(nil)
		return err
	}
	s.state.Store(int32(stateReady))
	return nil
}

// store returns the open store, or an unavailable error while starting or
// after close.
func (s *Server) store() (logStore, error) {
	switch state(s.state.Load()) {
	case stateReady:
		return s.st.Load().s, nil
	case stateStarting:
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("finelogd is starting (recovering the store); retry shortly"))
	default:
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("finelogd is shutting down"))
	}
}

// Close stops the relay and closes the store (flush + sync). Call it after
// the HTTP server stopped taking requests; Run does this itself.
func (s *Server) Close() error {
	s.beginStop()
	s.stopRelay()
	s.stopPeer()
	ref := s.st.Swap(nil)
	s.state.Store(int32(stateStopped))
	if ref == nil {
		return nil
	}
	if err := ref.s.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	if s.tier != nil {
		if err := s.tier.close(s.cfg.ShutdownTimeout); err != nil {
			return fmt.Errorf("object store: %w", err)
		}
	}
	return nil
}

func (s *Server) beginStop() {
	s.stopOnce.Do(func() {
		if state(s.state.Load()) != stateStopped {
			s.state.Store(int32(stateStopping))
		}
		close(s.stopping)
	})
}

// Run serves on ln until ctx is done, then shuts down gracefully: stop
// accepting, let in-flight requests finish (long-polls return at once),
// stop the relay, close the store. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
	}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetUnencryptedHTTP2(true)

	ln = newCapListener(ln, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerPeer, s.m.connRefused.Inc)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	s.self = selfURLs(ln.Addr())

	if err := s.Open(ctx); err != nil {
		hs.Close()
		<-served
		return err
	}
	s.log.Info("finelogd ready", "addr", ln.Addr().String(), "data_dir", s.cfg.DataDir, "cluster", s.cfg.Cluster)

	select {
	case <-ctx.Done():
	case err := <-served:
		s.Close()
		return fmt.Errorf("http server: %w", err)
	}
	s.log.Info("shutting down: finishing in-flight requests")
	s.beginStop()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	shutErr := hs.Shutdown(sctx)
	<-served
	if shutErr != nil {
		s.log.Warn("in-flight requests did not finish in time; closing anyway", "timeout", s.cfg.ShutdownTimeout)
		hs.Close()
	}
	if err := s.Close(); err != nil {
		return err
	}
	s.log.Info("finelogd stopped cleanly")
	return nil
}

// healthStatus is the /health body.
type healthStatus struct {
	Status  string         `json:"status"`
	Cluster string         `json:"cluster,omitempty"`
	LastSeq int64          `json:"last_seq"`
	Relay   *relayHealth   `json:"relay,omitempty"`
	Replica *replicaHealth `json:"replica,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// health is open (no credentials): load balancers and systemd probe it. It
// says only whether the server serves reads and writes, never anything
// secret; /health/relay says whether the relay forwards.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	st := state(s.state.Load())
	h := healthStatus{Status: st.String(), Cluster: s.cfg.Cluster}
	code := http.StatusServiceUnavailable
	if st == stateReady {
		code = http.StatusOK
		if ref := s.st.Load(); ref != nil {
			h.LastSeq = ref.s.LastSeq()
		}
		// The relay's state is shown, but a stopped relay does not make
		// this store unable to serve: /health/relay answers for it.
		h.Relay = s.relayHealth()
		h.Replica = s.replicaHealth()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(h)
}
