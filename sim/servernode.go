package sim

import (
	"fmt"

	"github.com/finelog/finelog/server"
)

// startServer runs finelogd's real server over a serving node's open
// store: the node's clock and disk, the world's auth policy, no listener
// (the simulated network calls its handler) and no background goroutines
// (the store is opened with Background off and stepped by the schedule).
func (w *World) startServer(n *Node) error {
	if !n.spec.Serves || n.Store == nil {
		return nil
	}
	srv, err := server.New(server.Config{
		DataDir:       dataDir,
		Cluster:       n.Cluster,
		MemtableBytes: w.cfg.MemtableBytes,
		AuthPolicy:    w.policyJSON,
		Defects:       w.cfg.Defects,
		FS:            n.FS,
		Clock:         n.Clock,
		Federation:    w.federationConfig(n),
	})
	if err != nil {
		return fmt.Errorf("%s: server: %w", n.Name, err)
	}
	if err := srv.ServeStore(w.ctx, n.Store); err != nil {
		return fmt.Errorf("%s: server: %w", n.Name, err)
	}
	n.Server = srv
	return nil
}
