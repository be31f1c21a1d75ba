package objstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Segment is a sealed local segment the store hands to the tier once it is
// durable (fsynced and renamed into place, directory synced).
type Segment struct {
	// Name is the file name in the store's segment directory.
	Name       string
	Path       string
	First      int64
	Last       int64
	Rows       int64
	MinEpochMS int64
	MaxEpochMS int64
	WrittenMS  int64
	Producers  map[string]int64
}

// TierOptions configure a Tier.
type TierOptions struct {
	FS     vfs.FS
	Dir    string // holds manifest.json
	Bucket Bucket
	Clock  clock.Clock
	// Rand draws backoff jitter; nil seeds one from Clock.
	Rand *rand.Rand
	// MinBackoff and MaxBackoff bound the wait after a failed step; zero
	// means 1s and 2m.
	MinBackoff, MaxBackoff time.Duration
	Registerer             prometheus.Registerer
	// MarksFile names the kept store file holding the producer marks, and
	// MarksAsOf reads the seq its bytes are as of. When set, a segment is
	// uploaded and recorded only once a copy of MarksFile as of at least
	// its last seq is known, and that copy goes into the same manifest
	// generation as the segment's entry: a store rebuilt from the bucket
	// alone then has the mark of every uploaded row, so a relay re-sending
	// any of them is still deduplicated. The store writes the marks right
	// after it renames a flushed segment into place, so the wait is short.
	MarksFile string
	MarksAsOf func(data []byte) (int64, error)
}

// Tier uploads sealed segments and keeps the manifest. Its work is a step
// function: the daemon calls Step from a loop, the simulation from its
// scheduler; Sealed and Deleted only queue work and never block on the
// bucket, so ingest keeps running while the bucket is down.
type Tier struct {
	opts    TierOptions
	metrics *tierMetrics

	mu      sync.Mutex
	cat     *catalog
	queue   []queued          // uploads in seal order
	unpub   []queued          // uploaded, not yet in the bucket's manifest
	deletes []string          // objects to remove once the manifest without them is published
	forget  []string          // objects retention removed, not yet out of the manifest
	files   map[string][]byte // store files to put in the next manifest
	fails   int
	retryAt time.Time
	lastErr error
}

type queued struct {
	seg    Segment
	sealed time.Time
	size   int64
}

// OpenTier reads the manifest (local copy, else the bucket: that is the
// recovery path of an empty data dir).
func OpenTier(ctx context.Context, o TierOptions) (*Tier, error) {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Minute
	}
	if o.Rand == nil {
		seed := uint64(o.Clock.Now().UnixNano())
		o.Rand = rand.New(rand.NewPCG(seed, seed>>1|1))
	}
	if err := o.FS.MkdirAll(o.Dir); err != nil {
		return nil, fmt.Errorf("object store dir %s: %w", o.Dir, err)
	}
	cat, err := openCatalog(ctx, o.FS, o.Dir, o.Bucket)
	if err != nil {
		return nil, err
	}
	t := &Tier{opts: o, cat: cat}
	t.metrics = newTierMetrics(o.Registerer, t)
	return t, nil
}

// Sealed queues seg for upload. A segment the published manifest already
// covers is ignored, so a store may hand over every local segment at start.
func (t *Tier) Sealed(seg Segment) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cat.published.Covers(seg.First, seg.Last) {
		return
	}
	for _, q := range t.queue {
		if q.seg.Name == seg.Name {
			return
		}
	}
	var size int64
	if fi, err := t.opts.FS.Stat(seg.Path); err == nil {
		size = fi.Size()
	}
	t.queue = append(t.queue, queued{seg: seg, sealed: t.opts.Clock.Now(), size: size})
}

// Deleted tells the tier that retention removed these segments: they leave
// the manifest, and their objects are deleted after that is published.
func (t *Tier) Deleted(names []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range names {
		t.queue = slices.DeleteFunc(t.queue, func(q queued) bool { return q.seg.Name == n })
		e, ok := t.cat.cur.FindSegment(n)
		if !ok {
			continue
		}
		// A merge removes its inputs right after its output is renamed in;
		// the output's upload replaces them in the manifest, so dropping
		// them now would leave the bucket without those rows meanwhile.
		covered := slices.ContainsFunc(t.queue, func(q queued) bool { return q.seg.First <= e.First && e.Last <= q.seg.Last })
		if !covered {
			t.forget = append(t.forget, e.Object)
		}
	}
}

// SetFile records a small store file (the producer marks) to keep in the
// manifest from its next generation on.
func (t *Tier) SetFile(name string, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.files == nil {
		t.files = map[string][]byte{}
	}
	t.files[name] = slices.Clone(data)
}

// withFiles puts the pending store files into next.
func (t *Tier) withFiles(next Manifest) Manifest {
	if len(t.files) == 0 {
		return next
	}
	files := make(map[string][]byte, len(next.Files)+len(t.files))
	for k, v := range next.Files {
		files[k] = v
	}
	for k, v := range t.files {
		files[k] = v
	}
	next.Files = files
	return next
}

