package sim

import (
	"fmt"
	"net/http"
)

// This file is the replica world's properties and its ending: the disk
// loss, the promotion, the relay into the promoted standby, the drain.

// CheckStandbyCommitted: every row the standby holds is the primary's, at
// the same seq (the primary may have deleted it by retention since). A
// forged row is one the primary does not have.
func (w *ReplicaWorld) CheckStandbyCommitted() error {
	if w.primaryLost {
		return nil
	}
	rrows, err := scanAll(w.ctx, w.S.Store)
	if err != nil {
		return err
	}
	prows, err := scanAll(w.ctx, w.P.Store)
	if err != nil {
		return err
	}
	pm := make(map[int64]string, len(prows))
	for _, r := range prows {
		pm[r.Seq] = r.Data
	}
	for _, r := range rrows {
		if d, ok := pm[r.Seq]; ok && d != r.Data || !ok && r.Seq > w.P.Store.Floor() {
			return fmt.Errorf("the standby holds seq %d %q, which the primary did not commit (it has %q, held %v)", r.Seq, r.Data, d, ok)
		}
	}
	return nil
}

// CheckOnlyKeyHolders: no real node completed a handshake with the
// intruder.
func (w *ReplicaWorld) CheckOnlyKeyHolders() error {
	if w.IntruderHandshakes > 0 {
		return fmt.Errorf("a node without the PSK completed %d peer handshakes with a finelogd (only key holders may hold a link)", w.IntruderHandshakes)
	}
	return nil
}

// LosePrimaryDisk: the primary's machine and disk are gone; the standby
// may lose power in the same incident. The operator promotes the standby.
func (w *ReplicaWorld) LosePrimaryDisk(standbyCrash bool) error {
	if err := w.linkDown("primary lost"); err != nil {
		return err
	}
	if err := w.abandonOps(); err != nil {
		return err
	}
	w.P.crash(w.rng)
	w.primaryLost = true
	w.Trace.Addf("primary disk lost")
	if standbyCrash {
		if err := w.CrashStandby(); err != nil {
			return err
		}
	}
	w.markAtPromote, _ = w.S.Store.ProducerApplied(replicaProducer)
	resp, err := w.net.ObserverClient("10.0.0.2:50000").Post("http://"+replicaStandby+"/replica/promote?force=true", "application/json", nil)
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("promote: status %d", resp.StatusCode)
	}
	w.promoted = true
	w.Trace.Addf("standby promoted at seq %d", w.S.Store.LastSeq())
	return nil
}

// CheckAckedOnStandby: after the primary's disk is lost and the standby
// promoted, every acknowledged row above the standby's floor is on it, at
// its seq, once.
func (w *ReplicaWorld) CheckAckedOnStandby() error {
	rows, err := scanAll(w.ctx, w.S.Store)
	if err != nil {
		return err
	}
	have := make(map[int64]string, len(rows))
	copies := map[string]int{}
	for _, r := range rows {
		have[r.Seq] = r.Data
		copies[r.Data]++
	}
	floor := w.S.Store.Floor()
	for seq, data := range w.Acked {
		if seq > floor && have[seq] != data {
			return fmt.Errorf("acknowledged seq %d %q is not on the promoted standby (it has %q; floor %d, last seq %d)", seq, data, have[seq], floor, w.S.Store.LastSeq())
		}
		if copies[data] > 1 {
			return fmt.Errorf("acknowledged row %q is on the promoted standby %d times", data, copies[data])
		}
	}
	return nil
}

// RelayIntoPromoted points the relay at the promoted standby, as the
// operator does, and runs it until it has forwarded the whole source.
func (w *ReplicaWorld) RelayIntoPromoted() error {
	if err := w.abandonOps(); err != nil {
		return err
	}
	w.startRelay(replicaStandby)
	for range 100 {
		if err := w.RelayStep(); err != nil {
			return err
		}
		if w.relay.Watermark() >= w.Src.Store.LastSeq() {
			return nil
		}
	}
	return fmt.Errorf("the relay into the promoted standby reached watermark %d of %d", w.relay.Watermark(), w.Src.Store.LastSeq())
}

// CheckRelayNoDuplicates: on the promoted store every source row is at
// most once, unless the standby was promoted holding rows its producer
// mark did not cover yet (rows replicated from the primary's segments come
// before the mark, docs/replica.md): those may come twice, never more.
// Every source row above the standby's floor is there.
func (w *ReplicaWorld) CheckRelayNoDuplicates() (dups int, err error) {
	rows, err := scanAll(w.ctx, w.S.Store)
	if err != nil {
		return 0, err
	}
	copies := map[int]int{}
	firstSeq := map[int]int64{}
	for _, r := range rows {
		var n int
		if _, err := fmt.Sscanf(r.Data, "src %d", &n); err != nil {
			continue
		}
		copies[n]++
		if copies[n] == 1 {
			firstSeq[n] = r.Seq
		}
	}
	for n := 1; n <= w.srcAppended; n++ {
		limit := 1
		if int64(n) > w.markAtPromote {
			limit = 2
		}
		if copies[n] > limit {
			return dups, fmt.Errorf("source row %d is on the promoted standby %d times (its producer mark at promotion was %d)", n, copies[n], w.markAtPromote)
		}
		if copies[n] > 1 {
			dups++
		}
		if int64(n) > w.markAtPromote && copies[n] == 0 {
			return dups, fmt.Errorf("source row %d is not on the promoted standby, though its producer mark at promotion (%d) was below it", n, w.markAtPromote)
		}
	}
	return dups, nil
}

// Drain heals the network and runs healthy rounds until the standby has
// every row and the floor of the primary and no push waits, then checks
// the copy is exact: the same rows at the same seqs, the same floor.
func (w *ReplicaWorld) Drain() error {
	w.partitioned, w.hijack = false, false
	for range 50 {
		if err := w.Round(); err != nil {
			return err
		}
		if w.link != nil && w.S.Store.LastSeq() == w.P.Store.LastSeq() && w.S.Store.Floor() == w.P.Store.Floor() && len(w.ops) == 0 {
			break
		}
	}
	if len(w.ops) > 0 {
		return fmt.Errorf("after the drain %d pushes still wait for the standby's ack", len(w.ops))
	}
	rrows, err := scanAll(w.ctx, w.S.Store)
	if err != nil {
		return err
	}
	prows, err := scanAll(w.ctx, w.P.Store)
	if err != nil {
		return err
	}
	if w.S.Store.Floor() != w.P.Store.Floor() || len(rrows) != len(prows) {
		return fmt.Errorf("after the drain the standby has floor %d and %d rows, the primary floor %d and %d rows", w.S.Store.Floor(), len(rrows), w.P.Store.Floor(), len(prows))
	}
	for i := range rrows {
		if rrows[i].Seq != prows[i].Seq || rrows[i].Data != prows[i].Data {
			return fmt.Errorf("after the drain the standby's row %d is seq %d %q, the primary's seq %d %q", i, rrows[i].Seq, rrows[i].Data, prows[i].Seq, prows[i].Data)
		}
	}
	return nil
}
