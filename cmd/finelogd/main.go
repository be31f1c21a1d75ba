// Command finelogd is the finelog daemon: flags and environment become a
// server.Config, and the server does the rest.
//
//	finelogd --listen 127.0.0.1:7070 --data-dir ./finelog-data
//
// SIGTERM or SIGINT shuts down gracefully (finish in-flight requests, flush,
// sync, exit 0); a second signal exits at once. Acked rows are already on
// disk, so even kill -9 loses nothing that was acknowledged.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// flags is the parsed command line.
type flags struct {
	listen      string
	logFormat   string
	logLevel    string
	printConfig bool
	// memoryLimit is the Go runtime's soft memory limit (0 = none).
	memoryLimit int64
	cfg         server.Config
	// finishPeer reads the peer port's key once flags are parsed
	// (peerflags.go).
	finishPeer func(getenv func(string) string) error
}

// DefaultMemoryLimit is finelogd's soft memory limit. Its default store
// holds at most 3x a 32 MiB memtable plus ~30 MiB of buffers live, and the
// limit makes the collector keep the heap near that instead of letting it
// grow to twice the live size before collecting.
const DefaultMemoryLimit = 200 << 20

// DefaultMemtableBytes is the daemon's memtable size; see DefaultMemoryLimit.
const DefaultMemtableBytes = 32 << 20

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*flags, error) {
	f, fs := newFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := validateFlags(f); err != nil {
		return nil, err
	}
	f.cfg.AuthPolicy = getenv("FINELOG_AUTH_POLICY")
	if f.cfg.ObjectStore.URL != "" {
		f.cfg.ObjectStore.CredentialsProfile = getenv("AWS_PROFILE")
		if f.cfg.ObjectStore.CredentialsFile == "" {
			creds, err := objstore.CredentialsFromEnv(getenv)
			if err != nil {
				return nil, fmt.Errorf("--object-store: %w", err)
			}
			f.cfg.ObjectStore.Credentials = creds
		}
	} else if f.cfg.ObjectStore.CredentialsFile != "" || f.cfg.ObjectStore.LocalRetentionAge != 0 || f.cfg.ObjectStore.LocalRetentionBytes != 0 {
		return nil, fmt.Errorf("--object-store-credentials-file, --local-retention-age and --local-retention-bytes need --object-store")
	}
	if f.cfg.ObjectStore.LocalRetentionAge < 0 || f.cfg.ObjectStore.LocalRetentionBytes < 0 || f.cfg.ObjectStore.CacheBytes < 0 {
		return nil, fmt.Errorf("--local-retention-age, --local-retention-bytes and --object-cache-bytes must be 0 or more")
	}
	if err := f.finishPeer(getenv); err != nil {
		return nil, err
	}
	return f, nil
}

