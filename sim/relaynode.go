package sim

import (
	"context"
	"fmt"
	"math/rand"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/relay"
)

// This file is the only place the simulation builds a relay: the real
// relay.Forwarder over the node's store, pushing through the real
// relay.ClientSink (Connect, gzip or zstd) over the simulated network.

// relayURL is how a relay addresses its target node.
func relayURL(target string) string { return "http://" + target }

// enableRelay turns the node's relay on for good (it restarts with the
// node from now on) and records the point after which every acked row must
// reach the target.
func (w *World) enableRelay(n *Node) error {
	if n.relayEnabled {
		return nil
	}
	n.relayEnabled = true
	if n.Store != nil {
		n.enabledAt = n.Store.LastSeq()
	}
	if !w.reachable(n) {
		w.Coverage.UnreachableEnables++
	}
	w.Trace.Addf("  %s relay enabled after seq %d", n.Name, n.enabledAt)
	return w.startRelay(n)
}

// startRelay builds the node's forwarder over whatever its disk holds, as
// the daemon does at start. Without RelayByAction it backfills (the relay
// starts with the world, so the source's current cursor is 0 anyway and a
// restart before the first durable seed must not skip rows); with it the
// relay runs as the daemon does by default.
func (w *World) startRelay(n *Node) error {
	if n.Store == nil || !n.relayEnabled {
		return nil
	}
	if w.cfg.LateRelay && !w.reachable(n) {
		w.Trace.Addf("  %s relay start deferred: target unreachable (LateRelay canary)", n.Name)
		n.setRelay(w, nil)
		return nil
	}
	src := n.Store
	jitter := rand.New(rand.NewSource(int64(n.crashes) + 1))
	if w.cfg.WallClockJitter {
		jitter = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	url := relayURL(n.spec.RelayTo)
	minter := auth.NewMinter(clusterKey(n.spec.key()), n.spec.key(), "", w.cfg.TokenTTL, n.Clock)
	wrong := auth.NewMinter(wrongKey, n.spec.key(), "", w.cfg.TokenTTL, n.Clock)
	sink := relay.NewClientSink(url, w.Net.Client(n.Name, n.spec.Peer), func(context.Context) (string, error) {
		if n.badCredentials {
			return wrong.Token()
		}
		return minter.Token()
	}, 0)
	f, err := relay.New(relay.Config{
		Source:         relay.StoreSource{Store: src},
		Sink:           sink,
		FS:             n.FS,
		Clock:          n.Clock,
		Rand:           jitter,
		StatePath:      statePath,
		DeadLetterPath: deadPath,
		Target:         url,
		Producer:       n.producer(),
		Cluster:        n.Cluster,
		Options:        relay.Options{BatchRows: w.cfg.BatchRows, InFlight: 1, Backfill: !w.cfg.RelayByAction, NonIdempotent: w.cfg.NonIdempotent},
		Pin:            func(seq int64) { src.SetPin(relay.PinName, seq) },
	})
	if err != nil {
		return fmt.Errorf("%s: start relay: %w", n.Name, err)
	}
	// The daemon's start sequence: the relay fixes its starting point
	// (Enable) before the store takes writes, target reachable or not.
	err = f.Enable(w.ctx)
	w.Trace.Addf("  %s relay enable: %v", n.Name, errString(err))
	n.setRelay(w, f)
	return nil
}

func (n *Node) setRelay(w *World, f *relay.Forwarder) {
	n.Relay = f
	if n == w.Source {
		w.Relay = f
	}
}

// reachable says whether n's relay would get an answer from its target now.
func (w *World) reachable(n *Node) bool {
	t := w.byName[n.spec.RelayTo]
	return !w.Net.Isolated[n.Name] && !w.Net.Isolated[t.Name] && t.Server != nil && !t.down && !n.badCredentials
}

// producer is the node's relay producer id at the target. It is named
// after the cluster of the key the relay holds, as the target requires of
// producer ids; an impostor picks such a name too, so what refuses it is
// the rule on its rows' cluster.
func (n *Node) producer() string {
	if n.Name == n.spec.key() {
		return n.Name + "/store-1"
	}
	return n.spec.key() + "/" + n.Name + "-store-1"
}
