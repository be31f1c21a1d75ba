package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/server"
)

// TestSegmentsLs pushes through a finelogd tiering to an S3 server, stops it
// (which uploads the flushed segment), and lists local and remote segments.
func TestSegmentsLs(t *testing.T) {
	s3 := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	defer s3.Close()
	url := "s3://seglist/east?endpoint=" + s3.URL
	const secret = "segments-ls-secret"
	creds := objstore.Credentials{AccessKeyID: "k", SecretAccessKey: objstore.NewSecret(secret)}
	loc, _ := objstore.ParseLocation(url)
	b, _ := objstore.OpenS3(loc, creds, objstore.S3Options{})
	if err := b.MakeBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, err := server.New(server.Config{FS: vfs.OS{}, DataDir: dir, ObjectStore: server.ObjectStoreConfig{URL: url, Credentials: creds}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.Protocols = new(http.Protocols)
	hs.Config.Protocols.SetHTTP1(true)
	hs.Config.Protocols.SetUnencryptedHTTP2(true)
	hs.Start()
	if code, _, errs := cli(t, context.Background(), hs.URL, "one\ntwo\nthree\n", "push", "/job/a"); code != 0 {
		t.Fatalf("push: %d %s", code, errs)
	}
	hs.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	ls := func(args ...string) string {
		t.Helper()
		var out, errb lockedBuffer
		env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string {
			return map[string]string{"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": secret}[k]
		}}
		if code := run(context.Background(), env, append([]string{"segments", "ls"}, args...)); code != 0 {
			t.Fatalf("segments ls %q: exit %d: %s", args, code, errb.String())
		}
		if strings.Contains(out.String()+errb.String(), secret) {
			t.Fatal("segments ls printed the secret")
		}
		return out.String()
	}
	both := ls("--data-dir", dir, "--object-store", url)
	if !strings.Contains(both, "both") || !strings.Contains(both, "1 segments") || !strings.Contains(both, "manifest generation") {
		t.Fatalf("local and bucket listing:\n%s", both)
	}
	line := strings.Split(both, "\n")[1]
	if f := strings.Fields(line); len(f) < 4 || f[1] != "1" || f[2] != "3" || f[3] != "3" {
		t.Fatalf("segment line %q: want seqs 1..3 and 3 rows", line)
	}
	if remote := ls("--data-dir", "", "--object-store", url); !strings.Contains(remote, "remote") {
		t.Fatalf("bucket-only listing:\n%s", remote)
	}
	if local := ls("--data-dir", dir); !strings.Contains(local, "both") || !strings.Contains(local, "local copy") {
		t.Fatalf("listing from the data dir's manifest copy:\n%s", local)
	}
}
