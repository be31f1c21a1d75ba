package server

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/finelog/finelog/relay"
)

// This file is the only place the server touches the relay package.

// relayRunner runs the forwarder goroutine.
type relayRunner struct {
	f      *relay.Forwarder
	cancel context.CancelFunc
	done   chan struct{}
}

// relayHealth is the relay part of /health. It leaves out the producer
// id: /health is open, and the id is what another writer would need to
// aim at this relay's applied mark at the target.
type relayHealth struct {
	State       string    `json:"state"`
	Target      string    `json:"target"`
	Watermark   int64     `json:"watermark"`
	LagRows     int64     `json:"lag_rows"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Error       string    `json:"error,omitempty"`
	// Stopped: the relay will not move until an operator acts (corrupt
	// watermark, store behind the resume point); /health answers 503.
	Stopped bool `json:"stopped"`
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
		if r.KeyFile != "" || r.TokenFile != "" || r.Backfill || r.BatchRows != 0 || r.InFlight != 0 {
			return fmt.Errorf("relay flags are set but --relay-address is not: set it or drop the other --relay-* flags")
		}
		return nil
	}
	if s.cfg.Cluster == "" {
		return fmt.Errorf("--relay-address needs --cluster: the relay labels forwarded rows with this cluster's name")
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

func (s *Server) startRelay(ctx context.Context, st logStore) error {
	if s.cfg.Relay.Address == "" {
		return nil
	}
	local, ok := st.(relay.LocalStore)
	if !ok {
		return fmt.Errorf("relay: the store does not support relaying (no Scan/SetPin)")
	}
	r := s.cfg.Relay
	f, err := relay.NewForStore(local, relay.DaemonConfig{
		Address:    r.Address,
		KeyFile:    r.KeyFile,
		TokenFile:  r.TokenFile,
		StatePath:  r.StatePath,
		BatchRows:  r.BatchRows,
		InFlight:   r.InFlight,
		Backfill:   r.Backfill,
		Cluster:    s.cfg.Cluster,
		FS:         s.cfg.FS,
		Clock:      s.clk,
		Logger:     s.log, // relay tags its lines with component=relay itself
		Registerer: s.reg,
	}, s.self...)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	// The relay outlives the request that started the server: it stops
	// only in Close.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rr := &relayRunner{f: f, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rr.done)
		if err := f.Run(rctx); err != nil {
			s.log.Error("relay stopped", "err", err)
		}
	}()
	s.relay = rr
	s.log.Info("relay started", "target", r.Address, "state", r.StatePath)
	return nil
}

func (s *Server) stopRelay() {
	if s.relay == nil {
		return
	}
	s.relay.cancel()
	<-s.relay.done
}

func (s *Server) relayHealth() *relayHealth {
	if s.relay == nil {
		return nil
	}
	st := s.relay.f.Status()
	return &relayHealth{
		State:       string(st.State),
		Target:      st.Target,
		Watermark:   st.Watermark,
		LagRows:     st.LagRows,
		LastSuccess: st.LastSuccess,
		Error:       st.LastError,
		Stopped:     st.State == relay.StateCorruptWatermark || st.State == relay.StateSourceBehind,
	}
}
