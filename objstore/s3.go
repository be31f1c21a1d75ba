package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// maxSinglePut is S3's limit for one PUT. Segments are uploaded in one PUT
// so the server's ETag is the MD5 of the bytes it stored, which is what Put
// verifies; a segment larger than this is refused with a clear error.
const maxSinglePut = 5 << 30

// metaSHA256 is the user metadata key holding the object's SHA-256, so a
// reader (or an operator with aws s3api head-object) can check it.
const metaSHA256 = "Finelog-Sha256"

// S3 is a Bucket on an S3-compatible server through minio-go, chosen over
// gocloud.dev/blob because finelog needs path-style addressing of
// S3-compatible endpoints, ranged reads and the server's ETag, which
// minio-go exposes directly; GCS is reached through its S3
// interoperability endpoint.
type S3 struct {
	loc    Location
	client *minio.Client
}

// S3Options are optional knobs of OpenS3.
type S3Options struct {
	// Transport overrides the HTTP transport (tests, proxies).
	Transport http.RoundTripper
}

// OpenS3 returns a Bucket for loc signed with creds. It does not contact
// the server; the first operation does.
func OpenS3(loc Location, creds Credentials, opts S3Options) (*S3, error) {
	var cp *credentials.Credentials
	if creds.Anonymous() {
		cp = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	} else {
		cp = credentials.NewStaticV4(creds.AccessKeyID, creds.SecretAccessKey.Reveal(), creds.SessionToken.Reveal())
	}
	lookup := minio.BucketLookupDNS
	if loc.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(loc.Endpoint, &minio.Options{
		Creds:        cp,
		Secure:       loc.Secure,
		Region:       loc.Region,
		BucketLookup: lookup,
		Transport:    opts.Transport,
		// The uploader retries with its own backoff on the injected clock;
		// minio-go's internal retries would hide the failure from it.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %v", loc, err)
	}
	return &S3{loc: loc, client: c}, nil
}

func (s *S3) String() string { return s.loc.String() }

func (s *S3) key(name string) string { return s.loc.Prefix + name }

func (s *S3) wrap(op, name string, err error) error {
	return &Error{Bucket: s.String(), Op: op, Name: name, Err: classify(err)}
}

// classify maps a minio-go error to our sentinels by HTTP status and S3
// error code, never by message text.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	r := minio.ToErrorResponse(err)
	switch {
	case r.Code == "NoSuchKey" || r.Code == "NotFound" || r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket":
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case r.Code == "BadDigest" || r.Code == "InvalidDigest" || r.Code == "IncompleteBody" || r.Code == "XAmzContentChecksumMismatch":
		return fmt.Errorf("%w: %v", ErrVerify, err)
	case r.StatusCode == http.StatusForbidden || r.StatusCode == http.StatusUnauthorized || r.Code == "NoSuchBucket":
		return fmt.Errorf("%w: %v", ErrDenied, err)
	case r.StatusCode >= 500 || r.StatusCode == http.StatusTooManyRequests || r.StatusCode == http.StatusRequestTimeout || r.Code == "SlowDown":
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case r.StatusCode == 0:
		// No HTTP response at all: the connection failed.
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// Put implements Bucket: one PUT with Content-MD5 (the server rejects a body
// that does not match), then a HEAD that must report the same size, MD5 ETag
// and SHA-256 metadata.
func (s *S3) Put(ctx context.Context, name string, r io.ReadSeeker, size int64, sum Sum) (ObjectInfo, error) {
	if size > maxSinglePut {
		return ObjectInfo{}, &Error{Bucket: s.String(), Op: "put", Name: name, Err: fmt.Errorf("segment is %d bytes, over the 5 GiB single-upload limit; lower the segment size", size)}
	}
	_, err := s.client.PutObject(ctx, s.loc.Bucket, s.key(name), r, size, minio.PutObjectOptions{
		ContentType:      "application/vnd.apache.parquet",
		UserMetadata:     map[string]string{metaSHA256: sum.SHA256Hex()},
		SendContentMd5:   true,
		DisableMultipart: true,
	})
	if err != nil {
		return ObjectInfo{}, s.wrap("put", name, err)
	}
	info, err := s.Stat(ctx, name)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := verifyStored(info, size, sum); err != nil {
		return ObjectInfo{}, &Error{Bucket: s.String(), Op: "put", Name: name, Err: err}
	}
	return info, nil
}

// GetRange implements Bucket.
func (s *S3) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if n <= 0 || off < 0 {
		return nil, &Error{Bucket: s.String(), Op: "get", Name: name, Err: fmt.Errorf("invalid range %d+%d", off, n)}
	}
	var o minio.GetObjectOptions
	if err := o.SetRange(off, off+n-1); err != nil {
		return nil, s.wrap("get", name, err)
	}
	// GetObject is lazy; Core.GetObject sends the request now, so a missing
	// object or a down server fails here rather than on the first Read.
	core := minio.Core{Client: s.client}
	body, _, _, err := core.GetObject(ctx, s.loc.Bucket, s.key(name), o)
	if err != nil {
		return nil, s.wrap("get", name, err)
	}
	return body, nil
}

// Stat implements Bucket.
func (s *S3) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	oi, err := s.client.StatObject(ctx, s.loc.Bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.wrap("stat", name, err)
	}
	return ObjectInfo{Name: name, Size: oi.Size, ETag: strings.Trim(oi.ETag, `"`), SHA256: userMeta(oi, metaSHA256)}, nil
}

func userMeta(oi minio.ObjectInfo, k string) string {
	for mk, v := range oi.UserMetadata {
		if strings.EqualFold(mk, k) || strings.EqualFold(mk, "X-Amz-Meta-"+k) {
			return v
		}
	}
	if v := oi.Metadata.Get("X-Amz-Meta-" + k); v != "" {
		return v
	}
	return ""
}

// List implements Bucket.
func (s *S3) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	for oi := range s.client.ListObjects(ctx, s.loc.Bucket, minio.ListObjectsOptions{Prefix: s.key(prefix), Recursive: true}) {
		if oi.Err != nil {
			return nil, s.wrap("list", prefix, oi.Err)
		}
		out = append(out, ObjectInfo{Name: strings.TrimPrefix(oi.Key, s.loc.Prefix), Size: oi.Size, ETag: strings.Trim(oi.ETag, `"`)})
	}
	return out, nil
}

// Delete implements Bucket.
func (s *S3) Delete(ctx context.Context, name string) error {
	if err := s.client.RemoveObject(ctx, s.loc.Bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(classify(err), ErrNotFound) {
			return nil
		}
		return s.wrap("delete", name, err)
	}
	return nil
}

// MakeBucket creates the bucket if it does not exist (tests and first setup
// against a local server; production buckets are made by the operator).
func (s *S3) MakeBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.loc.Bucket)
	if err != nil {
		return s.wrap("bucket-exists", "", err)
	}
	if ok {
		return nil
	}
	if err := s.client.MakeBucket(ctx, s.loc.Bucket, minio.MakeBucketOptions{Region: s.loc.Region}); err != nil {
		return s.wrap("make-bucket", "", err)
	}
	return nil
}
