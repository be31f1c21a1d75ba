package objstore

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// versitygwBinary finds Versity's S3 gateway: $FINELOG_VERSITYGW, the
// repository's .bin/ (where .ci/run installs it), or $PATH.
func versitygwBinary() string {
	if p := os.Getenv("FINELOG_VERSITYGW"); p != "" {
		return p
	}
	if p, err := filepath.Abs("../.bin/versitygw"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	return ""
}

// startVersitygw runs the gateway on a loopback port over a posix dir and
// returns the location of a fresh bucket on it and the posix dir.
func startVersitygw(t *testing.T) (Location, Credentials, string) {
	t.Helper()
	bin := versitygwBinary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("versitygw not found, and CI=true: .ci/run must install it (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 into .bin/)")
		}
		t.Skip("versitygw not installed; run: GOBIN=$PWD/.bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	creds := Credentials{AccessKeyID: "finelogtest", SecretAccessKey: NewSecret("finelogtestsecret0123456789")}
	cmd := exec.Command(bin, "--port", addr, "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+creds.AccessKeyID, "ROOT_SECRET_KEY="+creds.SecretAccessKey.Reveal())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	loc, err := ParseLocation("s3://finelog-e2e/east?endpoint=http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenS3(loc, creds, S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = b.MakeBucket(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on %s did not come up: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return loc, creds, dir
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