// Uploaded reports whether the bucket's published manifest holds every row
// of the named segment, so its local copy may be evicted.
func (t *Tier) Uploaded(seg Segment) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cat.published.Covers(seg.First, seg.Last)
}

// Manifest returns the current (local) manifest.
func (t *Tier) Manifest() Manifest {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cat.cur
}

// Published returns the manifest known to be in the bucket.
func (t *Tier) Published() Manifest {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cat.published
}

// Pending reports whether any upload, manifest publish or delete waits.
func (t *Tier) Pending() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pendingLocked()
}

func (t *Tier) pendingLocked() bool {
	return len(t.queue) > 0 || len(t.deletes) > 0 || len(t.forget) > 0 || len(t.files) > 0 || t.cat.dirty()
}

// readyLocked reports whether a Step has work it can do now: pending work
// other than uploads that wait for the producer marks.
func (t *Tier) readyLocked() bool {
	return len(t.queue) > 0 && t.marksCoverLocked(t.queue[0].seg.Last) ||
		len(t.deletes) > 0 || len(t.forget) > 0 || len(t.files) > 0 || t.cat.dirty()
}

// marksAsOfLocked is the seq the newest known copy of the marks file is as
// of (pending, else the current manifest's); ok is false without one.
func (t *Tier) marksAsOfLocked() (int64, bool) {
	data, ok := t.files[t.opts.MarksFile]
	if !ok {
		data, ok = t.cat.cur.Files[t.opts.MarksFile]
	}
	if !ok {
		return 0, false
	}
	asOf, err := t.opts.MarksAsOf(data)
	return asOf, err == nil
}

// marksCoverLocked reports whether the known marks are as of seq last or
// later, so a segment ending at last may be recorded with them.
func (t *Tier) marksCoverLocked(last int64) bool {
	if t.opts.MarksFile == "" || t.opts.MarksAsOf == nil {
		return true
	}
	asOf, ok := t.marksAsOfLocked()
	return ok && asOf >= last
}

// Bucket returns the bucket the tier writes to.
func (t *Tier) Bucket() Bucket { return t.opts.Bucket }

// ErrBackoff is returned by Step while it waits out a backoff.
var ErrBackoff = errors.New("object store: backing off after a failure")

// Step does one unit of work: publish a manifest that lags, delete objects
// the published manifest dropped, or upload the oldest queued segment. It
// returns whether work remains. After a failure it backs off (exponential,
// jittered, on the injected clock) and returns ErrBackoff until the wait is
// over.
func (t *Tier) Step(ctx context.Context) (more bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Clock.Now()
	if now.Before(t.retryAt) {
		return t.pendingLocked(), fmt.Errorf("%w (next try at %s): %w", ErrBackoff, t.retryAt.Format(time.RFC3339), t.lastErr)
	}
	err = t.stepLocked(ctx)
	if err != nil {
		t.fails++
		t.lastErr = err
		d := t.opts.MinBackoff << min(t.fails-1, 20)
		d = min(d, t.opts.MaxBackoff)
		d = d/2 + time.Duration(t.opts.Rand.Int64N(int64(d/2)+1))
		t.retryAt = now.Add(d)
		t.metrics.failed()
	} else {
		t.fails, t.lastErr, t.retryAt = 0, nil, time.Time{}
	}
	return t.readyLocked(), err
}

// waitingForMarks names the segment an idle tier still holds back because
// the producer marks as of its last seq were never written.
func (t *Tier) waitingForMarks() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) == 0 || t.marksCoverLocked(t.queue[0].seg.Last) {
		return nil
	}
	asOf, _ := t.marksAsOfLocked()
	return fmt.Errorf("object store %s: segment %s (seqs %d-%d) not uploaded: the store's %s is as of seq %d, and the segment is uploaded only with marks covering its rows",
		t.opts.Bucket, t.queue[0].seg.Name, t.queue[0].seg.First, t.queue[0].seg.Last, t.opts.MarksFile, asOf)
}

// RetryAt returns when a backed-off Step will try again (zero if not
// backing off).
func (t *Tier) RetryAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.retryAt
}

func (t *Tier) stepLocked(ctx context.Context) error {
	switch {
	case len(t.forget) > 0:
		next := t.withFiles(t.cat.cur.Without(t.forget))
		if err := t.cat.commit(next); err != nil {
			return err
		}
		t.deletes = append(t.deletes, t.forget...)
		t.forget, t.files = nil, nil
		return nil
	case t.cat.dirty():
		if err := t.cat.publish(ctx); err != nil {
			return err
		}
		t.unpub = nil
		return nil
	case len(t.deletes) > 0:
		obj := t.deletes[0]
		if _, still := t.cat.published.Find(obj); still {
			// Re-uploaded after retention queued it; keep it.
			t.deletes = t.deletes[1:]
			return nil
		}
		if err := t.opts.Bucket.Delete(ctx, obj); err != nil {
			return err
		}
		t.deletes = t.deletes[1:]
		return nil
	case len(t.queue) > 0 && t.marksCoverLocked(t.queue[0].seg.Last):
		return t.uploadLocked(ctx)
	case len(t.files) > 0:
		next := t.withFiles(t.cat.cur)
		next.Generation++
		if err := t.cat.commit(next); err != nil {
			return err
		}
		t.files = nil
		return nil
	}
	return nil
}

