package server

import (
	"testing"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// Effective must agree with what New applies, or --print-config lies.
func TestEffectiveMatchesWhatNewApplies(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{MaxRequestBytes: 100 << 20},
		{MaxRequestBytes: 1 << 20, MaxInflightRequestBytes: 3 << 20, MaxWait: 5e9, ShutdownTimeout: 7e9},
	} {
		cfg.FS, cfg.Clock, cfg.DataDir = vfs.NewMemFS(), clock.NewFake(epoch), "/d"
		srv, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		eff := cfg.Effective()
		got := srv.cfg
		if eff.MaxRequestBytes != got.MaxRequestBytes || eff.MaxInflightRequestBytes != got.MaxInflightRequestBytes ||
			eff.MaxWait != got.MaxWait || eff.ShutdownTimeout != got.ShutdownTimeout {
			t.Errorf("Effective() = %d %d %v %v, New applied %d %d %v %v", eff.MaxRequestBytes, eff.MaxInflightRequestBytes, eff.MaxWait, eff.ShutdownTimeout,
				got.MaxRequestBytes, got.MaxInflightRequestBytes, got.MaxWait, got.ShutdownTimeout)
		}
	}
	r := Config{DataDir: "/d", Relay: RelayConfig{Address: "http://global:7070"}}.Effective().Relay
	if r.BatchRows <= 0 || r.InFlight <= 0 || r.StatePath != "/d/relay/state.json" {
		t.Errorf("relay defaults not filled: %+v", r)
	}
}
