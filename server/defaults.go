package server

import (
	"cmp"
	"path/filepath"

	"github.com/finelog/finelog/relay"
)

// Effective returns c with every field left zero for "the default" filled
// in as the server and relay will apply it, so `finelogd --print-config`
// shows the values that run, not 0.
func (c Config) Effective() Config {
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxInflightRequestBytes <= 0 {
		c.MaxInflightRequestBytes = max(DefaultMaxInflightRequestBytes, c.MaxRequestBytes)
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Relay.Address != "" {
		if c.Relay.StatePath == "" {
			c.Relay.StatePath = filepath.Join(c.DataDir, "relay", "state.json")
		}
		c.Relay.BatchRows = cmp.Or(c.Relay.BatchRows, relay.DefaultBatchRows)
		c.Relay.InFlight = cmp.Or(c.Relay.InFlight, DefaultRelayInFlight)
	}
	return c
}
