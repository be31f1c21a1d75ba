package sim

import (
	"context"
	"fmt"
	"math/rand"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/peer"
	"github.com/finelog/finelog/store"
)

// ReplicaWorld is a primary and a standby store, each on its own crashable
// disk, linked by the replica port's Records frames (peer.EncodeRecords and
// peer.DecodeRecords over the primary's store.Tail, applied with
// store.ApplyReplicated and store.ApplyFloor) on a lossy in-memory link,
// every step on the test goroutine. A push is acknowledged to its client
// only once the standby's Ack covers it, as --min-replica-acks 1 does.
//
// It models the link, not the peer package's goroutines or its handshake:
// what it checks is the store and codec contract the link relies on.
type ReplicaWorld struct {
	ctx    context.Context
	rng    *rand.Rand
	pfs    *vfs.MemFS
	rfs    *vfs.MemFS
	popts  store.Options
	ropts  store.Options
	P, R   *store.Store
	stream *store.RecordStream // the link's Tail on the primary; nil while down
	// sent is the last seq put on the link, floorSent the last floor.
	sent, floorSent int64
	frames          [][]byte // primary to standby, in order
	acks            []int64  // standby to primary
	synced          int64    // the primary's view of the standby's Ack
	waiting         []store.Ack
	// Acked are the rows the clients were told are stored, by seq.
	Acked map[int64]string
	// AckBeforeSync is the canary: the standby acks a frame on receipt and
	// writes its records at the next delivery.
	AckBeforeSync bool
	unapplied     []store.Record
	// held is a record read from the stream but left for the next frame
	// (a frame carries one floor).
	held     *store.Record
	appended int
}

// NewReplicaWorld opens both stores empty. The primary deletes every
// flushed segment on Retain, so the floor moves often.
func NewReplicaWorld(seed int64) (*ReplicaWorld, error) {
	w := &ReplicaWorld{ctx: context.Background(), rng: rand.New(rand.NewSource(seed)), pfs: vfs.NewMemFS(), rfs: vfs.NewMemFS(), Acked: map[int64]string{}}
	w.popts = store.Options{FS: w.pfs, Dir: "/p", Clock: clock.NewFake(Epoch), MemtableBytes: 4 << 10, RetentionBytes: 1}
	w.ropts = store.Options{FS: w.rfs, Dir: "/r", Clock: clock.NewFake(Epoch), MemtableBytes: 4 << 10, RetentionBytes: 1, Following: true}
	var err error
	if w.P, err = store.Open(w.popts); err != nil {
		return nil, err
	}
	if w.R, err = store.Open(w.ropts); err != nil {
		return nil, err
	}
	return w, nil
}

// Push appends n rows on the primary; their ack waits for the standby.
func (w *ReplicaWorld) Push(n int) error {
	rows := make([]store.Row, n)
	for i := range rows {
		w.appended++
		rows[i] = store.Row{Key: "/job", Source: "stdout", Data: fmt.Sprintf("row %d", w.appended), EpochMS: Epoch.UnixMilli(), Level: store.LevelInfo}
	}
	ack, err := w.P.Append(w.ctx, store.Batch{Rows: rows})
	if err != nil {
		return err
	}
	w.waiting = append(w.waiting, ack)
	w.settle()
	return nil
}

// settle acknowledges the pushes the standby's Acks now cover.
func (w *ReplicaWorld) settle() {
	keep := w.waiting[:0]
	for _, a := range w.waiting {
		if a.Last > w.synced {
			keep = append(keep, a)
			continue
		}
		rows, _ := w.P.Scan(w.ctx, a.First-1, int(a.Last-a.First+1), 0)
		for _, r := range rows {
			if r.Seq <= a.Last {
				w.Acked[r.Seq] = r.Data
			}
		}
	}
	w.waiting = keep
}

