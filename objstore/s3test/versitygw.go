// Package s3test runs Versity's S3 gateway (versitygw) for end-to-end
// tests: a real S3 API server over a posix directory.
package s3test

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Gateway is a running versitygw.
type Gateway struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	// AccessKey and SecretKey are its root credentials (test values).
	AccessKey, SecretKey string
	// Dir is the posix directory: bucket B's object K is Dir/B/K.
	Dir string
}

// Binary finds versitygw: $FINELOG_VERSITYGW, a .bin/ in dir or one of its
// parents (where .ci/run installs it), or $PATH.
func Binary() string {
	if p := os.Getenv("FINELOG_VERSITYGW"); p != "" {
		return p
	}
	if dir, err := os.Getwd(); err == nil {
		for ; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, ".bin", "versitygw")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	return ""
}

// Start runs versitygw on a free loopback port until the test ends. Without
// the binary the test is skipped with the install command, unless CI=true,
// where it fails: CI must install it.
func Start(t testing.TB) *Gateway {
	t.Helper()
	bin := Binary()
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
	g := &Gateway{Endpoint: "http://" + addr, AccessKey: "finelogtest", SecretKey: "finelogtestsecret0123456789", Dir: t.TempDir()}
	cmd := exec.Command(bin, "--port", addr, "posix", g.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+g.AccessKey, "ROOT_SECRET_KEY="+g.SecretKey)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("versitygw exited at start: %v\n%s", err, out.String())
		default:
		}
		// Any HTTP answer (403 for an unsigned request) means it serves.
		if resp, err := hc.Get(g.Endpoint + "/"); err == nil {
			resp.Body.Close()
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on %s did not come up\n%s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
