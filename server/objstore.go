package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

// ObjectStoreConfig tiers sealed segments to an S3-compatible bucket.
type ObjectStoreConfig struct {
	// URL is --object-store (s3://BUCKET/PREFIX?endpoint=...&region=...);
	// empty means no object store.
	URL string
	// CredentialsFile is --object-store-credentials-file (AWS shared
	// credentials INI, profile CredentialsProfile or "default"); empty
	// means Credentials (from the AWS_* environment).
	CredentialsFile    string
	CredentialsProfile string
	Credentials        objstore.Credentials
	// Bucket, when set (tests, the simulation), is used instead of URL.
	Bucket objstore.Bucket
	// ScanInterval is how often the tier reconciles the store dir with the
	// manifest and evicts local copies (0: 2s).
	ScanInterval time.Duration
	// CacheBytes bounds the on-disk cache of remote segment blocks
	// (--object-cache-bytes; 0: no cache).
	CacheBytes int64
	// LocalRetentionAge evicts local copies of uploaded segments written
	// longer ago than this (--local-retention-age; 0: keep).
	LocalRetentionAge time.Duration
	// LocalRetentionBytes evicts the oldest uploaded local copies while
	// local segments exceed this (--local-retention-bytes; 0: no limit).
	LocalRetentionBytes int64
	// ReadTimeout bounds one ranged GET of a remote segment (0: 30s).
	ReadTimeout time.Duration
	// Stepped runs no tier goroutine: the caller (the simulation) calls
	// TierRound from its scheduler instead.
	Stepped bool
}

// DefaultObjectCacheBytes is --object-cache-bytes' default.
const DefaultObjectCacheBytes = 1 << 30

// openBucket resolves the object store configuration at start, so a bad
// URL or credentials file stops the daemon before it binds its port.
func openBucket(fsys vfs.FS, c ObjectStoreConfig) (objstore.Bucket, error) {
	if c.Bucket != nil {
		return c.Bucket, nil
	}
	if c.URL == "" {
		return nil, nil
	}
	loc, err := objstore.ParseLocation(c.URL)
	if err != nil {
		return nil, err
	}
	creds := c.Credentials
	if c.CredentialsFile != "" {
		data, err := vfs.ReadFile(fsys, c.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("--object-store-credentials-file: %w", err)
		}
		if creds, err = objstore.ParseCredentialsFile(c.CredentialsFile, data, c.CredentialsProfile); err != nil {
			return nil, err
		}
	}
	return objstore.OpenS3(loc, creds, objstore.S3Options{})
}