// Ship puts what the primary has past the link's position on the link as
// one Records frame, or a floor-only frame when there is nothing new but
// the floor rose; it (re)subscribes from the standby's last seq first.
func (w *ReplicaWorld) Ship() error {
	if w.stream == nil {
		from := w.R.LastSeq()
		st, err := w.P.Tail(from)
		if err != nil {
			return fmt.Errorf("subscribe from %d: %w", from, err)
		}
		w.stream, w.sent, w.floorSent, w.synced = st, from, 0, from
	}
	batch := peer.Records{PrimaryLast: w.P.LastSeq()}
	for len(batch.Records) < 4 && (w.held != nil || w.stream.Position() < w.P.LastSeq()) {
		var rec store.Record
		if w.held != nil {
			rec, w.held = *w.held, nil
		} else {
			var err error
			if rec, err = w.stream.Next(w.ctx); err != nil {
				return err
			}
		}
		if len(batch.Records) > 0 && rec.Floor != batch.Floor {
			w.held = &rec // a frame has one floor
			break
		}
		batch.Floor = rec.Floor
		batch.Records = append(batch.Records, rec)
		w.sent = rec.Last
	}
	if len(batch.Records) == 0 {
		f := w.P.Floor()
		if f <= w.floorSent || f > w.sent {
			return nil
		}
		batch.Floor = f
	}
	w.floorSent = max(w.floorSent, batch.Floor)
	w.frames = append(w.frames, peer.EncodeRecords(nil, batch))
	return nil
}

// Deliver hands the oldest frame on the link to the standby, which writes
// it and acks.
func (w *ReplicaWorld) Deliver() error {
	if w.AckBeforeSync && len(w.unapplied) > 0 {
		for _, rec := range w.unapplied {
			if err := w.R.ApplyReplicated(w.ctx, rec); err != nil {
				return err
			}
		}
		w.unapplied = nil
	}
	if len(w.frames) == 0 {
		return nil
	}
	body := w.frames[0]
	w.frames = w.frames[1:]
	batch, err := peer.DecodeRecords(body)
	if err != nil {
		return err
	}
	if w.AckBeforeSync && len(batch.Records) > 0 {
		w.unapplied = append(w.unapplied, batch.Records...)
		w.acks = append(w.acks, batch.Records[len(batch.Records)-1].Last)
		return nil
	}
	for _, rec := range batch.Records {
		if err := w.R.ApplyReplicated(w.ctx, rec); err != nil {
			return err
		}
	}
	applied := w.R.LastSeq()
	w.acks = append(w.acks, applied)
	if batch.Floor > applied {
		return fmt.Errorf("floor %d past the standby's last seq %d", batch.Floor, applied)
	}
	return w.R.ApplyFloor(w.ctx, batch.Floor)
}

// DeliverAck hands the oldest Ack to the primary.
func (w *ReplicaWorld) DeliverAck() {
	if len(w.acks) == 0 {
		return
	}
	w.synced = max(w.synced, w.acks[0])
	w.acks = w.acks[1:]
	w.settle()
}

// Partition drops everything on the link and closes it.
func (w *ReplicaWorld) Partition() {
	if w.stream != nil {
		w.stream.Close()
		w.stream = nil
	}
	w.frames, w.acks, w.held = nil, nil, nil
	w.unapplied = nil // the canary's unwritten records die with the link
}

// Maintain flushes and retains on the primary and flushes the standby.
func (w *ReplicaWorld) Maintain() error {
	if err := w.P.Flush(w.ctx); err != nil {
		return err
	}
	if err := w.P.Retain(w.ctx); err != nil {
		return err
	}
	if err := w.R.Flush(w.ctx); err != nil {
		return err
	}
	return w.R.Retain(w.ctx)
}

// CrashStandby cuts the standby's power and reopens it.
func (w *ReplicaWorld) CrashStandby() error {
	w.Partition()
	w.unapplied = nil
	w.R.Abandon()
	w.rfs.Crash(w.rng)
	var err error
	w.R, err = store.Open(w.ropts)
	return err
}