// newFlagSet defines every flag; parse errors and help go to out.
func newFlagSet(out io.Writer) (*flags, *flag.FlagSet) {
	f := &flags{}
	fs := flag.NewFlagSet("finelogd", flag.ContinueOnError)
	fs.SetOutput(out)
	c := &f.cfg
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7070", "`address` to serve HTTP/1.1 and h2c on (loopback by default)")
	fs.StringVar(&c.DataDir, "data-dir", "./finelog-data", "`directory` for the store (WAL and segments) and relay state")
	fs.StringVar(&c.Cluster, "cluster", "", "this store's cluster `name`, stamped on rows pushed without one")
	fs.DurationVar(&c.RetentionAge, "retention-age", 0, "delete segments written longer ago than this, by finelogd's clock (0 = keep forever)")
	fs.Var((*byteSize)(&c.RetentionBytes), "retention-bytes", "delete the oldest segments while segments exceed this many `bytes` (0 = unlimited)")
	c.MemtableBytes = DefaultMemtableBytes
	fs.Var((*byteSize)(&c.MemtableBytes), "memtable-bytes", "seal the memtable into a segment at this many `bytes`; up to 3x this is held while flushes catch up")
	f.memoryLimit = DefaultMemoryLimit
	fs.Var((*byteSize)(&f.memoryLimit), "memory-limit", "soft memory `limit` for the Go runtime, at least 4x --memtable-bytes (0 = none; GOMEMLIMIT, if set, wins)")
	fs.StringVar(&c.AuthPolicyFile, "auth-policy-file", "", "JSON auth policy `file` (or set FINELOG_AUTH_POLICY); neither: loopback peers only")
	c.MaxRequestBytes = server.DefaultMaxRequestBytes
	fs.Var((*byteSize)(&c.MaxRequestBytes), "max-request-bytes", "largest request body accepted, after decompression, in `bytes`")
	fs.Var((*byteSize)(&c.MaxInflightRequestBytes), "max-inflight-request-bytes", "request `bytes` read and decoded at once across all requests; past it requests wait, then get a retryable resource_exhausted (0 = the larger of 64MiB and --max-request-bytes)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "how long a graceful shutdown waits for in-flight requests")
	// Hostile-client bounds (docs/operations.md "Limits").
	fs.DurationVar(&c.RequestBodyTimeout, "request-body-timeout", server.DefaultRequestBodyTimeout, "a request body must arrive within this `duration`; past it the request is dropped and its share of the in-flight budget freed")
	fs.IntVar(&c.MaxConnections, "max-connections", server.DefaultMaxConnections, "open connections at most; past it new connections are closed at accept")
	fs.IntVar(&c.MaxConnectionsPerPeer, "max-connections-per-peer", server.DefaultMaxConnectionsPerPeer, "open connections at most from one peer address")
	fs.IntVar(&c.MaxLongPolls, "max-long-polls", server.DefaultMaxLongPolls, "parked long-polls (FetchLogs wait_ms) at most; past it a long-poll answers at once")
	fs.IntVar(&c.MaxLongPollsPerIdentity, "max-long-polls-per-identity", server.DefaultMaxLongPollsPerIdentity, "parked long-polls at most per identity")
	fs.IntVar(&c.MaxReadsPerIdentity, "max-reads-per-identity", server.DefaultMaxReadsPerIdentity, "FetchLogs store scans one identity runs at once; past it a fetch waits, then gets a retryable resource_exhausted")
	fs.IntVar(&c.MaxProducersPerIdentity, "max-producers-per-identity", server.DefaultMaxProducersPerIdentity, "relay producers one identity keeps active (a producer stops counting after 24h idle)")
	fs.StringVar(&c.Relay.Address, "relay-address", "", "forward every row to the global finelogd at this `URL` (unset: no relay, no egress)")
	fs.StringVar(&c.Relay.KeyFile, "relay-key-file", "", "`file` with this cluster's signing key; the relay mints its own short-lived tokens")
	fs.StringVar(&c.Relay.TokenFile, "relay-token-file", "", "`file` with a static bearer token for the relay target")
	fs.StringVar(&c.Relay.Audience, "relay-audience", "", "`audience` the relay puts in the tokens it mints from --relay-key-file, for a target whose jwt layer requires one")
	fs.Int64Var(&c.Relay.HealthMaxLagRows, "relay-health-max-lag-rows", 0, "/health/relay answers 503 while more than this many `rows` wait to be forwarded (0 = lag alone never fails it)")
	fs.StringVar(&c.Relay.StatePath, "relay-state", "", "relay watermark `file` (default <data-dir>/relay/state.json)")
	fs.IntVar(&c.Relay.BatchRows, "relay-batch-rows", 0, "rows per relay batch (0 = relay default)")
	fs.IntVar(&c.Relay.InFlight, "relay-in-flight", 0, "relay batches pushed at once, against a target that refuses overtaking batches (0 = relay default, 4)")
	fs.BoolVar(&c.Relay.Backfill, "relay-backfill", false, "on first start, forward the rows already stored instead of starting at the current end")
	c.Relay.PinMaxBytes = server.DefaultRelayPinMaxBytes
	fs.Var((*byteSize)(&c.Relay.PinMaxBytes), "relay-pin-max-bytes", "retention keeps at most this many `bytes` of rows the relay has not forwarded; past it the oldest are deleted, logged and counted")
	f.finishPeer = addPeerFlags(fs, &c.Peer)
	federationFlags(fs, c)
	fs.StringVar(&c.ObjectStore.URL, "object-store", "", "tier sealed segments to this S3-compatible bucket `URL`: s3://BUCKET/PREFIX[?endpoint=http://HOST:PORT&region=R] (credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --object-store-credentials-file)")
	fs.StringVar(&c.ObjectStore.CredentialsFile, "object-store-credentials-file", "", "AWS shared credentials `file` (INI) for --object-store; its [default] profile, or AWS_PROFILE's")
	c.ObjectStore.CacheBytes = server.DefaultObjectCacheBytes
	fs.Var((*byteSize)(&c.ObjectStore.CacheBytes), "object-cache-bytes", "on-disk cache of remote segment blocks under <data-dir>/objcache, in `bytes` (0 = none)")
	fs.DurationVar(&c.ObjectStore.LocalRetentionAge, "local-retention-age", 0, "with --object-store: drop local copies of segments written longer ago than this once they are in the bucket (0 = keep)")
	fs.Var((*byteSize)(&c.ObjectStore.LocalRetentionBytes), "local-retention-bytes", "with --object-store: drop the oldest local copies already in the bucket while local segments exceed this many `bytes` (0 = no limit)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&f.printConfig, "print-config", false, "print the effective configuration as JSON (secrets redacted) and exit")
	fs.Bool("version", false, "print the version (module version and VCS revision) and exit")
	// A bad flag gets its error and a pointer to --help, not the whole
	// flag list on stderr.
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "run 'finelogd --help' for the flags") }
	return f, fs
}