// tierRunner drives the object tier: the store runs on a TierFS, which
// queues each segment renamed into place and mirrors segment removals to
// the bucket; the runner steps the tier, reconciles the store dir with the
// manifest (segments a crash left unqueued), and evicts uploaded local
// copies past --local-retention-age/--local-retention-bytes.
type tierRunner struct {
	tier     *objstore.Tier
	tfs      *objstore.TierFS
	fs       vfs.FS
	dir      string
	clk      clock.Clock
	interval time.Duration
	cfg      ObjectStoreConfig
	log      logger
	defects  Defects

	// roundMu serializes rounds: the loop's and an explicit one (a test,
	// the final upload at shutdown) must not run at once.
	roundMu   sync.Mutex
	collected time.Time // last garbage collection

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type logger interface {
	Warn(msg string, args ...any)
	Info(msg string, args ...any)
}

func describeSegment(fsys vfs.FS, p string) (objstore.Segment, error) {
	sg, err := store.DescribeSegment(fsys, p)
	if err != nil {
		return objstore.Segment{}, err
	}
	return toTierSegment(sg), nil
}

func toTierSegment(sg store.SegmentInfo) objstore.Segment {
	return objstore.Segment{Name: sg.Name, Path: sg.Path, First: sg.First, Last: sg.Last, Rows: sg.Rows,
		MinEpochMS: sg.MinEpochMS, MaxEpochMS: sg.MaxEpochMS, WrittenMS: sg.WrittenMS, Producers: sg.Producers}
}

// openTier opens the manifest (from the bucket when the data dir has none:
// a store rebuilt from the bucket alone) and returns the FS the store must
// use. Without an object store it returns the plain FS.
func (s *Server) openTier(ctx context.Context, storeDir string) (vfs.FS, error) {
	if s.bucket == nil {
		return s.cfg.FS, nil
	}
	oc := s.cfg.ObjectStore
	tier, err := objstore.OpenTier(ctx, objstore.TierOptions{
		FS: s.cfg.FS, Dir: filepath.Join(s.cfg.DataDir, "objstore"), Bucket: s.bucket,
		Clock: s.clk, Registerer: s.reg, MarksFile: store.ProducersFile, MarksAsOf: store.ProducersAsOf,
	})
	if err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	cache, err := objstore.OpenCache(s.cfg.FS, filepath.Join(s.cfg.DataDir, "objcache"), oc.CacheBytes, s.reg)
	if err != nil {
		return nil, err
	}
	if oc.ReadTimeout <= 0 {
		oc.ReadTimeout = 30 * time.Second
	}
	tfs := objstore.NewTierFS(objstore.TierFSOptions{Local: s.cfg.FS, Dir: storeDir, IsSegment: store.IsSegmentName,
		Describe: describeSegment, Tier: tier, Cache: cache, Files: []string{store.ProducersFile}, ReadTimeout: oc.ReadTimeout,
		OpenRanges: store.OpenRanges, StubDir: filepath.Join(s.cfg.DataDir, "objstore", "stubs")})
	iv := oc.ScanInterval
	if iv <= 0 {
		iv = 2 * time.Second
	}
	s.tier = &tierRunner{tier: tier, tfs: tfs, fs: s.cfg.FS, dir: storeDir, clk: s.clk, interval: iv, cfg: oc,
		log: s.log.With("component", "objstore", "bucket", s.bucket.String()), defects: s.cfg.Defects,
		stop: make(chan struct{}), done: make(chan struct{})}
	return tfs, nil
}

func (s *Server) startTier() {
	if s.tier == nil {
		return
	}
	if s.cfg.ObjectStore.Stepped {
		close(s.tier.done) // no loop: the caller runs TierRound
		return
	}
	go s.tier.loop()
}

func (r *tierRunner) loop() {
	defer close(r.done)
	failing := false
	for {
		if err := r.round(context.Background()); err != nil {
			if !failing {
				r.log.Warn("object store: uploads failing; retrying with backoff (ingest continues on local disk)", "err", err)
			}
			failing = true
		} else if failing {
			r.log.Info("object store: uploads recovered")
			failing = false
		}
		wait := r.interval
		if at := r.tier.RetryAt(); !at.IsZero() {
			wait = max(min(wait, at.Sub(r.clk.Now())), time.Millisecond)
		}
		t := r.clk.NewTimer(wait)
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// round reconciles once, steps the tier until it is idle or backing off,
// then evicts.
func (r *tierRunner) round(ctx context.Context) error {
	r.roundMu.Lock()
	defer r.roundMu.Unlock()
	if err := r.reconcile(); err != nil {
		return err
	}
	for i := 0; i < 1000; i++ {
		select {
		case <-r.stop:
			return nil
		default:
		}
		more, err := r.tier.Step(ctx)
		if errors.Is(err, objstore.ErrBackoff) {
			break
		}
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if err := r.evict(); err != nil {
		return err
	}
	return r.collect(ctx)
}

// collectEvery is how often unreferenced segment objects (uploads a crash
// cut off before the manifest named them, deletes that were lost) are
// removed; the first time is the first idle round after start.
const collectEvery = time.Hour

func (r *tierRunner) collect(ctx context.Context) error {
	now := r.clk.Now()
	if !r.collected.IsZero() && now.Sub(r.collected) < collectEvery || r.tier.Pending() {
		return nil
	}
	n, err := r.tier.Collect(ctx)
	if err != nil {
		return err
	}
	if err := r.tfs.CollectStubs(); err != nil {
		return err
	}
	r.collected = now
	if n > 0 {
		r.log.Info("object store: removed unreferenced segment objects", "objects", n)
	}
	return nil
}

// reconcile hands every local segment to the tier (it ignores those the
// published manifest covers): a segment whose rename a crash cut off from
// its upload is found here.
func (r *tierRunner) reconcile() error {
	if err := r.tfs.CaptureFiles(); err != nil {
		return err
	}
	segs, err := store.ListSegments(r.fs, r.dir)
	if err != nil {
		return err
	}
	for _, sg := range segs {
		r.tier.Sealed(toTierSegment(sg))
	}
	return nil
}

// evict removes local copies of published segments, oldest first, that are
// older than LocalRetentionAge or while local segments exceed
// LocalRetentionBytes. A segment not yet in the published manifest is never
// evicted, whatever the limits: past them the local disk keeps filling and
// appends fail with the store's disk-full error.
func (r *tierRunner) evict() error {
	if r.cfg.LocalRetentionAge <= 0 && r.cfg.LocalRetentionBytes <= 0 {
		return nil
	}
	segs, err := store.ListSegments(r.fs, r.dir)
	if err != nil {
		return err
	}
	var total int64
	for _, sg := range segs {
		total += sg.Size
	}
	now := r.clk.Now().UnixMilli()
	for _, sg := range segs { // seq order: oldest first
		old := r.cfg.LocalRetentionAge > 0 && now-sg.WrittenMS > r.cfg.LocalRetentionAge.Milliseconds()
		over := r.cfg.LocalRetentionBytes > 0 && total > r.cfg.LocalRetentionBytes
		if !old && !over {
			continue
		}
		if !r.tier.Uploaded(toTierSegment(sg)) && !r.defects.EvictUnuploaded {
			continue
		}
		evict := r.tfs.Evict
		if r.defects.EvictUnuploaded {
			evict = r.tfs.EvictUnchecked
		}
		if err := evict(sg.Name); errors.Is(err, objstore.ErrHeld) {
			continue // a merge reads it; the next round evicts the output
		} else if err != nil {
			return err
		}
		total -= sg.Size
	}
	return nil
}

// close stops the loop and then uploads what is pending (the segment the
// store's close flushed included) within timeout.
func (r *tierRunner) close(timeout time.Duration) error {
	r.once.Do(func() { close(r.stop) })
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := r.reconcile(); err != nil {
		return err
	}
	return r.tier.Drain(ctx)
}

// diskFull says, on a full local disk, whether segments wait for the
// bucket: then the cause is the bucket (down, refusing) and the message
// names it. The retry marking of ce is kept.
func (r *tierRunner) diskFull(ce *connect.Error) *connect.Error {
	_, waiting := r.tier.Lag()
	if waiting == 0 {
		return ce
	}
	msg := fmt.Sprintf("finelogd's disk is full while %d bytes of sealed segments wait to be uploaded to the object store %s", waiting, r.tier.Bucket())
	if err := r.tier.LastError(); err != nil {
		msg += fmt.Sprintf(" (last upload error: %v)", err)
	}
	out := connect.NewError(ce.Code(), errors.New(msg+"; nothing was written: retry once the bucket takes uploads again or space is freed"))
	for k, v := range ce.Meta() {
		out.Meta()[k] = v
	}
	return out
}
