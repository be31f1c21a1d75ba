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
	return auth.Middleware(p, auth.MiddlewareOptions{
		Logger:     s.log.With("component", "auth"),
		Registerer: s.reg,
		Clock:      s.clk,
	}), nil
}

// boundCluster reports the cluster a request's identity is bound to: a JWT
// identity may only write rows of its own cluster.
func boundCluster(ctx context.Context) (cluster string, bound bool) {
	id, ok := auth.IdentityFrom(ctx)
	if !ok || id.Kind != auth.LayerJWT {
		return "", false
	}
	return id.Cluster, true
}