func validateFlags(f *flags) error {
	c := &f.cfg
	for _, v := range []struct {
		name string
		n    int
	}{
		{"--max-connections", c.MaxConnections}, {"--max-connections-per-peer", c.MaxConnectionsPerPeer},
		{"--max-long-polls", c.MaxLongPolls}, {"--max-long-polls-per-identity", c.MaxLongPollsPerIdentity},
		{"--max-reads-per-identity", c.MaxReadsPerIdentity}, {"--max-producers-per-identity", c.MaxProducersPerIdentity},
	} {
		if v.n < 1 {
			return fmt.Errorf("%s %d: want at least 1", v.name, v.n)
		}
	}
	if c.RequestBodyTimeout < time.Second {
		return fmt.Errorf("--request-body-timeout %v: want at least 1s", c.RequestBodyTimeout)
	}
	if c.Relay.BatchRows < 0 || c.Relay.InFlight < 0 {
		return fmt.Errorf("--relay-batch-rows %d and --relay-in-flight %d: want 0 (the relay default) or more", c.Relay.BatchRows, c.Relay.InFlight)
	}
	if c.MemtableBytes < minMemtableBytes {
		return fmt.Errorf("--memtable-bytes %s: want at least %s", byteSize(c.MemtableBytes), byteSize(minMemtableBytes))
	}
	if f.memoryLimit != 0 && f.memoryLimit < 4*c.MemtableBytes {
		return fmt.Errorf("--memory-limit %s is below 4x --memtable-bytes %s: memtables alone may hold 3x it while flushes catch up; raise the limit, lower the memtable, or set --memory-limit 0",
			byteSize(f.memoryLimit), byteSize(c.MemtableBytes))
	}
	return nil
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if helpOrVersion(args, stdout) {
		return 0
	}
	f, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "finelogd: %v\n", err)
		return 2
	}
	if f.printConfig {
		if err := printConfig(stdout, f); err != nil {
			fmt.Fprintf(stderr, "finelogd: %v\n", err)
			return 1
		}
		return 0
	}
	log, err := newLogger(f.logFormat, f.logLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "finelogd: %v\n", err)
		return 2
	}
	f.cfg.Logger = log
	applyMemoryLimit(f.memoryLimit, getenv, log)
	f.cfg.FS = vfs.OS{}
	f.cfg.Clock = clock.Real{}

	srv, err := server.New(f.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "finelogd: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		fmt.Fprintf(stderr, "finelogd: --listen %s: %v\n", f.listen, err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		log.Info("signal received: shutting down gracefully (send it again to exit at once)", "signal", sig.String())
		cancel()
		sig = <-sigs
		log.Warn("second signal: exiting now without a graceful shutdown (acked rows are already durable)", "signal", sig.String())
		os.Exit(2)
	}()

	defer reloadOnSIGHUP(srv, f.cfg, log)()
	start := time.Now()
	if err := srv.Run(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "finelogd: %v\n", err)
		return 1
	}
	log.Info("exit", "uptime", time.Since(start).Round(time.Millisecond).String())
	return 0
}