// uploadLocked uploads the oldest queued segment and records it locally;
// the publish happens on the next step. The object is verified before the
// manifest names it, and the objects of entries it replaces are deleted
// only after the manifest without them is published.
func (t *Tier) uploadLocked(ctx context.Context) error {
	q := t.queue[0]
	seg := q.seg
	f, err := t.opts.FS.Open(seg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		// Removed since it was queued (a merge took it, or retention):
		// whatever replaced it is queued on its own.
		t.queue = t.queue[1:]
		return nil
	}
	if err != nil {
		return fmt.Errorf("upload segment %s: %w", seg.Name, err)
	}
	defer f.Close()
	size, sum, err := SumOf(f)
	if err != nil {
		return fmt.Errorf("upload segment %s: %w", seg.Name, err)
	}
	obj := SegmentObject(seg.Name, sum)
	start := t.opts.Clock.Now()
	if _, err := t.opts.Bucket.Put(ctx, obj, newSectionSeeker(f, size), size, sum); err != nil {
		return fmt.Errorf("upload segment %s: %w", seg.Name, err)
	}
	e := Entry{
		Segment: seg.Name, Object: obj, First: seg.First, Last: seg.Last, Rows: seg.Rows,
		MinEpochMS: seg.MinEpochMS, MaxEpochMS: seg.MaxEpochMS, WrittenMS: seg.WrittenMS,
		Size: size, SHA256: sum.SHA256Hex(), Producers: seg.Producers,
		UploadedMS: t.opts.Clock.Now().UnixMilli(),
	}
	next, dropped := t.cat.cur.With(e)
	next = t.withFiles(next)
	if err := t.cat.commit(next); err != nil {
		return err
	}
	t.queue, t.files = t.queue[1:], nil
	t.unpub = append(t.unpub, q)
	t.deletes = append(t.deletes, dropped...)
	t.metrics.uploaded(size, t.opts.Clock.Now().Sub(start))
	return nil
}

// Drain steps until nothing is pending or ctx ends (graceful shutdown
// within --shutdown-timeout). Backoff waits happen on the tier's clock.
func (t *Tier) Drain(ctx context.Context) error {
	for {
		more, err := t.Step(ctx)
		if err != nil && !errors.Is(err, ErrBackoff) && !Retryable(err) {
			return err
		}
		if !more && err == nil {
			return t.waitingForMarks()
		}
		if ctx.Err() != nil {
			return fmt.Errorf("object store %s: uploads still pending at shutdown: %w", t.opts.Bucket, ctx.Err())
		}
		if wait := t.RetryAt().Sub(t.opts.Clock.Now()); wait > 0 {
			if err := clock.Sleep(ctx, t.opts.Clock, wait); err != nil {
				return fmt.Errorf("object store %s: uploads still pending at shutdown: %w", t.opts.Bucket, err)
			}
		}
	}
}

// Collect deletes segment objects that neither the local nor the published
// manifest references: uploads a crash cut off before they were recorded,
// and merge inputs or retained segments whose delete was lost. It must not
// run concurrently with Step (it takes the same lock).
func (t *Tier) Collect(ctx context.Context) (removed int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	objs, err := t.opts.Bucket.List(ctx, segmentsDir)
	if err != nil {
		return 0, err
	}
	for _, o := range objs {
		if _, ok := t.cat.cur.Find(o.Name); ok {
			continue
		}
		if _, ok := t.cat.published.Find(o.Name); ok {
			continue
		}
		if err := t.opts.Bucket.Delete(ctx, o.Name); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// Lag returns the age of the oldest segment not yet uploaded and the bytes
// waiting.
func (t *Tier) Lag() (time.Duration, int64) { return t.lag() }

// LastError returns the error of the last failed step while backing off.
func (t *Tier) LastError() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastErr
}

// lag returns the age of the oldest sealed segment the bucket's manifest
// does not hold yet (queued, or uploaded but not published) and their bytes.
func (t *Tier) lag() (time.Duration, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b int64
	var oldest time.Time
	for _, q := range append(slices.Clone(t.unpub), t.queue...) {
		b += q.size
		if oldest.IsZero() || q.sealed.Before(oldest) {
			oldest = q.sealed
		}
	}
	if oldest.IsZero() {
		return 0, 0
	}
	return t.opts.Clock.Now().Sub(oldest), b
}
