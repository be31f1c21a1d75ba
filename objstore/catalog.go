package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"

	"github.com/finelog/finelog/internal/vfs"
)

// catalog keeps the manifest durable in two places: a local file (written
// tmp → fsync → rename → dir fsync) and a generation-numbered object in the
// bucket. The local copy is written first and may be ahead; published is
// the newest generation known to be in the bucket. Only published entries
// count as safely uploaded (a local copy may be evicted, a store rebuilt
// from the bucket will see them).
type catalog struct {
	fs        vfs.FS
	path      string
	bucket    Bucket
	cur       Manifest
	published Manifest
}

// keptManifests is how many older bucket generations stay next to the
// newest, so a reader listing while a new one lands still finds a whole one.
const keptManifests = 2

const localManifestName = "manifest.json"

func openCatalog(ctx context.Context, fsys vfs.FS, dir string, b Bucket) (*catalog, error) {
	c := &catalog{fs: fsys, path: filepath.Join(dir, localManifestName), bucket: b}
	local, haveLocal, err := c.readLocal()
	if err != nil {
		return nil, err
	}
	remote, err := loadBucketManifest(ctx, b)
	if err != nil {
		if haveLocal && (Retryable(err) || errors.Is(err, ErrNoReadableManifest)) {
			// Ingest must not depend on the bucket: start from the local
			// copy and treat nothing as published until it is put again
			// (which also replaces a damaged copy in the bucket). The put
			// is a new generation: the bucket may already hold a verified
			// copy of this one, and a failed re-put of it (torn, then
			// deleted as damaged) would take the only whole manifest.
			local.Generation++
			if err := c.commit(local); err != nil {
				return nil, err
			}
			return c, nil
		}
		return nil, err
	}
	c.published = remote
	c.cur = remote
	if haveLocal && local.Generation >= remote.Generation {
		c.cur = local
	}
	if !haveLocal {
		// Keep the copy just read (empty for a new bucket) on local disk
		// now: the next start then needs no bucket, even if nothing is
		// uploaded before it.
		if err := c.commit(c.cur); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *catalog) readLocal() (Manifest, bool, error) {
	data, err := vfs.ReadFileDurable(c.fs, c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, false, nil
	}
	if err != nil {
		return Manifest{}, false, fmt.Errorf("read manifest: %w", err)
	}
	m, err := DecodeManifest(c.path, data)
	if err != nil {
		return Manifest{}, false, err
	}
	return m, true, nil
}

// LoadManifest reads the newest whole manifest from the bucket (an empty
// one when the bucket has none yet).
func LoadManifest(ctx context.Context, b Bucket) (Manifest, error) { return loadBucketManifest(ctx, b) }

func loadBucketManifest(ctx context.Context, b Bucket) (Manifest, error) {
	objs, err := b.List(ctx, manifestDir)
	if err != nil {
		return Manifest{}, fmt.Errorf("list manifests: %w", err)
	}
	var gens []uint64
	for _, o := range objs {
		if g, ok := manifestGen(o.Name); ok {
			gens = append(gens, g)
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] > gens[j] })
	var firstErr error
	for _, g := range gens {
		name := manifestObject(g)
		m, err := readManifestObject(ctx, b, name)
		if err == nil {
			return m, nil
		}
		if Retryable(err) || errors.Is(err, ErrDenied) {
			return Manifest{}, err
		}
		// A damaged newest copy falls back to the one before it; the
		// segments only it recorded become garbage, never dangling.
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil && len(gens) > 0 {
		return Manifest{}, fmt.Errorf("%s: %w: %w", b, ErrNoReadableManifest, firstErr)
	}
	return Manifest{}, nil
}

// ErrNoReadableManifest: the bucket has manifest objects and none of them
// is whole (only a server that ignores Content-MD5 can keep a torn one, or
// a copy damaged after it was verified). Starting empty would let garbage collection delete every
// segment, so a store without a local manifest refuses to start.
var ErrNoReadableManifest = errors.New("no readable manifest (every manifest/ object is damaged; restore one, or remove them to start the bucket afresh)")

func readManifestObject(ctx context.Context, b Bucket, name string) (Manifest, error) {
	info, err := b.Stat(ctx, name)
	if err != nil {
		return Manifest{}, err
	}
	if info.Size == 0 {
		return Manifest{}, fmt.Errorf("manifest %s is empty", name)
	}
	rc, err := b.GetRange(ctx, name, 0, info.Size)
	if err != nil {
		return Manifest{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return Manifest{}, &Error{Bucket: b.String(), Op: "get", Name: name, Err: fmt.Errorf("%w: %v", ErrUnavailable, err)}
	}
	return DecodeManifest(b.String()+"/"+name, data)
}

// commit makes next the current manifest durably on local disk. It does not
// touch the bucket; publish does.
func (c *catalog) commit(next Manifest) error {
	if err := vfs.WriteFileAtomic(c.fs, c.path, next.Encode()); err != nil {
		return fmt.Errorf("write manifest %s: %w", c.path, err)
	}
	c.cur = next
	return nil
}

// dirty reports whether the bucket's manifest lags the local one.
func (c *catalog) dirty() bool { return c.cur.Generation > c.published.Generation }

// publish puts the current manifest into the bucket and then removes
// generations older than keptManifests. The old ones are removed only
// after the new one is verified, so the bucket always holds a whole copy.
func (c *catalog) publish(ctx context.Context) error {
	m := c.cur
	data := m.Encode()
	size, sum, _ := SumOf(bytes.NewReader(data))
	if _, err := c.bucket.Put(ctx, manifestObject(m.Generation), bytes.NewReader(data), size, sum); err != nil {
		if errors.Is(err, ErrVerify) {
			// The bucket may hold a damaged copy under this generation;
			// removing it keeps a reader from finding it newest. A crash
			// before this leaves it to the fallback to older generations.
			_ = c.bucket.Delete(ctx, manifestObject(m.Generation))
		}
		return fmt.Errorf("publish manifest: %w", err)
	}
	c.published = m
	objs, err := c.bucket.List(ctx, manifestDir)
	if err != nil {
		return nil // old generations are harmless; the next publish retries
	}
	for _, o := range objs {
		if g, ok := manifestGen(o.Name); ok && g+keptManifests < m.Generation {
			_ = c.bucket.Delete(ctx, o.Name)
		}
	}
	return nil
}
