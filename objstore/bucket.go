// Package objstore keeps sealed segments in an S3-compatible bucket: a small
// Bucket interface with a real client and an in-memory fake, a manifest that
// is crash-safe locally and in the bucket, an uploader step function, and a
// bounded on-disk cache behind an io.ReaderAt for remote-only segments.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Bucket is the object storage finelog needs. Names are relative to the
// bucket's prefix. Every error names the bucket and wraps ErrNotFound,
// ErrUnavailable or ErrVerify when it is one of those.
type Bucket interface {
	// Put stores size bytes from r under name and verifies, before it
	// returns nil, that the bucket holds exactly those bytes (size, and the
	// server's MD5 ETag or the recorded SHA-256). A failed verification is
	// ErrVerify; the object may then exist and is garbage until overwritten.
	Put(ctx context.Context, name string, r io.ReadSeeker, size int64, sum Sum) (ObjectInfo, error)
	// GetRange reads n bytes of name starting at off.
	GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error)
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// List returns the objects whose names start with prefix, sorted by name.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes name; deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// String names the bucket (URL without credentials) for messages.
	String() string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Name string
	Size int64
	// ETag as the server reports it, without quotes.
	ETag string
	// SHA256 is the hex digest recorded with the object at Put, "" if none.
	SHA256 string
}

var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrUnavailable: the bucket could not be reached or refused for now
	// (network, 5xx, 503 SlowDown); retrying later may succeed.
	ErrUnavailable = errors.New("object store unavailable")
	// ErrVerify: the stored object does not match what was uploaded (a torn
	// or corrupted upload); retrying the upload may succeed.
	ErrVerify = errors.New("uploaded object does not match local bytes")
	// ErrDenied: credentials or permissions are wrong; retrying will not help
	// until an operator fixes them.
	ErrDenied = errors.New("object store denied access")
)

// Error is an object-store failure naming the bucket, operation and object.
type Error struct {
	Bucket string
	Op     string
	Name   string
	Err    error
}

func (e *Error) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("object store %s: %s: %v", e.Bucket, e.Op, e.Err)
	}
	return fmt.Sprintf("object store %s: %s %s: %v", e.Bucket, e.Op, e.Name, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether err is a failure that retrying may fix.
func Retryable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrVerify)
}
