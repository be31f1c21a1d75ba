package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/finelog/finelog/internal/vfs"
)

// TierFS is the store's filesystem when segments tier to a bucket. It is
// the local FS, except in the segment directory: a segment whose local copy
// was evicted (or that a store rebuilt from the bucket never had) is still
// listed, and opening it returns a file read through ranged GETs and the
// cache; renaming a new segment into place queues its upload; removing a
// segment (retention, or a merge's inputs) removes it from the bucket too.
// The store needs no knowledge of the bucket.
type TierFS struct {
	vfs.FS
	dir      string
	isSeg    func(name string) bool
	describe func(fsys vfs.FS, path string) (Segment, error)
	tier     *Tier
	cache    *Cache
	kept     []string
	ctx      context.Context
	timeout  time.Duration

	openRanges func(f vfs.File, size int64) ([][2]int64, error)
	stubDir    string

	mu    sync.Mutex
	files map[string][]*tieredFile // open handles on each segment name
	held  map[string]int           // segments a merge reads: not evicted meanwhile
}

// TierFSOptions configure NewTierFS.
type TierFSOptions struct {
	Local vfs.FS
	// Dir is the store's segment directory.
	Dir string
	// IsSegment says which names in Dir are sealed segments.
	IsSegment func(name string) bool
	// Describe reads a local segment's seq range and metadata.
	Describe func(fsys vfs.FS, path string) (Segment, error)
	Tier     *Tier
	Cache    *Cache
	// Files are small files in Dir kept in the manifest (the producer
	// marks): captured whenever one is renamed into place, and served from
	// the manifest while there is no local copy (a rebuild).
	Files []string
	// ReadTimeout bounds one ranged GET (0: none).
	ReadTimeout time.Duration
	// Context ends remote reads when the daemon stops.
	Context context.Context
	// OpenRanges returns the byte ranges the store reads to open the
	// segment f (store.OpenRanges), and StubDir is where they are kept
	// when its local copy is evicted, so the store opens while the bucket
	// is down. Either empty: no stubs (a restart then needs the bucket).
	OpenRanges func(f vfs.File, size int64) ([][2]int64, error)
	StubDir    string
}

// NewTierFS wraps o.Local.
func NewTierFS(o TierFSOptions) *TierFS {
	if o.Context == nil {
		o.Context = context.Background()
	}
	return &TierFS{FS: o.Local, dir: filepath.Clean(o.Dir), isSeg: o.IsSegment, describe: o.Describe,
		tier: o.Tier, cache: o.Cache, kept: o.Files, ctx: o.Context, timeout: o.ReadTimeout, files: map[string][]*tieredFile{}, held: map[string]int{},
		openRanges: o.OpenRanges, stubDir: o.StubDir}
}

// segment returns the base name when p is a segment in the directory.
func (t *TierFS) segment(p string) (string, bool) {
	p = filepath.Clean(p)
	if filepath.Dir(p) != t.dir {
		return "", false
	}
	base := filepath.Base(p)
	return base, t.isSeg(base)
}

// keptFile returns the base name when p is one of the files kept in the
// manifest.
func (t *TierFS) keptFile(p string) (string, bool) {
	p = filepath.Clean(p)
	base := filepath.Base(p)
	return base, filepath.Dir(p) == t.dir && slices.Contains(t.kept, base)
}

// List adds the segments that live only in the bucket.
func (t *TierFS) List(dir string) ([]string, error) {
	names, err := t.FS.List(dir)
	if err != nil || filepath.Clean(dir) != t.dir {
		return names, err
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	for _, e := range t.tier.Manifest().Entries {
		if e.Segment != "" && !have[e.Segment] && t.isSeg(e.Segment) {
			names = append(names, e.Segment)
			have[e.Segment] = true
		}
	}
	sort.Strings(names)
	return names, nil
}

// Stat answers for remote-only segments from the manifest.
func (t *TierFS) Stat(name string) (fs.FileInfo, error) {
	fi, err := t.FS.Stat(name)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return fi, err
	}
	if k, ok := t.keptFile(name); ok {
		if data, found := t.tier.Manifest().Files[k]; found {
			return remoteInfo{name: k, size: int64(len(data))}, nil
		}
		return nil, err
	}
	seg, ok := t.segment(name)
	if !ok {
		return nil, err
	}
	e, found := t.tier.Manifest().FindSegment(seg)
	if !found {
		return nil, err
	}
	return remoteInfo{name: seg, size: e.Size, mod: time.UnixMilli(e.UploadedMS)}, nil
}

