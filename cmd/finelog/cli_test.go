package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer runs a real server (store on MemFS) speaking HTTP/1.1 and h2c.
func testServer(t *testing.T, cfg server.Config) string {
	t.Helper()
	if cfg.FS == nil {
		cfg.FS = vfs.NewMemFS()
	}
	cfg.DataDir = "/data"
	srv, err := server.New(cfg)
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
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return hs.URL
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cli runs the CLI against addr (via FINELOG_ADDR, as a user would).
func cli(t *testing.T, ctx context.Context, addr, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb lockedBuffer
	env := &cliEnv{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errb,
		getenv: func(k string) string {
			if k == "FINELOG_ADDR" {
				return addr
			}
			return ""
		},
	}
	code = run(ctx, env, args)
	return code, out.String(), errb.String()
}

func TestPushFetchTail(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	if code, _, errs := cli(t, ctx, addr, "first\nsecond\nthird\n", "push", "--level", "warning", "/user/job-1/task-0"); code != 0 {
		t.Fatalf("push: exit %d: %s", code, errs)
	}
	if code, _, errs := cli(t, ctx, addr, "other\n", "push", "/user/job-1/task-1", "--batch-lines", "1"); code != 0 {
		t.Fatalf("push: exit %d: %s", code, errs)
	}

	_, out, _ := cli(t, ctx, addr, "", "fetch", "/user/job-1/task-0")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "WARN  first") || !strings.HasSuffix(lines[2], "third") {
		t.Fatalf("fetch printed:\n%s", out)
	}

	_, out, _ = cli(t, ctx, addr, "", "fetch", "--prefix", "/user/job-1/", "--grep", "o", "--json")
	var got []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("--json line %q: %v", l, err)
		}
		got = append(got, m)
	}
	if len(got) != 2 || got[0]["data"] != "second" || got[1]["key"] != "/user/job-1/task-1" {
		t.Fatalf("fetch --prefix --grep --json = %v", got)
	}

	_, out, _ = cli(t, ctx, addr, "", "fetch", "/user/job-1/", "--prefix", "--level", "warning", "--grpc")
	if strings.Count(out, "\n") != 4 {
		t.Fatalf("fetch --level warning keeps warnings and rows without a level; got:\n%s", out)
	}

	_, out, _ = cli(t, ctx, addr, "", "tail", "-n", "2", "/user/job-1/task-0")
	if strings.TrimSpace(out) == "" || strings.Contains(out, "first") || !strings.Contains(out, "third") {
		t.Fatalf("tail -n 2 printed:\n%s", out)
	}

	_, out, _ = cli(t, ctx, addr, "", "fetch", "--max", "2", "--tail", "/user/job-1/task-0")
	if strings.Contains(out, "first") || !strings.Contains(out, "second") {
		t.Fatalf("fetch --tail --max 2 printed:\n%s", out)
	}
}

func TestTailFollow(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli(t, ctx, addr, "before\n", "push", "/f")

	var out lockedBuffer
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &out, getenv: func(k string) string {
		if k == "FINELOG_ADDR" {
			return addr
		}
		return ""
	}}
	done := make(chan int, 1)
	go func() { done <- run(ctx, env, []string{"tail", "-f", "/f"}) }()
	waitOutput(t, &out, "before")
	cli(t, context.Background(), addr, "after\n", "push", "/f")
	waitOutput(t, &out, "after")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail -f exit %d after interrupt: %s", code, out.String())
	}
}

// waitOutput polls the buffer (a condition, not a duration).
func waitOutput(t *testing.T, b *lockedBuffer, want string) {
	t.Helper()
	for i := 0; !strings.Contains(b.String(), want); i++ {
		if i > 10000 {
			t.Fatalf("output never showed %q:\n%s", want, b.String())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFriendlyErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	code, _, errs := cli(t, context.Background(), down, "", "fetch", "/k")
	if code != 1 || !strings.Contains(errs, "cannot reach finelogd at "+down+": is it running?") {
		t.Fatalf("server down: exit %d, %q", code, errs)
	}

	secret := []byte(cliTestSecret)
	fs := vfs.NewMemFS()
	fs.MkdirAll("/keys")
	vfs.WriteFileAtomic(fs, "/keys/east", secret)
	addr := testServer(t, server.Config{FS: fs, AuthPolicy: `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"/keys/east"}]}]`})
	bad := writeAuthFile(t, "bad.token", "not-a-jwt\n")
	code, _, errs = cli(t, context.Background(), addr, "x\n", "push", "--token-file", bad, "/k")
	if code != 1 || !strings.Contains(errs, "finelogd refused the credentials") {
		t.Fatalf("bad token: exit %d, %q", code, errs)
	}
	code, _, errs = cli(t, context.Background(), addr, "", "fetch", "/k")
	if code != 1 || !strings.Contains(errs, "finelogd refused the credentials") {
		t.Fatalf("no token: exit %d, %q", code, errs)
	}
}

func TestBenchSmall(t *testing.T) {
	addr := testServer(t, server.Config{})
	code, out, errs := cli(t, context.Background(), addr, "", "bench", "--lines", "2500", "--keys", "10", "--batch", "100", "--concurrency", "3", "--progress", "1h")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errs)
	}
	for _, want := range []string{"2500 in", "lines/s", "MB/s", "p50", "p99"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench summary lacks %q:\n%s", want, out)
		}
	}
	_, rows, _ := cli(t, context.Background(), addr, "", "fetch", "--prefix", "/bench/", "--max", "10000")
	if n := strings.Count(rows, "\n"); n != 2500 {
		t.Fatalf("server holds %d bench rows, want 2500", n)
	}
}
