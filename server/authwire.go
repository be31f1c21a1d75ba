package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/finelog/finelog/auth"
)

// This file is the only place the server touches the auth package.

// gate is the ingress check wrapped around every route but /health.
type gate func(http.Handler) http.Handler

// loadAuth loads FINELOG_AUTH_POLICY or --auth-policy-file (neither:
// loopback peers only). A malformed or empty policy stops the start.
func (s *Server) loadAuth() (gate, error) {
	p, err := auth.Load(s.cfg.AuthPolicy, s.cfg.AuthPolicyFile, s.cfg.FS, s.clk)
	if err != nil {
		return nil, fmt.Errorf("auth policy: %w", err)
	}
	s.log.Info("auth policy loaded", "layers", p.Layers(), "policy", p.String())
	s.ownsNamespace = p.OwnsNamespace
	return auth.Middleware(p, auth.MiddlewareOptions{
		Logger:     s.log.With("component", "auth"),
		Registerer: s.reg,
		Clock:      s.clk,
	}), nil
}

// caller is who an admitted request is, as the server's rules need it.
type caller struct {
	// jwt: the identity is a jwt key's; cluster is its label, and it may
	// write only that cluster's rows and producers.
	jwt     bool
	cluster string
	// key names the identity for per-identity limits ("jwt east",
	// "cidr 10.0.0.0/8"); "" when the request carries none (in-process).
	key string
	// readAll, or the clusters whose rows it may read.
	readAll      bool
	readClusters []string
	admin        bool
}

func callerFrom(ctx context.Context) caller {
	id, ok := auth.IdentityFrom(ctx)
	if !ok {
		// No gate ran (a handler used in-process): nothing to bind.
		return caller{readAll: true, admin: true}
	}
	c := caller{key: id.String(), readAll: id.Read.All(), readClusters: id.Read.Clusters(), admin: id.Admin}
	if id.Kind == auth.LayerJWT {
		c.jwt, c.cluster = true, id.Cluster
	}
	return c
}

// checkClusterLabel validates a cluster a writer without a jwt identity
// names for its rows, with the rule for key labels.
func checkClusterLabel(s string) error { return auth.CheckLabel(s) }
