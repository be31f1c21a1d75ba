package sim

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/relay"
)

// Producer poisoning across identities. A producer's applied mark decides
// which of its batches the target drops as already applied, so a writer
// that could push a batch naming the Source relay's producer with a forged
// range (an empty batch "covering" seqs the relay has not sent yet) would
// make the target silently drop those rows when the relay sends them.
// Poison actions try it from two other identities the target admits: a
// jwt key of another cluster (HostileCluster) and a cidr-admitted writer.
// The properties: every forged push and every question about the relay's
// producer is refused (CheckHostile), and the relay's rows still reach the
// target exactly once (CheckNoLoss, CheckDuplicates).

// HostileCluster is the cluster whose jwt key the target knows and whose
// identity attempts the poisoning (Config.Hostile).
const HostileCluster = "south"

const (
	// hostileJWTPeer is where the other cluster's writer connects from:
	// outside readerCIDR, so only its token admits it.
	hostileJWTPeer = "10.66.0.9:6666"
	// hostileCIDRPeer is inside readerCIDR: admitted by address alone.
	hostileCIDRPeer = "10.99.0.66:6666"
	// poisonSpan is how far past the target's current mark the forged
	// range reaches: within the store's bound on skipped seqs, so only
	// the namespace rule stands in the way.
	poisonSpan = 1000
)

func poisonVia(n int) string {
	if n == 1 {
		return "cidr"
	}
	return "jwt " + HostileCluster
}

// poison pushes one forged batch for the Source relay's producer as the
// identity via picks, then asks the target about that producer.
func (w *World) poison(via int) {
	if w.cfg.NonIdempotent || !w.cfg.Hostile {
		w.Trace.Addf("  no poisoning: the relay sends no producer batches or the world has no hostile key")
		return
	}
	src := w.Source
	producer := src.producer()
	var mark int64
	if w.Target.Store != nil {
		// The attacker's best knowledge: the mark itself (it used to be on
		// the open /health).
		mark, _ = w.Target.Store.ProducerApplied(producer)
	}
	var (
		peer    = hostileJWTPeer
		token   func(context.Context) (string, error)
		cluster = HostileCluster
	)
	if via == 1 {
		peer, cluster = hostileCIDRPeer, src.Cluster
	} else {
		minter := auth.NewMinter(clusterKey(HostileCluster), HostileCluster, "", w.cfg.TokenTTL, src.Clock)
		token = func(context.Context) (string, error) { return minter.Token() }
	}
	sink := relay.NewClientSink(relayURL(w.Target.Name), w.Net.Client("intruder", peer), token, 0)
	b := relay.Batch{Producer: producer, Cluster: cluster, FirstSeq: 1, LastSeq: mark + poisonSpan}
	ack, err := sink.Push(w.ctx, b)
	w.Trace.Addf("  forged push via %s for %s %d..%d: %s", poisonVia(via), producer, b.FirstSeq, b.LastSeq, ackString(ack, err))
	w.Coverage.Poisons++
	if err == nil {
		w.hostileAccepted = append(w.hostileAccepted, fmt.Sprintf("push via %s for producer %s covering %d..%d was acked (applied mark %d)",
			poisonVia(via), producer, b.FirstSeq, b.LastSeq, ack.ProducerApplied))
	} else if connect.CodeOf(err) == connect.CodePermissionDenied {
		w.Coverage.PoisonRefusals++
	}
	st, err := sink.ProducerState(w.ctx, producer)
	w.Trace.Addf("  producer state asked via %s for %s: applied %d known %v: %s", poisonVia(via), producer, st.Applied, st.Known, errString(err))
	if err == nil {
		w.hostileAccepted = append(w.hostileAccepted, fmt.Sprintf("GetProducerState via %s for producer %s was answered (applied %d)",
			poisonVia(via), producer, st.Applied))
	}
}

// CheckHostile: no forged push for another identity's producer was acked
// and no question about it answered.
func (w *World) CheckHostile() error {
	p := &problems{what: "another identity used the relay's producer"}
	for _, s := range w.hostileAccepted {
		p.addf("%s", s)
	}
	return p.err()
}
