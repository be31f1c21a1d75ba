package objstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore/s3test"
)

// startVersitygw runs the gateway and returns the location of a fresh
// bucket on it, its credentials and its posix dir.
func startVersitygw(t *testing.T) (Location, Credentials, string) {
	t.Helper()
	g := s3test.Start(t)
	creds := Credentials{AccessKeyID: g.AccessKey, SecretAccessKey: NewSecret(g.SecretKey)}
	loc, err := ParseLocation("s3://finelog-e2e/east?endpoint=" + g.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenS3(loc, creds, S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.MakeBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return loc, creds, g.Dir
}

func TestS3ContractVersitygw(t *testing.T) {
	loc, creds, _ := startVersitygw(t)
	b, err := OpenS3(loc, creds, S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	testBucket(t, b)

	wrong, _ := OpenS3(loc, Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: NewSecret("not-the-secret-at-all")}, S3Options{})
	if _, err := wrong.List(context.Background(), "segments/"); !errors.Is(err, ErrDenied) {
		t.Fatalf("wrong secret: %v, want ErrDenied", err)
	}
}

// TestTierVersitygw uploads through the real client to a real S3 server,
// reads a segment back through RemoteFile, and rebuilds the manifest from
// the bucket alone; the posix dir holds the object as a plain file.
func TestTierVersitygw(t *testing.T) {
	loc, creds, dir := startVersitygw(t)
	b, err := OpenS3(loc, creds, S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	fsys, clk := vfs.NewMemFS(), clock.NewFake(time.Unix(1000, 0))
	tier := openTestTier(t, fsys, b, clk)
	segs := []Segment{writeSeg(t, fsys, 1, 40000, map[string]int64{"east": 39999}), writeSeg(t, fsys, 40001, 40100, nil)}
	for _, s := range segs {
		tier.Sealed(s)
	}
	drain(t, tier, clk)
	for _, s := range segs {
		if !tier.Uploaded(s) {
			t.Fatalf("%s not uploaded", s.Name)
		}
	}
	fresh := openTestTier(t, vfs.NewMemFS(), b, clk)
	m := fresh.Manifest()
	if m.HighestSeq() != 40100 || m.Producers()["east"] != 39999 {
		t.Fatalf("manifest from the bucket alone = %+v", m)
	}
	e, _ := m.FindSegment(segs[0].Name)
	cache, err := OpenCache(vfs.NewMemFS(), "/cache", 8*BlockSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := segBytes(1, 40000)
	got := make([]byte, len(want))
	if _, err := OpenRemote(context.Background(), b, cache, e, 10*time.Second, nil).ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("remote read differs from the local segment")
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, loc.Bucket, loc.Prefix+e.Object))
	if err != nil || !bytes.Equal(onDisk, want) {
		t.Fatalf("gateway posix file differs from the segment (err %v)", err)
	}
}
