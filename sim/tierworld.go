package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/server"
	"github.com/finelog/finelog/store"
)

// TierWorld is one finelogd with the object tier on: the real server and
// store over a crashable MemFS, tiering to an in-memory bucket whose
// faults (down, slow, 500, 503 SlowDown, torn uploads, lost replies) the
// schedule injects. Every step runs on the test goroutine: the store runs
// without background work and the tier is stepped (server TierRound), so
// a seed replays exactly.
//
// Rows arrive as producer batches (a relay's), so a store rebuilt from the
// bucket alone can be checked to keep dropping re-sent batches.
type TierWorld struct {
	ctx    context.Context
	rng    *rand.Rand
	Clock  *clock.Fake
	FS     *vfs.MemFS
	Bucket *objstore.MemBucket
	Server *server.Server
	Store  *store.Store

	// LocalRetentionBytes is --local-retention-bytes (0: never evict).
	LocalRetentionBytes int64
	Defects             server.Defects

	// Acked are the rows the client was told are stored: seq to data.
	Acked map[int64]string
	// sent are the producer batches in order, for re-sending after a
	// rebuild; sourceSeq is the producer's last seq.
	sent      []store.Batch
	sourceSeq int64

	// down: every bucket operation is refused until Up. pending are
	// one-shot faults for the next operations; a torn fault waits for a
	// Put. quiet suspends all of them (the checker's reads).
	down    bool
	pending []objstore.Fault
	slow    int // the next operations each take slowFor of simulated time
	quiet   bool

	// published: some manifest generation was verified in the bucket
	// (a tier's Published manifest is only ever a verified one).
	published bool

	Trace    *Trace
	Coverage TierCoverage
}

// TierCoverage counts what a run reached, so the properties cannot pass by
// never getting there.
type TierCoverage struct {
	Evicted      int // reads that needed a remote-only segment
	BucketFaults int // faults that fired
	Torn         int // torn uploads that fired
	Crashes      int
	Rebuilt      int // rows a store rebuilt from the bucket alone served
	// TornFirstManifest: runs whose only manifest object was torn.
	TornFirstManifest int
}

const (
	tierDataDir = "/data"
	tierProd    = "east/relay"
	slowFor     = 45 * time.Second
)

