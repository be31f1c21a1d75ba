package relay

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// DaemonConfig is what finelogd's flags give the relay. NewForStore turns
// it into a Forwarder over the daemon's own store.
type DaemonConfig struct {
	Address   string // --relay-address: the global finelogd's base URL (http:// or https://)
	KeyFile   string // --relay-key-file: cluster key; tokens are minted with identity Cluster
	TokenFile string // --relay-token-file: a static bearer token (re-read on every RPC, so it can be rotated)
	StatePath string // --relay-state: the watermark file; dead-letter and producer-id files live beside it
	BatchRows int    // --relay-batch-rows (default 5000)
	InFlight  int    // --relay-in-flight (default DaemonInFlight)
	Backfill  bool   // --relay-backfill
	Cluster   string // --cluster: this cluster's name
	// Audience is put in minted tokens when the target's jwt layer
	// requires one.
	Audience string

	TokenTTL   time.Duration      // minted token lifetime (default 1 h; refreshed at 2/3)
	RPCTimeout time.Duration      // per-RPC timeout (default 30 s)
	HTTPClient connect.HTTPClient // default client.HTTP1Client()

	FS         vfs.FS      // default vfs.OS{}
	Clock      clock.Clock // default clock.Real{}
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// LocalStore is what the relay needs from the daemon's *store.Store.
type LocalStore interface {
	StoreReader
	Changed() <-chan struct{}
	SetPin(name string, seq int64)
	ProducerApplied(producer string) (seq int64, known bool)
}

// DaemonLinger is how long the daemon's relay lets appends gather after the
// store signals new rows: rows reach the target within about this much of
// being acked locally, and a trickle of single-row appends does not become
// a push and two fsyncs each.
const DaemonLinger = 100 * time.Millisecond

// DaemonInFlight is how many batches the daemon's relay keeps in flight
// against a target that refuses overtaking batches (every finelogd from the
// version that reports it): a backlog drains without waiting a round trip
// per batch.
const DaemonInFlight = 4

// PinName is the retention pin the relay holds on its source store.
const PinName = "relay"

// NewForStore builds the daemon's relay: a Forwarder reading st, pushing to
// cfg.Address over Connect with gzip, pinning st's unforwarded rows, and
// woken by st.Changed. The caller runs it with `go f.Run(ctx)` and cancels
// ctx to stop it. It refuses a target that is this daemon itself: at once
// when the address is one of selfURLs (the daemon's own listen URLs), and
// after the first batch when it reaches this store under another name
// (ErrTargetIsSource). A cluster without a name is refused too.
func NewForStore(st LocalStore, cfg DaemonConfig, selfURLs ...string) (*Forwarder, error) {
	if cfg.FS == nil {
		cfg.FS = vfs.OS{}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Cluster == "" {
		return nil, errors.New("--relay-address needs --cluster: the relay labels forwarded rows with this cluster's name")
	}
	if cfg.StatePath == "" {
		return nil, errors.New("--relay-state: the relay needs a watermark path")
	}
	target, err := normalizeURL(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("--relay-address %q: %w", cfg.Address, err)
	}
	for _, self := range selfURLs {
		if s, err := normalizeURL(self); err == nil && s == target {
			return nil, fmt.Errorf("--relay-address %s is this finelogd itself: relaying a store into itself would forward every row forever", cfg.Address)
		}
	}
	if cfg.KeyFile != "" && cfg.TokenFile != "" {
		return nil, errors.New("--relay-key-file and --relay-token-file are both set: use one")
	}
	token, err := tokenSource(cfg)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(cfg.StatePath)
	if err := cfg.FS.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("--relay-state: create %s: %w", dir, err)
	}
	// Make the directory's own entry durable, or a power cut could take
	// the watermark and producer id with it.
	if err := cfg.FS.SyncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("--relay-state: sync %s: %w", filepath.Dir(dir), err)
	}
	producer, err := LoadProducerID(cfg.FS, filepath.Join(dir, "producer"), cfg.Cluster)
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
	em := newEgressMetrics(cfg.Registerer)
	httpClient = countingClient{next: httpClient, m: em}
	var sink Sink = ClientSink{
		Client:  loggingpbconnect.NewLogServiceClient(httpClient, target, GzipClientOptions()...),
		Token:   token,
		Timeout: timeout,
	}.WithZstd(loggingpbconnect.NewLogServiceClient(httpClient, target, ZstdClientOptions()...))
	sink = timedSink{Sink: sink, clk: cfg.Clock, m: em}
	return New(Config{
		Source:         StoreSource{Store: st},
		Sink:           sink,
		FS:             cfg.FS,
		Clock:          cfg.Clock,
		StatePath:      cfg.StatePath,
		DeadLetterPath: filepath.Join(dir, "dead-letter.jsonl"),
		Target:         target,
		Producer:       producer,
		Cluster:        cfg.Cluster,
		BatchRows:      cfg.BatchRows,
		InFlight:       cmp.Or(cfg.InFlight, DaemonInFlight),
		Backfill:       cfg.Backfill,
		Pin:            func(seq int64) { st.SetPin(PinName, seq) },
		Changed:        st.Changed,
		Linger:         DaemonLinger,
		// The producer id is this store's own, so only pushes that looped
		// back into it can make it known here.
		TargetIsSource: func() bool { _, known := st.ProducerApplied(producer); return known },
		Logger:         cfg.Logger,
		Registerer:     cfg.Registerer,
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

// tokenSource returns the bearer token function for the flags, or nil when
// neither credential flag is set (the target may admit by address).
func tokenSource(cfg DaemonConfig) (func(context.Context) (string, error), error) {
	switch {
	case cfg.KeyFile != "":
		secret, err := auth.ReadSecretFile(cfg.FS, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--relay-key-file: %w", err)
		}
		ttl := cfg.TokenTTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		m := auth.NewMinter(secret, cfg.Cluster, cfg.Audience, ttl, cfg.Clock)
		// Mint once now so a bad key or cluster label stops the daemon at
		// start instead of failing every push.
		if _, err := m.Token(); err != nil {
			return nil, fmt.Errorf("--relay-key-file: %w", err)
		}
		return func(context.Context) (string, error) { return m.Token() }, nil
	case cfg.TokenFile != "":
		read := func() (string, error) {
			data, err := vfs.ReadFile(cfg.FS, cfg.TokenFile)
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

// LoadProducerID returns the producer id stored at path, creating
// "<cluster>/<16 random hex digits>" durably on first use. The random part
// makes a store that was wiped and recreated (seqs from 1 again) a new
// producer, so the target does not drop its rows as already applied. The
// file lives beside the watermark and goes when the data dir does.
func LoadProducerID(fsys vfs.FS, path, cluster string) (string, error) {
	// Durable read: a first write whose directory sync failed leaves the
	// file visible; a crash must not then swap the id under the watermark.
	data, err := vfs.ReadFileDurable(fsys, path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(data))
		if id == "" || !strings.HasPrefix(id, cluster+"/") {
			return "", fmt.Errorf("relay producer id file %s holds %q, want %q followed by an id; was --cluster changed? Remove the file (and the watermark beside it) to start as a new producer", path, id, cluster+"/")
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read relay producer id %s: %w", path, err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate relay producer id: %w", err)
	}
	id := cluster + "/" + hex.EncodeToString(b[:])
	if err := vfs.WriteFileAtomic(fsys, path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("write relay producer id %s: %w", path, err)
	}
	return id, nil
}