// CrashPrimary cuts the primary's power and reopens it; its waiting
// pushes fail (their clients never got an ack).
func (w *ReplicaWorld) CrashPrimary() error {
	w.Partition()
	w.waiting = nil
	w.P.Abandon()
	w.pfs.Crash(w.rng)
	var err error
	w.P, err = store.Open(w.popts)
	return err
}

// CheckStandbyCommitted: every row the standby holds is the primary's, at
// the same seq (the primary may have deleted it by retention since).
func (w *ReplicaWorld) CheckStandbyCommitted() error {
	rrows, err := w.R.Scan(w.ctx, 0, 1<<20, 0)
	if err != nil {
		return err
	}
	prows, err := w.P.Scan(w.ctx, 0, 1<<20, 0)
	if err != nil {
		return err
	}
	pm := make(map[int64]string, len(prows))
	for _, r := range prows {
		pm[r.Seq] = r.Data
	}
	for _, r := range rrows {
		if d, ok := pm[r.Seq]; ok && d != r.Data || !ok && r.Seq > w.P.Floor() {
			return fmt.Errorf("standby holds seq %d %q, the primary has %q (held %v)", r.Seq, r.Data, d, ok)
		}
	}
	return nil
}

// Drain heals the link and steps it until the standby has everything the
// primary has, then checks the copy is exact: the same rows at the same
// seqs and the same retention floor.
func (w *ReplicaWorld) Drain() error {
	for range 1000 {
		if err := w.Ship(); err != nil {
			return err
		}
		for len(w.frames) > 0 {
			if err := w.Deliver(); err != nil {
				return err
			}
		}
		for len(w.acks) > 0 {
			w.DeliverAck()
		}
		if w.R.LastSeq() == w.P.LastSeq() && w.R.Floor() == w.P.Floor() {
			break
		}
	}
	rrows, err := w.R.Scan(w.ctx, 0, 1<<20, 0)
	if err != nil {
		return err
	}
	prows, err := w.P.Scan(w.ctx, 0, 1<<20, 0)
	if err != nil {
		return err
	}
	if w.R.Floor() != w.P.Floor() || len(rrows) != len(prows) {
		return fmt.Errorf("after the drain the standby has floor %d and %d rows, the primary floor %d and %d rows", w.R.Floor(), len(rrows), w.P.Floor(), len(prows))
	}
	for i := range rrows {
		if rrows[i].Seq != prows[i].Seq || rrows[i].Data != prows[i].Data {
			return fmt.Errorf("after the drain the standby's row %d is seq %d %q, the primary's seq %d %q", i, rrows[i].Seq, rrows[i].Data, prows[i].Seq, prows[i].Data)
		}
	}
	return nil
}

// CheckPrimaryDiskLoss is what a promotion after losing the primary's disk
// leaves: every acknowledged row above the standby's floor is on the
// standby with its seq.
func (w *ReplicaWorld) CheckPrimaryDiskLoss() error {
	w.unapplied = nil
	w.R.Abandon()
	w.rfs.Crash(w.rng) // the standby may go down in the same incident
	r, err := store.Open(w.ropts)
	if err != nil {
		return err
	}
	w.R = r
	rows, err := r.Scan(w.ctx, 0, 1<<20, 0)
	if err != nil {
		return err
	}
	have := make(map[int64]string, len(rows))
	for _, row := range rows {
		have[row.Seq] = row.Data
	}
	for seq, data := range w.Acked {
		if seq > r.Floor() && have[seq] != data {
			return fmt.Errorf("acknowledged seq %d %q is not on the standby (it has %q; floor %d, last seq %d)", seq, data, have[seq], r.Floor(), r.LastSeq())
		}
	}
	return nil
}

// Close closes both stores.
func (w *ReplicaWorld) Close() {
	w.Partition()
	w.P.Close()
	w.R.Close()
}
