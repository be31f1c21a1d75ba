package server

import (
	"context"
	"errors"
)

// This file is the only place the server touches the relay package.
//
// TEMPORARY: until relay.New lands, a configured relay is refused at start
// rather than silently ignored.

// relayRunner runs the forwarder goroutine.
type relayRunner struct{}

// relayHealth is the relay part of /health.
type relayHealth struct {
	Target  string `json:"target"`
	Stopped bool   `json:"stopped"`
	Error   string `json:"error,omitempty"`
}

func (s *Server) newRelay() error {
	if s.cfg.Relay.Address == "" {
		return nil
	}
	return errors.New("--relay-address: this build has no relay yet")
}

func (s *Server) startRelay(ctx context.Context, st logStore) error { return nil }

func (s *Server) stopRelay() {}

func (s *Server) relayHealth() *relayHealth { return nil }
