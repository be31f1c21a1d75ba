package sim

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

// The overtaking producer ("east/batcher" on the Source node) sends
// idempotent batches the way a relay with several batches in flight does,
// but with the network's reordering made explicit: once the target knows
// it, each Overtake action makes two fresh consecutive batches and the
// later one arrives first. A correct target refuses it (the gap rule:
// aborted) and takes it after the earlier one; a target that dedupes by
// high-water mark alone takes it and then drops the earlier batch as
// already applied, acking rows it never stored. Every batch the batcher saw
// acked must be in the target (CheckOvertaking).

const batcherProducer = SourceCluster + "/batcher"

// batcher is the overtaking producer's state.
type batcher struct {
	sink    relay.ClientSink
	nextSeq int64
	primed  bool          // the target acked one of its batches
	pending []relay.Batch // not acked yet, in seq order: re-sent in order
	acked   []relay.Batch // every acked batch
}

func (w *World) batcherSink() relay.ClientSink {
	n := w.Source
	if w.batch.sink.Client == nil {
		minter := auth.NewMinter(clusterKey(n.Cluster), n.Cluster, "", w.cfg.TokenTTL, n.Clock)
		w.batch.sink = relay.NewClientSink(relayURL(w.Target.Name), w.Net.Client(n.Name, n.spec.Peer),
			func(context.Context) (string, error) { return minter.Token() }, 0)
	}
	return w.batch.sink
}

// overtake sends two new batches of n rows each, the second first.
func (w *World) overtake(n int) {
	if w.cfg.NonIdempotent {
		w.Trace.Addf("  no producer batches in non-idempotent mode")
		return
	}
	w.retryPending()
	a, b := w.newBatch(n), w.newBatch(n)
	w.batch.pending = append(w.batch.pending, a, b)
	if w.batch.primed {
		w.pushBatch(b)
		w.pushBatch(a)
	}
	// Until the target has acked one of its batches it does not know the
	// producer and takes any batch, so, like the relay, the batcher sends
	// one at a time in order until then.
	w.retryPending()
}

func (w *World) newBatch(n int) relay.Batch {
	now := w.Source.Clock.Now()
	rows := make([]store.Row, n)
	first := w.batch.nextSeq + 1
	for i := range rows {
		w.batch.nextSeq++
		w.nextRow++
		id := w.nextRow
		rows[i] = store.Row{Seq: w.batch.nextSeq, Key: fmt.Sprintf("/batch/job-%d:%d", id%2, id%3), Source: "stderr",
			Data: fmt.Sprintf("batch-%06d seq=%d", id, w.batch.nextSeq), EpochMS: now.UnixMilli() + int64(i), AttemptID: int32(id % 3), Level: int32(id % 6)}
		w.rows[rows[i].Data] = rows[i]
		w.origin[rows[i].Data] = w.Source
	}
	return relay.Batch{Producer: batcherProducer, Cluster: SourceCluster, FirstSeq: first, LastSeq: w.batch.nextSeq, Rows: rows}
}

// pushBatch sends one batch and settles it on an ack.
func (w *World) pushBatch(b relay.Batch) bool {
	ack, err := w.batcherSink().Push(w.ctx, b)
	w.Trace.Addf("  batcher push %d..%d: %s", b.FirstSeq, b.LastSeq, ackString(ack, err))
	if err != nil {
		if connect.CodeOf(err) == connect.CodeAborted {
			w.Coverage.GapRefusals++
		}
		return false
	}
	w.batch.primed = true
	for i, p := range w.batch.pending {
		if p.FirstSeq == b.FirstSeq {
			w.batch.pending = append(w.batch.pending[:i], w.batch.pending[i+1:]...)
			w.batch.acked = append(w.batch.acked, b)
			break
		}
	}
	return true
}

// retryPending re-sends unacked batches in seq order, stopping at the
// first failure (the later ones would only be refused as gaps).
func (w *World) retryPending() {
	for len(w.batch.pending) > 0 {
		if !w.pushBatch(w.batch.pending[0]) {
			return
		}
	}
}

// drainOvertake delivers every pending batch once the network is healed.
func (w *World) drainOvertake() {
	for i := 0; i < 10 && len(w.batch.pending) > 0; i++ {
		w.retryPending()
	}
	if len(w.batch.pending) > 0 {
		w.violate("batcher: %d batches still refused after the drain (first %d..%d)", len(w.batch.pending), w.batch.pending[0].FirstSeq, w.batch.pending[0].LastSeq)
	}
}

// CheckOvertaking: every row of every batch the target acked to the
// overtaking producer is in the target.
func (w *World) CheckOvertaking() error {
	counts, err := w.targetCounts()
	if err != nil {
		return fmt.Errorf("store global: scan: %w", err)
	}
	p := &problems{what: "acked producer batches missing from the target"}
	for _, b := range w.batch.acked {
		for _, r := range b.Rows {
			if counts[r.Data] == 0 {
				p.addf("batch %d..%d was acked but its row seq %d (%q) is not in the target", b.FirstSeq, b.LastSeq, r.Seq, trim(r.Data))
			}
		}
	}
	return p.err()
}
