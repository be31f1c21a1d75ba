package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

// This file and relayhealth.go are the only places the server touches the
// relay package: they turn finelogd's relay flags into a relay.Forwarder
// over the daemon's own store.

// RelayConfig turns on forwarding to a global finelogd. Address empty: no
// relay goroutine and no egress. Options holds the relay's own tunables
// (BatchRows, InFlight, Backfill from the flags); zero fields take the
// daemon's defaults, then the relay's.
type RelayConfig struct {
	Address   string // --relay-address: the global finelogd's base URL (http:// or https://)
	KeyFile   string // --relay-key-file: cluster key; tokens are minted with identity Cluster
	TokenFile string // --relay-token-file: a static bearer token (re-read on every RPC, so it can be rotated)
	// Audience (--relay-audience) is put in minted tokens, for a target
	// whose jwt layer requires one.
	Audience  string
	StatePath string // --relay-state: the watermark file; seed, dead-letter and producer-id files live beside it
	// PinMaxBytes caps what retention keeps for the relay's unforwarded
	// rows (0 = no cap); see DefaultRelayPinMaxBytes.
	PinMaxBytes int64
	// HealthMaxLagRows (--relay-health-max-lag-rows): /health/relay answers
	// 503 while more rows than this wait to be forwarded (0 = lag alone
	// never makes it unhealthy).
	HealthMaxLagRows int64

	relay.Options

	// TokenTTL is the minted token lifetime (default 1 h; refreshed at 2/3)
	// and RPCTimeout bounds each RPC (default 30 s).
	TokenTTL   time.Duration
	RPCTimeout time.Duration
	// HTTPClient carries the relay's RPCs (default client.HTTP1Client()).
	HTTPClient connect.HTTPClient
}

// DefaultRelayPinMaxBytes is the default cap on unforwarded rows retention
// keeps for the relay: a long target outage must not fill the disk, and
// what is deleted past it is logged and counted, never silent.
const DefaultRelayPinMaxBytes int64 = 64 << 30

// DefaultRelayInFlight is how many batches the daemon's relay keeps in
// flight against a target that refuses overtaking batches (every finelogd
// from the version that reports it): a backlog drains without waiting a
// round trip per batch.
const DefaultRelayInFlight = 4

// relayLinger is how long the daemon's relay lets appends gather after the
// store signals new rows: rows reach the target within about this much of
// being acked locally, and a trickle of single-row appends does not become
// a push and two fsyncs each.
const relayLinger = 100 * time.Millisecond

// relayStore is what the relay needs from the daemon's *store.Store.
type relayStore interface {
	relay.StoreReader
	Changed() <-chan struct{}
	SetPin(name string, seq int64)
	ProducerApplied(producer string) (seq int64, known bool)
}

var _ relayStore = (*store.Store)(nil)

// relayRunner runs the forwarder goroutine.
type relayRunner struct {
	f       *relay.Forwarder
	maxLag  int64
	cancel  context.CancelFunc
	done    chan struct{}
	started bool
}

// relayPins holds the relay's retention pin from the moment the store
// opens: background retention must not delete unforwarded rows in the
// moment before the relay has read its watermark and pinned it.
func relayPins(r RelayConfig) []string {
	if r.Address == "" {
		return nil
	}
	return []string{relay.PinName}
}

// newRelay checks the relay flags that need no store, so a bad
// combination fails before the port is bound.
func (s *Server) newRelay() error {
	r := s.cfg.Relay
	if r.Address == "" {
		if r.KeyFile != "" || r.TokenFile != "" || r.Audience != "" || r.HealthMaxLagRows != 0 || r.Options != (relay.Options{}) {
			return fmt.Errorf("relay flags are set but --relay-address is not: set it or drop the other --relay-* flags")
		}
		return nil
	}
	if s.cfg.Cluster == "" {
		return fmt.Errorf("--relay-address needs --cluster: the relay labels forwarded rows with this cluster's name")
	}
	if r.Audience != "" && r.KeyFile == "" {
		return fmt.Errorf("--relay-audience is set without --relay-key-file: the audience goes into tokens the relay mints from the key (a --relay-token-file token carries its own)")
	}
	if r.HealthMaxLagRows < 0 {
		return fmt.Errorf("--relay-health-max-lag-rows %d: want 0 (lag alone never unhealthy) or more", r.HealthMaxLagRows)
	}
	if err := r.Options.Validate(); err != nil {
		return fmt.Errorf("relay flags: %w", err)
	}
	return nil
}

// selfURLs are the addresses this daemon answers on, so the relay can refuse
// to forward into itself.
func selfURLs(addr net.Addr) []string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return nil
	}
	port := fmt.Sprint(tcp.Port)
	urls := []string{"http://" + tcp.String()}
	if tcp.IP.IsUnspecified() || tcp.IP.IsLoopback() {
		urls = append(urls, "http://127.0.0.1:"+port, "http://localhost:"+port, "http://[::1]:"+port)
	}
	return urls
}

// startRelay builds the relay and fixes its start point (relay.Enable)
// before the server accepts writes, so every row acked from now on is
// forwarded even if the target is not reachable yet; then it runs the
// relay's loop.
func (s *Server) startRelay(ctx context.Context, st logStore) error {
	if s.cfg.Relay.Address == "" {
		return nil
	}
	local, ok := st.(relayStore)
	if !ok {
		return fmt.Errorf("relay: the store does not support relaying (no Scan/SetPin)")
	}
	f, err := s.buildRelay(local)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if err := f.Enable(ctx); err != nil {
		// A corrupt seed or watermark keeps the relay stopped, visibly, in
		// /health/relay; the store still serves. Anything else is a start
		// error: the start point could not be made durable.
		if !relay.StateOf(err).Stopped() {
			return fmt.Errorf("relay: %w", err)
		}
		s.log.Error("relay cannot start; it stays stopped until the file is fixed", "err", err)
	}
	// The relay outlives the request that started the server: it stops
	// only in Close.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rr := &relayRunner{f: f, maxLag: s.cfg.Relay.HealthMaxLagRows, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rr.done)
		if err := f.Run(rctx); err != nil {
			s.log.Error("relay stopped", "err", err)
		}
	}()
	s.relay = rr
	s.log.Info("relay started", "target", s.cfg.Relay.Address, "state", s.cfg.Relay.StatePath)
	return nil
}