// Open opens a segment locally when it is there, else from the bucket.
func (t *TierFS) Open(name string) (vfs.File, error) {
	seg, ok := t.segment(name)
	if !ok {
		f, err := t.FS.Open(name)
		if k, kept := t.keptFile(name); kept && errors.Is(err, fs.ErrNotExist) {
			if data, found := t.tier.Manifest().Files[k]; found {
				return &keptCopy{Reader: bytes.NewReader(data), name: k}, nil
			}
		}
		return f, err
	}
	f, err := t.FS.Open(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	tf := &tieredFile{owner: t, name: seg}
	if err == nil {
		tf.local = f
	} else {
		e, found := t.tier.Manifest().FindSegment(seg)
		if !found {
			return nil, err
		}
		tf.remote = OpenRemote(t.ctx, t.tier.Bucket(), t.cache, e, t.timeout, nil)
		tf.size = e.Size
		tf.stub = t.loadStub(seg, e)
	}
	t.mu.Lock()
	t.files[seg] = append(t.files[seg], tf)
	t.mu.Unlock()
	return tf, nil
}

// CaptureFiles hands the tier the local copy of every kept file that
// differs from the one the manifest holds: a store that had its files
// before the tier was turned on (or a capture a crash cut off) gets them
// into the manifest.
func (t *TierFS) CaptureFiles() error {
	m := t.tier.Manifest()
	for _, k := range t.kept {
		data, err := vfs.ReadFile(t.FS, filepath.Join(t.dir, k))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if old, ok := m.Files[k]; !ok || !bytes.Equal(old, data) {
			t.tier.SetFile(k, data)
		}
	}
	return nil
}

// Rename queues a segment renamed into place for upload. The store renames
// a segment only after fsyncing it; the upload happens on a later Step.
func (t *TierFS) Rename(oldname, newname string) error {
	if err := t.FS.Rename(oldname, newname); err != nil {
		return err
	}
	if k, ok := t.keptFile(newname); ok {
		if data, err := vfs.ReadFile(t.FS, newname); err == nil {
			t.tier.SetFile(k, data)
		}
		return nil
	}
	if _, ok := t.segment(newname); ok && t.describe != nil {
		if s, err := t.describe(t.FS, newname); err == nil {
			t.tier.Sealed(s)
		}
		// A footer that cannot be read here is found by the store's own
		// open; the periodic reconcile retries the upload.
	}
	return nil
}

// Remove deletes a segment everywhere: locally, and (through the tier,
// after the manifest without it is published) in the bucket. A segment
// whose rows a local segment or a queued upload covers (a merge's input)
// leaves the manifest when that one is uploaded instead.
func (t *TierFS) Remove(name string) error {
	seg, ok := t.segment(name)
	if !ok {
		return t.FS.Remove(name)
	}
	err := t.FS.Remove(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	_, inBucket := t.tier.Manifest().FindSegment(seg)
	t.tier.Deleted([]string{seg})
	t.removeStub(seg)
	if inBucket {
		return nil
	}
	return err
}

// ErrHeld: the segment is an input of a running merge and keeps its local
// copy until the merge ends.
var ErrHeld = errors.New("segment is being merged")

// Remote reports whether the segment at p has no local copy (it lives only
// in the bucket). It implements store.TieredFS.
func (t *TierFS) Remote(p string) bool {
	if _, ok := t.segment(p); !ok {
		return false
	}
	_, err := t.FS.Stat(p)
	return errors.Is(err, fs.ErrNotExist)
}

// HoldLocal keeps the named segments' local copies until release: Evict
// refuses them meanwhile, so a merge reads its inputs from local disk and
// never from the bucket. ok is false, and nothing is held, when one of
// them is already remote. It implements store.TieredFS.
func (t *TierFS) HoldLocal(paths []string) (release func(), ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var segs []string
	for _, p := range paths {
		seg, isSeg := t.segment(p)
		if !isSeg {
			continue
		}
		if _, err := t.FS.Stat(p); err != nil {
			return func() {}, false
		}
		segs = append(segs, seg)
	}
	for _, s := range segs {
		t.held[s]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			for _, s := range segs {
				if t.held[s]--; t.held[s] <= 0 {
					delete(t.held, s)
				}
			}
		})
	}, true
}