// minMemtableBytes: below this a busy store flushes tiny segments and
// spends its time compacting them.
const minMemtableBytes = 1 << 20

// applyMemoryLimit sets the runtime's soft memory limit unless the operator
// set GOMEMLIMIT, which the runtime has already applied and which wins.
func applyMemoryLimit(limit int64, getenv func(string) string, log *slog.Logger) {
	if env := getenv("GOMEMLIMIT"); env != "" {
		log.Info("memory limit from GOMEMLIMIT; --memory-limit ignored", "GOMEMLIMIT", env)
		return
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
}

// objectStoreConfig describes the object store for --print-config: the
// URL (which cannot hold credentials) and where credentials come from,
// never their values.
func objectStoreConfig(o server.ObjectStoreConfig) map[string]any {
	if o.URL == "" {
		return nil
	}
	out := map[string]any{"url": o.URL, "cache_bytes": o.CacheBytes,
		"local_retention_age": o.LocalRetentionAge.String(), "local_retention_bytes": o.LocalRetentionBytes}
	switch {
	case o.CredentialsFile != "":
		out["credentials"] = "file " + o.CredentialsFile
	case o.Credentials.Anonymous():
		out["credentials"] = "none (anonymous requests)"
	default:
		out["credentials"] = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (redacted)"
	}
	return out
}

// printConfig writes the effective configuration. Secrets never appear: the
// relay key and token are files, and only their paths are printed; an
// inline policy is printed with every secret-looking value replaced.
func printConfig(w io.Writer, f *flags) error {
	c := f.cfg.Effective()
	relayState := c.Relay.StatePath
	out := map[string]any{
		"listen":                     f.listen,
		"data_dir":                   c.DataDir,
		"cluster":                    c.Cluster,
		"retention_age":              c.RetentionAge.String(),
		"retention_bytes":            c.RetentionBytes,
		"memtable_bytes":             c.MemtableBytes,
		"memory_limit":               f.memoryLimit,
		"max_request_bytes":          c.MaxRequestBytes,
		"max_inflight_request_bytes": c.MaxInflightRequestBytes,
		"shutdown_timeout":           c.ShutdownTimeout.String(),
		"limits": map[string]any{
			"request_body_timeout":        c.RequestBodyTimeout.String(),
			"max_connections":             c.MaxConnections,
			"max_connections_per_peer":    c.MaxConnectionsPerPeer,
			"max_long_polls":              c.MaxLongPolls,
			"max_long_polls_per_identity": c.MaxLongPollsPerIdentity,
			"max_reads_per_identity":      c.MaxReadsPerIdentity,
			"max_producers_per_identity":  c.MaxProducersPerIdentity,
		},
		"log_format":       f.logFormat,
		"log_level":        f.logLevel,
		"auth_policy_file": c.AuthPolicyFile,
		"object_store":     objectStoreConfig(c.ObjectStore),
		"relay": map[string]any{
			"address":             c.Relay.Address,
			"key_file":            c.Relay.KeyFile,
			"token_file":          c.Relay.TokenFile,
			"audience":            c.Relay.Audience,
			"health_max_lag_rows": c.Relay.HealthMaxLagRows,
			"state":               relayState,
			"batch_rows":          c.Relay.BatchRows,
			"in_flight":           c.Relay.InFlight,
			"backfill":            c.Relay.Backfill,
			"pin_max_bytes":       c.Relay.PinMaxBytes,
		},
		"peer": peerConfigJSON(c.Peer),
	}
	// The policy is printed as auth describes it: validated, with inline
	// secrets redacted and key files named by path.
	pol, err := auth.Load(c.AuthPolicy, c.AuthPolicyFile, vfs.OS{}, clock.Real{})
	if err != nil {
		return fmt.Errorf("auth policy: %w", err)
	}
	polJSON, err := pol.MarshalJSON()
	if err != nil {
		return err
	}
	out["auth_policy"] = json.RawMessage(polJSON)
	if out["federation"], err = federationConfig(c); err != nil {
		return err
	}
	if c.AuthPolicy == "" && c.AuthPolicyFile == "" {
		out["auth_policy_note"] = "no policy configured: loopback peers only"
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}
