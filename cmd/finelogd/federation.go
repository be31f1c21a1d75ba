package main

import (
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/finelog/finelog/federation"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/server"
)

// federationFlags registers the federated-read flags on fs.
func federationFlags(fs *flag.FlagSet, c *server.Config) {
	fs.StringVar(&c.Federation.PeersFile, "peers-file", "", "JSON `file` of peer clusters whose logs this store reads by proxy (needs --cluster; SIGHUP reloads it)")
	fs.IntVar(&c.Federation.MaxInflight, "federation-max-inflight", 0, "peers one fan-out read (cluster \"*\") asks at once (0 = 16)")
	fs.DurationVar(&c.Federation.PeerTimeout, "federation-peer-timeout", 0, "bound on each call to a peer, a long-poll's wait on top (0 = 10s)")
}

// federationConfig is the --print-config part: the peers as loaded, key
// and token files by path.
func federationConfig(c server.Config) (map[string]any, error) {
	out := map[string]any{
		"peers_file":   c.Federation.PeersFile,
		"max_inflight": c.Federation.MaxInflight,
		"peer_timeout": c.Federation.PeerTimeout.String(),
	}
	if c.Federation.PeersFile == "" {
		return out, nil
	}
	peers, err := federation.LoadPeersFile(vfs.OS{}, c.Federation.PeersFile, c.Cluster)
	if err != nil {
		return nil, err
	}
	out["peers"] = peers.Configs()
	return out, nil
}

// reloadOnSIGHUP re-reads the peers file on every SIGHUP until stop is
// called. A bad file is logged by the server and the old peers stay.
func reloadOnSIGHUP(srv *server.Server, cfg server.Config, log *slog.Logger) (stop func()) {
	if cfg.Federation.PeersFile == "" {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: reloading the peers file", "path", cfg.Federation.PeersFile)
				_ = srv.ReloadPeers()
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}
