package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"go.uber.org/goleak"
)

// fakeS3 serves gofakes3 on loopback and returns a Location for it.
func fakeS3(t *testing.T) Location {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithIntegrityCheck(true)).Server())
	t.Cleanup(srv.Close)
	loc, err := ParseLocation("s3://finelog-test/east?endpoint=" + srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func openFake(t *testing.T, loc Location, rt http.RoundTripper) *S3 {
	t.Helper()
	b, err := OpenS3(loc, Credentials{AccessKeyID: "test", SecretAccessKey: NewSecret("testsecretkey")}, S3Options{Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.MakeBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestS3ContractGofakes3(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
	testBucket(t, openFake(t, fakeS3(t), nil))
}

// faultTransport alters requests or answers on the way to a real server.
type faultTransport struct {
	next    http.RoundTripper
	corrupt bool // flip a byte of every PUT body (a torn or damaged upload)
	status  int  // answer every request with this status and S3 error code
	code    string
}

func (f *faultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.status != 0 {
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + f.code + `</Code><Message>injected</Message></Error>`
		return &http.Response{StatusCode: f.status, Status: http.StatusText(f.status), Header: http.Header{"Content-Type": {"application/xml"}},
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
	}
	if f.corrupt && r.Method == http.MethodPut && r.Body != nil && r.ContentLength > 0 {
		data, _ := io.ReadAll(r.Body)
		r.Body.Close()
		data[len(data)/2] ^= 0xff
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(data))
	}
	return f.next.RoundTrip(r)
}

func TestS3ClassifiesFaults(t *testing.T) {
	loc := fakeS3(t)
	ft := &faultTransport{next: http.DefaultTransport}
	b := openFake(t, loc, ft)
	data := []byte(strings.Repeat("segment bytes ", 1000))
	size, sum, _ := SumOf(bytes.NewReader(data))
	ctx := context.Background()

	ft.corrupt = true
	_, err := b.Put(ctx, "segments/x", bytes.NewReader(data), size, sum)
	if !errors.Is(err, ErrVerify) || !Retryable(err) || !strings.Contains(err.Error(), "finelog-test") {
		t.Fatalf("damaged upload: %v, want a retryable ErrVerify naming the bucket", err)
	}
	ft.corrupt = false

	for _, tc := range []struct {
		status int
		code   string
		want   error
	}{
		{503, "SlowDown", ErrUnavailable},
		{500, "InternalError", ErrUnavailable},
		{403, "AccessDenied", ErrDenied},
	} {
		ft.status, ft.code = tc.status, tc.code
		_, err := b.Put(ctx, "segments/x", bytes.NewReader(data), size, sum)
		if !errors.Is(err, tc.want) {
			t.Errorf("%d %s: %v, want %v", tc.status, tc.code, err, tc.want)
		}
		if _, err := b.GetRange(ctx, "segments/x", 0, 10); !errors.Is(err, tc.want) {
			t.Errorf("get under %d %s: %v, want %v", tc.status, tc.code, err, tc.want)
		}
	}
	ft.status = 0
	if _, err := b.Put(ctx, "segments/x", bytes.NewReader(data), size, sum); err != nil {
		t.Fatalf("put after the faults cleared: %v", err)
	}

	down := Location{Bucket: "finelog-test", Endpoint: "127.0.0.1:1", PathStyle: true, Region: "us-east-1"}
	db, _ := OpenS3(down, Credentials{}, S3Options{})
	if _, err := db.Stat(ctx, "segments/x"); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("bucket down: %v, want ErrUnavailable naming the endpoint", err)
	}
}
