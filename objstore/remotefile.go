package objstore

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// BlockSize is the unit of ranged GETs and of the cache: large enough that
// a parquet footer or a row group's column chunk takes few requests, small
// enough that a tail read fetches little it does not need.
const BlockSize = 1 << 20

// RemoteFile is an io.ReaderAt over a segment object: ranged GETs of
// BlockSize-aligned blocks through the cache. The store's segment reader
// (parquet-go) reads the footer, the key index and only the row groups a
// read needs through it.
type RemoteFile struct {
	bucket  Bucket
	cache   *Cache
	entry   Entry
	ctx     context.Context
	timeout time.Duration
	clock   clock.Clock
}

// OpenRemote returns a reader for e. Reads use ctx and give up after
// timeout per block (0: no limit), failing with ErrUnavailable naming the
// bucket.
func OpenRemote(ctx context.Context, b Bucket, c *Cache, e Entry, timeout time.Duration, clk clock.Clock) *RemoteFile {
	if clk == nil {
		clk = clock.Real{}
	}
	return &RemoteFile{bucket: b, cache: c, entry: e, ctx: ctx, timeout: timeout, clock: clk}
}

// Size is the object size.
func (r *RemoteFile) Size() int64 { return r.entry.Size }

// ReadAt implements io.ReaderAt.
func (r *RemoteFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", r.entry.Object, off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.entry.Size {
			return n, io.EOF
		}
		idx := pos / BlockSize
		start := idx * BlockSize
		size := min(int64(BlockSize), r.entry.Size-start)
		want := p[n:min(len(p), n+int(start+size-pos))]
		// The digest is part of the key: a re-uploaded object under the
		// same name with other bytes never hits an old block.
		key := fmt.Sprintf("%s@%s#%d", r.entry.Object, r.entry.SHA256, idx)
		if r.cache.readAt(key, want, pos-start) {
			r.cache.m().hit()
			n += len(want)
			continue
		}
		blk, err := r.fetch(key, idx, start, size)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], blk[pos-start:])
	}
	return n, nil
}

func (r *RemoteFile) fetch(key string, idx, start, size int64) ([]byte, error) {
	ctx := r.ctx
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	t0 := r.clock.Now()
	rc, err := r.bucket.GetRange(ctx, r.entry.Object, start, size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, size)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, &Error{Bucket: r.bucket.String(), Op: "get", Name: r.entry.Object, Err: fmt.Errorf("%w: short read of block %d: %v", ErrUnavailable, idx, err)}
	}
	r.cache.m().miss(r.clock.Now().Sub(t0))
	r.cache.put(key, buf)
	return buf, nil
}
