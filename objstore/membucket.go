package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// Op names a bucket operation, for fault injection.
type Op string

// The operations MemBucket reports to its Fault hook.
const (
	OpPut    Op = "put"
	OpGet    Op = "get"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpDelete Op = "delete"
)

// Fault is what MemBucket does instead of (or while) serving a request.
type Fault int

// The faults a real bucket shows.
const (
	FaultNone Fault = iota
	// FaultInternal answers 500 InternalError without doing anything.
	FaultInternal
	// FaultSlowDown answers 503 SlowDown without doing anything.
	FaultSlowDown
	// FaultDown is a refused connection.
	FaultDown
	// FaultTorn stores only the first half of a Put's bytes and reports
	// success to the transfer, as a proxy that cut the body could; Put's
	// verification must catch it.
	FaultTorn
	// FaultApplyLoseReply performs the operation and then fails as if the
	// reply was lost.
	FaultApplyLoseReply
)

// MemBucket is an in-memory Bucket with injected faults, for unit tests and
// the simulation. It behaves like S3: a Put is atomic (readers see the old
// object or the new one), the ETag of an object is the MD5 of its bytes.
type MemBucket struct {
	name string

	// Fault, when set, chooses a fault for each operation.
	Fault func(op Op, name string) Fault
	// Delay, when set, makes each operation wait that long on Clock first.
	Delay func(op Op, name string) time.Duration
	Clock clock.Clock

	mu      sync.Mutex
	objects map[string]memObject
}

type memObject struct {
	data   []byte
	sha256 string
}

// NewMemBucket returns an empty bucket named name (for messages).
func NewMemBucket(name string) *MemBucket {
	return &MemBucket{name: name, objects: map[string]memObject{}, Clock: clock.Real{}}
}

func (b *MemBucket) String() string { return "mem://" + b.name }

func (b *MemBucket) fail(op Op, name string, f Fault) error {
	var err error
	switch f {
	case FaultInternal:
		err = fmt.Errorf("%w: 500 InternalError", ErrUnavailable)
	case FaultSlowDown:
		err = fmt.Errorf("%w: 503 SlowDown: please reduce your request rate", ErrUnavailable)
	case FaultDown:
		err = fmt.Errorf("%w: connection refused", ErrUnavailable)
	case FaultApplyLoseReply:
		err = fmt.Errorf("%w: connection reset after the request was sent", ErrUnavailable)
	default:
		return nil
	}
	return &Error{Bucket: b.String(), Op: string(op), Name: name, Err: err}
}

func (b *MemBucket) before(ctx context.Context, op Op, name string) (Fault, error) {
	if b.Delay != nil {
		if err := clock.Sleep(ctx, b.Clock, b.Delay(op, name)); err != nil {
			return FaultNone, &Error{Bucket: b.String(), Op: string(op), Name: name, Err: fmt.Errorf("%w: %v", ErrUnavailable, err)}
		}
	}
	if err := ctx.Err(); err != nil {
		return FaultNone, &Error{Bucket: b.String(), Op: string(op), Name: name, Err: fmt.Errorf("%w: %v", ErrUnavailable, err)}
	}
	f := FaultNone
	if b.Fault != nil {
		f = b.Fault(op, name)
	}
	if f == FaultApplyLoseReply || f == FaultTorn {
		return f, nil
	}
	return f, b.fail(op, name, f)
}

// Put implements Bucket.
func (b *MemBucket) Put(ctx context.Context, name string, r io.ReadSeeker, size int64, sum Sum) (ObjectInfo, error) {
	f, err := b.before(ctx, OpPut, name)
	if err != nil {
		return ObjectInfo{}, err
	}
	data, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return ObjectInfo{}, &Error{Bucket: b.String(), Op: "put", Name: name, Err: err}
	}
	if f == FaultTorn {
		data = data[:len(data)/2]
	}
	b.mu.Lock()
	b.objects[name] = memObject{data: data, sha256: sum.SHA256Hex()}
	b.mu.Unlock()
	if f == FaultApplyLoseReply {
		return ObjectInfo{}, b.fail(OpPut, name, f)
	}
	info, err := b.Stat(ctx, name)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := verifyStored(info, size, sum); err != nil {
		return ObjectInfo{}, &Error{Bucket: b.String(), Op: "put", Name: name, Err: err}
	}
	return info, nil
}

// GetRange implements Bucket.
func (b *MemBucket) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if _, err := b.before(ctx, OpGet, name); err != nil {
		return nil, err
	}
	b.mu.Lock()
	o, ok := b.objects[name]
	b.mu.Unlock()
	if !ok {
		return nil, &Error{Bucket: b.String(), Op: "get", Name: name, Err: ErrNotFound}
	}
	if off < 0 || n < 0 || off > int64(len(o.data)) {
		return nil, &Error{Bucket: b.String(), Op: "get", Name: name, Err: fmt.Errorf("range %d+%d outside object of %d bytes", off, n, len(o.data))}
	}
	end := min(off+n, int64(len(o.data)))
	return io.NopCloser(bytes.NewReader(o.data[off:end])), nil
}

// Stat implements Bucket.
func (b *MemBucket) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if _, err := b.before(ctx, OpStat, name); err != nil {
		return ObjectInfo{}, err
	}
	b.mu.Lock()
	o, ok := b.objects[name]
	b.mu.Unlock()
	if !ok {
		return ObjectInfo{}, &Error{Bucket: b.String(), Op: "stat", Name: name, Err: ErrNotFound}
	}
	return o.info(name), nil
}

func (o memObject) info(name string) ObjectInfo {
	m := md5.Sum(o.data)
	return ObjectInfo{Name: name, Size: int64(len(o.data)), ETag: hex.EncodeToString(m[:]), SHA256: o.sha256}
}

// List implements Bucket.
func (b *MemBucket) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if _, err := b.before(ctx, OpList, prefix); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ObjectInfo
	for name, o := range b.objects {
		if strings.HasPrefix(name, prefix) {
			out = append(out, o.info(name))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete implements Bucket.
func (b *MemBucket) Delete(ctx context.Context, name string) error {
	f, err := b.before(ctx, OpDelete, name)
	if err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.objects, name)
	b.mu.Unlock()
	return b.fail(OpDelete, name, f)
}

// Corrupt flips a byte of a stored object (tests of read-side checks).
func (b *MemBucket) Corrupt(name string, at int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[name]
	if !ok || at >= len(o.data) {
		return errors.New("no such object or offset")
	}
	o.data = bytes.Clone(o.data)
	o.data[at] ^= 0xff
	b.objects[name] = o
	return nil
}

// Names lists the stored object names, sorted.
func (b *MemBucket) Names() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.objects))
	for n := range b.objects {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