// Evict drops the local copy of a segment that the published manifest
// holds: open handles switch to the bucket first, then the file is removed.
// A segment a merge holds (HoldLocal) is refused with ErrHeld.
func (t *TierFS) Evict(seg string) error {
	e, ok := t.tier.Published().FindSegment(seg)
	if !ok {
		return fmt.Errorf("evict %s: not in the bucket's published manifest", seg)
	}
	return t.evict(seg, e)
}

// EvictUnchecked evicts without asking the published manifest: only the
// simulation's canary (server.Defects.EvictUnuploaded) uses it, to show
// the harness catches a tier that drops a local copy too early.
func (t *TierFS) EvictUnchecked(seg string) error {
	e, _ := t.tier.Manifest().FindSegment(seg)
	return t.evict(seg, e)
}

func (t *TierFS) evict(seg string, e Entry) error {
	p := filepath.Join(t.dir, seg)
	var stub *openStub
	if e.Object != "" {
		if err := t.writeStub(seg, e); err != nil {
			return fmt.Errorf("evict %s: keep what opening it reads: %w", seg, err)
		}
		stub = t.loadStub(seg, e)
	}
	t.mu.Lock()
	if t.held[seg] > 0 {
		t.mu.Unlock()
		return fmt.Errorf("evict %s: %w", seg, ErrHeld)
	}
	for _, f := range t.files[seg] {
		f.toRemote(OpenRemote(t.ctx, t.tier.Bucket(), t.cache, e, t.timeout, nil), e.Size, stub)
	}
	// Removed under mu, so a HoldLocal cannot see the file and then lose it.
	err := t.FS.Remove(p)
	t.mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("evict %s: %w", p, err)
	}
	return t.FS.SyncDir(t.dir)
}

func (t *TierFS) closed(f *tieredFile) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hs := t.files[f.name]
	for i, h := range hs {
		if h == f {
			hs = append(hs[:i], hs[i+1:]...)
			break
		}
	}
	if len(hs) == 0 {
		delete(t.files, f.name)
	} else {
		t.files[f.name] = hs
	}
}

// tieredFile is a read-only segment handle whose bytes come from the local
// file until it is evicted, then from the bucket.
type tieredFile struct {
	owner *TierFS
	name  string

	mu     sync.RWMutex
	local  vfs.File
	remote *RemoteFile
	stub   *openStub // what opening the segment reads, kept locally
	size   int64
	off    int64
	closed bool
}

func (f *tieredFile) toRemote(r *RemoteFile, size int64, stub *openStub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.remote != nil {
		return
	}
	f.local.Close()
	f.local, f.remote, f.size, f.stub = nil, r, size, stub
}

func (f *tieredFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, fs.ErrClosed
	}
	if f.local != nil {
		return f.local.ReadAt(p, off)
	}
	if f.stub != nil && f.stub.readAt(p, off) {
		return len(p), nil
	}
	return f.remote.ReadAt(p, off)
}

func (f *tieredFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *tieredFile) Write([]byte) (int, error) {
	return 0, fmt.Errorf("segment %s is read-only", f.name)
}

func (f *tieredFile) Sync() error { return nil }

func (f *tieredFile) Stat() (fs.FileInfo, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.local != nil {
		return f.local.Stat()
	}
	return remoteInfo{name: f.name, size: f.size}, nil
}

func (f *tieredFile) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return fs.ErrClosed
	}
	f.closed = true
	var err error
	if f.local != nil {
		err = f.local.Close()
	}
	f.mu.Unlock()
	f.owner.closed(f)
	return err
}

// keptCopy is a read-only file served from the manifest's copy.
type keptCopy struct {
	*bytes.Reader
	name string
}

func (k *keptCopy) Write([]byte) (int, error) {
	return 0, fmt.Errorf("%s: read-only copy from the manifest", k.name)
}
func (k *keptCopy) Close() error { return nil }
func (k *keptCopy) Sync() error  { return nil }
func (k *keptCopy) Stat() (fs.FileInfo, error) {
	return remoteInfo{name: k.name, size: k.Size()}, nil
}

type remoteInfo struct {
	name string
	size int64
	mod  time.Time
}

func (r remoteInfo) Name() string       { return path.Base(r.name) }
func (r remoteInfo) Size() int64        { return r.size }
func (r remoteInfo) Mode() fs.FileMode  { return 0o444 }
func (r remoteInfo) ModTime() time.Time { return r.mod }
func (r remoteInfo) IsDir() bool        { return false }
func (r remoteInfo) Sys() any           { return nil }