func (s *Server) stopRelay() {
	if s.relay == nil {
		return
	}
	s.relay.cancel()
	<-s.relay.done
}

// buildRelay is the daemon's relay: a Forwarder reading st, pushing to the
// --relay-address over Connect with gzip (zstd once the target offers it),
// pinning st's unforwarded rows, and woken by st.Changed. It refuses a
// target that is this daemon itself: at once when the address is one of
// the daemon's own listen URLs, and after the first batch when it reaches
// this store under another name (relay.ErrTargetIsSource).
func (s *Server) buildRelay(st relayStore) (*relay.Forwarder, error) {
	cfg := s.cfg.Relay
	fsys := s.cfg.FS
	if cfg.StatePath == "" {
		return nil, errors.New("--relay-state: the relay needs a watermark path")
	}
	target, err := normalizeURL(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("--relay-address %q: %w", cfg.Address, err)
	}
	for _, self := range s.self {
		if u, err := normalizeURL(self); err == nil && u == target {
			return nil, fmt.Errorf("--relay-address %s is this finelogd itself: relaying a store into itself would forward every row forever", cfg.Address)
		}
	}
	if cfg.KeyFile != "" && cfg.TokenFile != "" {
		return nil, errors.New("--relay-key-file and --relay-token-file are both set: use one")
	}
	token, err := s.relayToken(cfg)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(cfg.StatePath)
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("--relay-state: create %s: %w", dir, err)
	}
	// Make the directory's own entry durable, or a power cut could take
	// the watermark, seed and producer id with it.
	if err := fsys.SyncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("--relay-state: sync %s: %w", filepath.Dir(dir), err)
	}
	producer, err := relay.LoadProducerID(fsys, filepath.Join(dir, "producer"), s.cfg.Cluster)
	if err != nil {
		return nil, err
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = client.HTTP1Client()
	}
	timeout := cfg.RPCTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	em := relay.NewEgressMetrics(s.reg)
	sink := em.Sink(relay.NewClientSink(target, em.Client(httpClient), token, timeout), s.clk)
	opts := cfg.Options
	if opts.InFlight == 0 {
		opts.InFlight = DefaultRelayInFlight
	}
	if opts.Linger == 0 {
		opts.Linger = relayLinger
	}
	return relay.New(relay.Config{
		Source:         relay.StoreSource{Store: st},
		Sink:           sink,
		FS:             fsys,
		Clock:          s.clk,
		StatePath:      cfg.StatePath,
		SeedPath:       filepath.Join(dir, "seed.json"),
		DeadLetterPath: filepath.Join(dir, "dead-letter.jsonl"),
		Target:         target,
		Producer:       producer,
		Cluster:        s.cfg.Cluster,
		Options:        opts,
		Pin:            func(seq int64) { st.SetPin(relay.PinName, seq) },
		Changed:        st.Changed,
		// The producer id is this store's own, so only pushes that looped
		// back into it can make it known here.
		TargetIsSource: func() bool { _, known := st.ProducerApplied(producer); return known },
		Logger:         s.log, // relay tags its lines with component=relay itself
		Registerer:     s.reg,
	})
}

func normalizeURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("want an http:// or https:// URL, got scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("no host")
	}
	if u.User != nil {
		// The URL is logged and shown in /health; credentials belong in
		// --relay-token-file or --relay-key-file.
		return "", errors.New("the URL carries credentials (user:password@): use --relay-token-file or --relay-key-file")
	}
	u.Host = strings.ToLower(u.Host)
	return strings.TrimRight(u.String(), "/"), nil
}

// relayToken returns the bearer token function for the flags, or nil when
// neither credential flag is set (the target may admit by address).
func (s *Server) relayToken(cfg RelayConfig) (func(context.Context) (string, error), error) {
	fsys := s.cfg.FS
	switch {
	case cfg.KeyFile != "":
		secret, err := auth.ReadSecretFile(fsys, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--relay-key-file: %w", err)
		}
		ttl := cfg.TokenTTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		m := auth.NewMinter(secret, s.cfg.Cluster, cfg.Audience, ttl, s.clk)
		// Mint once now so a bad key or cluster label stops the daemon at
		// start instead of failing every push.
		if _, err := m.Token(); err != nil {
			return nil, fmt.Errorf("--relay-key-file: %w", err)
		}
		return func(context.Context) (string, error) { return m.Token() }, nil
	case cfg.TokenFile != "":
		read := func() (string, error) {
			data, err := vfs.ReadFile(fsys, cfg.TokenFile)
			if err != nil {
				return "", fmt.Errorf("read --relay-token-file %s: %w", cfg.TokenFile, err)
			}
			tok := string(bytes.TrimSpace(data))
			if tok == "" {
				return "", fmt.Errorf("--relay-token-file %s is empty", cfg.TokenFile)
			}
			return tok, nil
		}
		if _, err := read(); err != nil {
			return nil, err
		}
		return func(context.Context) (string, error) { return read() }, nil
	default:
		return nil, nil
	}
}
