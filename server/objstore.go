package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

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
	// ScanInterval is how often sealed segments are looked for (0: 2s).
	ScanInterval time.Duration
}

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

// tierRunner drives the object tier: it hands every sealed segment of the
// store dir to the tier, tells it which segments the store deleted, and
// steps it. Segments are found by listing the store dir: the store renames
// a segment into place only once it is durable, and a merge's output covers
// its inputs, which the manifest replaces.
type tierRunner struct {
	tier     *objstore.Tier
	fs       vfs.FS
	dir      string
	clk      clock.Clock
	interval time.Duration
	log      logger

	// seen are the segment files this process has seen in the store dir.
	// A manifest entry whose file was seen and is now gone without a local
	// segment covering it was deleted by retention, so it leaves the
	// bucket too. Files never seen (after a restart) are left alone.
	seen map[string]bool

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type logger interface {
	Warn(msg string, args ...any)
	Info(msg string, args ...any)
}

func (s *Server) startTier(ctx context.Context) error {
	if s.bucket == nil {
		return nil
	}
	tier, err := objstore.OpenTier(ctx, objstore.TierOptions{
		FS: s.cfg.FS, Dir: filepath.Join(s.cfg.DataDir, "objstore"), Bucket: s.bucket,
		Clock: s.clk, Registerer: s.reg,
	})
	if err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	iv := s.cfg.ObjectStore.ScanInterval
	if iv <= 0 {
		iv = 2 * time.Second
	}
	r := &tierRunner{tier: tier, fs: s.cfg.FS, dir: filepath.Join(s.cfg.DataDir, "store"), clk: s.clk, interval: iv,
		log: s.log.With("component", "objstore", "bucket", s.bucket.String()), seen: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	s.tier = r
	go r.loop()
	return nil
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

// round scans the store dir once and steps the tier until it is idle or
// backing off.
func (r *tierRunner) round(ctx context.Context) error {
	if err := r.scan(); err != nil {
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
			return nil
		}
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
	return nil
}

func (r *tierRunner) scan() error {
	segs, err := store.ListSegments(r.fs, r.dir)
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, sg := range segs {
		present[sg.Name] = true
		r.seen[sg.Name] = true
		r.tier.Sealed(objstore.Segment{Name: sg.Name, Path: sg.Path, First: sg.First, Last: sg.Last, Rows: sg.Rows,
			MinEpochMS: sg.MinEpochMS, MaxEpochMS: sg.MaxEpochMS, WrittenMS: sg.WrittenMS, Producers: sg.Producers})
	}
	var gone []string
	for _, e := range r.tier.Manifest().Entries {
		if present[e.Segment] || !r.seen[e.Segment] {
			continue
		}
		covered := false
		for _, sg := range segs {
			if sg.First <= e.First && e.Last <= sg.Last {
				covered = true
				break
			}
		}
		if !covered {
			gone = append(gone, e.Segment)
		}
	}
	if len(gone) > 0 {
		r.tier.Deleted(gone)
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
	if err := r.scan(); err != nil {
		return err
	}
	return r.tier.Drain(ctx)
}