// NewTierWorld opens the node on an empty disk and bucket.
func NewTierWorld(seed int64, localRetentionBytes int64, defects server.Defects) (*TierWorld, error) {
	w := &TierWorld{ctx: context.Background(), rng: rand.New(rand.NewSource(seed)), Clock: clock.NewFake(Epoch), FS: vfs.NewMemFS(),
		Bucket: objstore.NewMemBucket("sim"), LocalRetentionBytes: localRetentionBytes, Defects: defects,
		Acked: map[int64]string{}, Trace: &Trace{}}
	w.Bucket.Fault = w.fault
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// fault is the bucket's fault hook: it runs inside every bucket operation.
func (w *TierWorld) fault(op objstore.Op, name string) objstore.Fault {
	if w.quiet {
		return objstore.FaultNone
	}
	if w.slow > 0 {
		w.slow--
		w.Clock.Advance(slowFor) // the request takes that long
	}
	if w.down {
		w.Coverage.BucketFaults++
		return objstore.FaultDown
	}
	if len(w.pending) == 0 {
		return objstore.FaultNone
	}
	f := w.pending[0]
	if f == objstore.FaultTorn && op != objstore.OpPut {
		return objstore.FaultNone
	}
	w.pending = w.pending[1:]
	w.Coverage.BucketFaults++
	if f == objstore.FaultTorn {
		w.Coverage.Torn++
	}
	w.Trace.Addf("bucket fault %d on %s %s", f, op, name)
	return f
}

// open starts the process from whatever is on the disk, as finelogd does:
// the server opens the tier (the manifest, locally or from the bucket),
// then the store on the tier's FS.
func (w *TierWorld) open() error {
	srv, err := server.New(server.Config{DataDir: tierDataDir, FS: w.FS, Clock: w.Clock, MemtableBytes: 4 << 10,
		Defects: w.Defects, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ObjectStore: server.ObjectStoreConfig{Bucket: w.Bucket, Stepped: true, CacheBytes: 64 << 10,
			LocalRetentionBytes: w.LocalRetentionBytes, ReadTimeout: time.Minute}})
	if err != nil {
		return err
	}
	fsys, err := srv.StoreFS(w.ctx)
	if err != nil {
		return fmt.Errorf("open tier: %w", err)
	}
	st, err := store.Open(store.Options{FS: fsys, Dir: path.Join(tierDataDir, "store"), Clock: w.Clock, MemtableBytes: 4 << 10,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if err := srv.ServeStore(w.ctx, st); err != nil {
		st.Close()
		return err
	}
	w.Server, w.Store = srv, st
	return nil
}

// Append sends the producer's next batch of n rows.
func (w *TierWorld) Append(n int) error {
	b := store.Batch{Producer: tierProd, FirstSeq: w.sourceSeq + 1}
	for range n {
		w.sourceSeq++
		b.Rows = append(b.Rows, store.Row{Seq: w.sourceSeq, Key: fmt.Sprintf("/job/%d", w.sourceSeq%3), Source: "stdout",
			Data: fmt.Sprintf("src-%d", w.sourceSeq), EpochMS: Epoch.UnixMilli(), Level: store.LevelInfo})
	}
	b.LastSeq = w.sourceSeq
	ack, err := w.Store.Append(w.ctx, b)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	w.sent = append(w.sent, b)
	for i, r := range b.Rows {
		w.Acked[ack.First+int64(i)] = r.Data
	}
	return nil
}

// Flush seals the memtable into a segment (queued for upload).
func (w *TierWorld) Flush() error { return w.Store.Flush(w.ctx) }

// Compact runs one compaction pass.
func (w *TierWorld) Compact() error { return w.Store.Compact(w.ctx) }

// Round runs one tier round; bucket failures are the tier's to retry.
func (w *TierWorld) Round() error {
	err := w.Server.TierRound(w.ctx)
	if err != nil && !objstore.Retryable(err) && !errors.Is(err, objstore.ErrBackoff) {
		return fmt.Errorf("tier round: %w", err)
	}
	return nil
}

// Fault schedules bucket faults: kind 0 takes the bucket down (Up brings
// it back), 1 slow requests, the others n one-shot faults.
func (w *TierWorld) Fault(kind, n int) {
	switch kind {
	case 0:
		w.down = true
	case 1:
		w.slow += n
	default:
		f := []objstore.Fault{objstore.FaultInternal, objstore.FaultSlowDown, objstore.FaultTorn, objstore.FaultApplyLoseReply}[(kind-2)%4]
		for range n {
			w.pending = append(w.pending, f)
		}
	}
	w.Trace.Addf("bucket faults kind %d x%d", kind, n)
}

// Up ends a bucket outage and drops pending faults.
func (w *TierWorld) Up() { w.down, w.pending, w.slow = false, nil, 0 }

// Advance moves the clock (backoffs end).
func (w *TierWorld) Advance(d time.Duration) { w.Clock.Advance(d) }

// Crash cuts the power: the process dies mid-whatever, the disk keeps only
// what was synced, and the process restarts, whatever the bucket does: the
// store opens remote-only segments from their open stubs.
func (w *TierWorld) Crash() error {
	w.Coverage.Crashes++
	w.Store.Abandon()
	w.Server, w.Store = nil, nil
	w.FS.Crash(w.rng)
	w.Trace.Addf("crash")
	if err := w.open(); err != nil {
		return fmt.Errorf("restart after crash (bucket down %v): %w", w.down, err)
	}
	return nil
}

// CheckAcked (property: every acked row stays readable across crashes,
// bucket faults and local eviction) reads the whole store with the bucket
// answering and compares it with the acked rows.
func (w *TierWorld) CheckAcked() error {
	w.quiet = true
	defer func() { w.quiet = false }()
	if w.Server.Tier().Published().Generation > 0 {
		w.published = true
	}
	rows, err := scanAll(w.ctx, w.Store)
	if err != nil {
		return fmt.Errorf("read back acked rows: %w", err)
	}
	got := map[int64]string{}
	for _, r := range rows {
		got[r.Seq] = r.Data
	}
	for _, seq := range sortedSeqs(w.Acked) {
		if got[seq] != w.Acked[seq] {
			return fmt.Errorf("acked row %d (%q) reads as %q", seq, w.Acked[seq], got[seq])
		}
	}
	if len(got) != len(w.Acked) {
		return fmt.Errorf("store holds %d rows, %d were acked", len(got), len(w.Acked))
	}
	if local, err := store.ListSegments(w.FS, path.Join(tierDataDir, "store")); err == nil && len(local) < w.Store.Stats().Segments {
		w.Coverage.Evicted++
	}
	return nil
}

// CheckRebuild (property: a new node with an empty data dir and the same
// bucket returns every uploaded row exactly once, and still drops the
// relay's re-sent batches of them) drains nothing first: it sees the
// bucket exactly as the run left it.
func (w *TierWorld) CheckRebuild() error {
	w.Up()
	w.quiet = true
	m, err := objstore.LoadManifest(w.ctx, w.Bucket)
	if errors.Is(err, objstore.ErrNoReadableManifest) && !w.published {
		// The first manifest's upload was torn and its cleanup failed:
		// nothing was ever uploaded, and the rebuild refuses with a
		// message naming the remedy rather than guess.
		w.Coverage.TornFirstManifest++
		return nil
	}
	if err != nil {
		return fmt.Errorf("rebuild from the bucket alone: %w", err)
	}
	r := &TierWorld{ctx: w.ctx, rng: w.rng, Clock: w.Clock, FS: vfs.NewMemFS(), Bucket: w.Bucket, quiet: true}
	if err := r.open(); err != nil {
		return fmt.Errorf("rebuild from the bucket alone: %w", err)
	}
	defer r.Store.Close()
	if r.Store.LastSeq() < m.HighestSeq() {
		return fmt.Errorf("rebuilt store's last seq %d is below the highest uploaded %d", r.Store.LastSeq(), m.HighestSeq())
	}
	rows, err := scanAll(w.ctx, r.Store)
	if err != nil {
		return fmt.Errorf("read the rebuilt store: %w", err)
	}
	got := map[int64]string{}
	for _, row := range rows {
		got[row.Seq] = row.Data
	}
	for seq, data := range got {
		if !m.Covers(seq, seq) {
			return fmt.Errorf("rebuilt store serves seq %d, which no manifest entry holds", seq)
		}
		if w.Acked[seq] != data {
			return fmt.Errorf("rebuilt store's row %d is %q, acked as %q", seq, data, w.Acked[seq])
		}
	}
	for seq := range w.Acked {
		if m.Covers(seq, seq) && got[seq] == "" {
			return fmt.Errorf("uploaded row %d (%q) missing after a rebuild from the bucket", seq, w.Acked[seq])
		}
	}
	w.Coverage.Rebuilt += len(got)
	// The relay re-sends every batch: each source row must end up once.
	for _, b := range w.sent {
		if _, err := r.Store.Append(w.ctx, b); err != nil {
			return fmt.Errorf("re-send after rebuild: %w", err)
		}
	}
	rows, err = scanAll(w.ctx, r.Store)
	if err != nil {
		return err
	}
	seen := map[string]int{}
	for _, row := range rows {
		seen[row.Data]++
	}
	var dup []string
	for data, n := range seen {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s x%d", data, n))
		}
	}
	if len(dup) > 0 {
		sort.Strings(dup)
		return fmt.Errorf("after a rebuild from the bucket, the relay's re-sent batches were stored again: %s", strings.Join(dup, ", "))
	}
	return nil
}

// Close stops the node without uploading what is pending.
func (w *TierWorld) Close() {
	if w.Store != nil {
		w.Store.Abandon()
	}
}

func sortedSeqs(m map[int64]string) []int64 {
	out := make([]int64, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
