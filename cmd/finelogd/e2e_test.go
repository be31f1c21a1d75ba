package main

// End-to-end tests: build the real finelogd, start it on a loopback port,
// and talk to it the way users do (curl-style Connect JSON, the Go client
// over gRPC), including kill -9, SIGTERM and oversize requests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		// Idle keep-alive connections of the test clients are not leaks.
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// finelogdBinary builds finelogd once per test run.
func finelogdBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test builds and runs finelogd; skipped with -short")
	}
	// FINELOG_E2E_BINARY runs the end-to-end tests against another build
	// (an older one, to measure what a fix changed).
	if p := os.Getenv("FINELOG_E2E_BINARY"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "finelogd-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "finelogd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs finelogd with dataDir and args and waits until /health is 200.
func start(t *testing.T, dataDir string, env []string, args ...string) *daemon {
	t.Helper()
	bin := finelogdBinary(t)
	addr := freePort(t)
	d := &daemon{t: t, url: "http://" + addr, stderr: &syncBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"--listen", addr, "--data-dir", dataDir}, args...)...)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("finelogd stderr:\n%s", d.stderr.String())
		}
	})
	if err := waitHealthy(d.url, d.exited, 30*time.Second); err != nil {
		t.Fatalf("finelogd %v (exit: %v)\n%s", err, d.err, d.stderr.String())
	}
	return d
}

// waitHealthy polls url's /health until it answers 200. It gives up when
// exited closes (the process died during start) or after timeout.
func waitHealthy(url string, exited <-chan struct{}, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errExitedDuringStart
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("did not become healthy within %v", timeout)
		}
		resp, err := hc.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var errExitedDuringStart = errors.New("exited during start")

// signal sends sig and waits for the exit, returning the exit code.
func (d *daemon) signal(sig syscall.Signal) int {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
	<-d.exited
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode()
	}
	if d.err != nil {
		d.t.Fatal(d.err)
	}
	return 0
}

func postJSON(t *testing.T, url, proc, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/finelog.logging.LogService/"+proc, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// fetchAll pages through every row of key.
func fetchAll(t *testing.T, c *client.Client, key string) []*loggingpb.LogEntry {
	t.Helper()
	var all []*loggingpb.LogEntry
	var cursor int64
	for {
		resp, err := c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{
			Source: key, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Cursor: cursor, MaxLines: 10000,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Entries) == 0 {
			return all
		}
		all = append(all, resp.Entries...)
		cursor = resp.Cursor
	}
}

func TestE2EConnectJSONAndGRPC(t *testing.T) {
	d := start(t, t.TempDir(), nil, "--cluster", "east")
	// The README's curl command, as plain HTTP/1.1 with a JSON body.
	code, body := postJSON(t, d.url, "PushLogs", `{"key":"/user/job-1/task-0","entries":[{"data":"hello"}]}`)
	if code != 200 {
		t.Fatalf("JSON push: %d %s", code, body)
	}
	g := client.New(d.url, client.WithGRPC())
	if _, err := g.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/user/job-1/task-0", Entries: []*loggingpb.LogEntry{{Data: "over grpc"}}}); err != nil {
		t.Fatalf("gRPC push: %v", err)
	}
	code, body = postJSON(t, d.url, "FetchLogs", `{"source":"/user/job-1/","matchScope":"MATCH_SCOPE_PREFIX"}`)
	if code != 200 {
		t.Fatalf("JSON fetch: %d %s", code, body)
	}
	var resp struct {
		Entries []struct {
			Data, Key, Cluster, Seq string
		}
		Cursor string
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 2 || resp.Entries[0].Data != "hello" || resp.Entries[1].Data != "over grpc" ||
		resp.Entries[0].Key != "/user/job-1/task-0" || resp.Entries[0].Cluster != "east" || resp.Cursor != "2" {
		t.Fatalf("JSON fetch = %s", body)
	}
	got, err := g.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: "/user/job-1/task-0", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil || len(got.Entries) != 2 {
		t.Fatalf("gRPC fetch: %v %v", got, err)
	}
	// A bad request is a clear error in both protocols.
	code, body = postJSON(t, d.url, "FetchLogs", `{"matchScope":"MATCH_SCOPE_PREFIX"}`)
	if code != 400 || !strings.Contains(string(body), "source is required") {
		t.Fatalf("JSON bad fetch: %d %s, want 400 \"source is required\"", code, body)
	}
}

func TestE2EKill9LosesNothingAcked(t *testing.T) {
	dir := t.TempDir()
	d := start(t, dir, nil)
	c := client.New(d.url, client.WithRetry(1, 0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Four pushers write uniquely numbered rows until the server dies;
	// every batch whose push returned OK is recorded as acked.
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		total atomic.Int64
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; ctx.Err() == nil; b++ {
				req := &loggingpb.PushLogsRequest{Key: "/crash"}
				for i := range 50 {
					req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: fmt.Sprintf("w%d-b%d-r%d", w, b, i)})
				}
				if _, err := c.Push(ctx, req); err != nil {
					return
				}
				mu.Lock()
				for _, e := range req.Entries {
					acked[e.Data] = true
				}
				mu.Unlock()
				total.Add(50)
			}
		}()
	}
	for total.Load() < 5000 {
		time.Sleep(5 * time.Millisecond)
	}
	if code := d.signal(syscall.SIGKILL); code != -1 {
		t.Logf("kill -9 exit code %d", code)
	}
	wg.Wait()
	cancel()

	d2 := start(t, dir, nil)
	rows := fetchAll(t, client.New(d2.url), "/crash")
	seen := map[string]int{}
	for _, r := range rows {
		seen[r.Data]++
	}
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for data := range acked {
		if seen[data] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acked rows missing after kill -9 and restart", missing, len(acked))
	}
	for data, n := range seen {
		if n > 1 {
			t.Fatalf("row %s stored %d times", data, n)
		}
	}
	t.Logf("%d rows acked before kill -9, %d stored after restart", len(acked), len(rows))
}

func TestE2ESIGTERMExitsCleanly(t *testing.T) {
	dir := t.TempDir()
	d := start(t, dir, nil)
	c := client.New(d.url)
	if _, err := c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/term", Entries: []*loggingpb.LogEntry{{Data: "before stop"}}}); err != nil {
		t.Fatal(err)
	}
	// A long-poll in flight must not hold up the shutdown.
	polled := make(chan error, 1)
	go func() {
		_, err := c.Fetch(context.Background(), &loggingpb.FetchLogsRequest{Source: "/nothing", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, WaitMs: 30_000})
		polled <- err
	}()
	waitMetric(t, d.url, `finelog_rpc_in_flight{procedure="/finelog.logging.LogService/FetchLogs"} 1`)
	if code := d.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM exit code %d, want 0\n%s", code, d.stderr.String())
	}
	if err := <-polled; err != nil {
		t.Errorf("long-poll during shutdown: %v, want an empty page", err)
	}
	if !strings.Contains(d.stderr.String(), "stopped cleanly") {
		t.Errorf("stderr lacks the clean-stop line:\n%s", d.stderr.String())
	}
	d2 := start(t, dir, nil)
	if rows := fetchAll(t, client.New(d2.url), "/term"); len(rows) != 1 {
		t.Fatalf("after restart %d rows, want 1", len(rows))
	}
}

// waitMetric polls /metrics until it has line.
func waitMetric(t *testing.T, url, line string) {
	t.Helper()
	for {
		_, b := getBody(t, url+"/metrics")
		if strings.Contains(string(b), line) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestE2EOversizeRequest(t *testing.T) {
	d := start(t, t.TempDir(), nil, "--max-request-bytes", "1048576")
	c := client.New(d.url)
	big := strings.Repeat("x", 2<<20)
	_, err := c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/big", Entries: []*loggingpb.LogEntry{{Data: big}}})
	// It can never succeed: invalid_argument, not a retryable-looking 429.
	if connect.CodeOf(err) != connect.CodeInvalidArgument || client.Retryable(err) || !strings.Contains(err.Error(), "1048576") {
		t.Fatalf("oversize push: %v, want non-retryable invalid_argument stating the 1048576-byte limit", err)
	}
	// Over plain JSON too: 400, not 429.
	code, body := postJSON(t, d.url, "PushLogs", `{"key":"/big","entries":[{"data":"`+big+`"}]}`)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "1048576") {
		t.Fatalf("oversize JSON push: %d %.200s", code, body)
	}
	if _, err := c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/big", Entries: []*loggingpb.LogEntry{{Data: "small"}}}); err != nil {
		t.Fatalf("push after an oversize request: %v", err)
	}
}

func TestE2EPrintConfigRedactsSecrets(t *testing.T) {
	bin := finelogdBinary(t)
	dir := t.TempDir()
	const inline = "inline-secret-0123456789abcdef0123456789abcdef"
	const fileSecret = "file-secret-0123456789abcdef0123456789abcdef"
	const relayToken = "relay-token-0123456789abcdef"
	keyFile := filepath.Join(dir, "west.key")
	tokenFile := filepath.Join(dir, "relay.token")
	os.WriteFile(keyFile, []byte(fileSecret+"\n"), 0o600)
	os.WriteFile(tokenFile, []byte(relayToken+"\n"), 0o600)
	policy := fmt.Sprintf(`[{"type":"cidr","cidrs":["10.0.0.0/8"]},{"type":"jwt","keys":[{"cluster":"east","secret":%q},{"cluster":"west","secret_file":%q}]}]`, inline, keyFile)
	cmd := exec.Command(bin, "--print-config", "--data-dir", dir, "--relay-address", "http://global:7070", "--relay-token-file", tokenFile)
	cmd.Env = append(os.Environ(), "FINELOG_AUTH_POLICY="+policy)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("--print-config: %v\n%s", err, out)
	}
	for _, secret := range []string{inline, fileSecret, relayToken} {
		if strings.Contains(string(out), secret) {
			t.Errorf("--print-config shows a secret:\n%s", out)
		}
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("--print-config is not JSON: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), keyFile) || !strings.Contains(string(out), "10.0.0.0/8") {
		t.Errorf("--print-config should name the key file and the CIDRs:\n%s", out)
	}

	// The running daemon's logs do not show them either.
	d := start(t, dir, []string{"FINELOG_AUTH_POLICY=" + policy}, "--log-level", "debug")
	if code := d.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, secret := range []string{inline, fileSecret} {
		if strings.Contains(d.stderr.String(), secret) {
			t.Errorf("finelogd logged a secret:\n%s", d.stderr.String())
		}
	}
}

func TestE2EBadStartExitsOne(t *testing.T) {
	bin := finelogdBinary(t)
	for name, tc := range map[string]struct {
		env  []string
		args []string
		want string
	}{
		"empty policy":   {env: []string{"FINELOG_AUTH_POLICY=[]"}, want: "FINELOG_AUTH_POLICY"},
		"garbage policy": {env: []string{"FINELOG_AUTH_POLICY={nope"}, want: "FINELOG_AUTH_POLICY"},
		"data dir is a file": {args: []string{"--data-dir", func() string {
			f := filepath.Join(t.TempDir(), "file")
			os.WriteFile(f, nil, 0o600)
			return f
		}()}, want: "data dir"},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"--listen", freePort(t), "--data-dir", t.TempDir()}, tc.args...)
			cmd := exec.Command(bin, args...)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want code 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("output does not name %q:\n%s", tc.want, out)
			}
		})
	}
}

// TestE2ESecondSignalExitsAtOnce: a request stuck mid-body holds up the
// graceful shutdown; a second SIGTERM ends the process right away.
func TestE2ESecondSignalExitsAtOnce(t *testing.T) {
	d := start(t, t.TempDir(), nil, "--shutdown-timeout", "10m")
	conn, err := net.Dial("tcp", strings.TrimPrefix(d.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Promise a body and never send it: the handler waits on it.
	fmt.Fprintf(conn, "POST /finelog.logging.LogService/PushLogs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	waitMetric(t, d.url, `finelog_rpc_in_flight{procedure="/finelog.logging.LogService/PushLogs"} 1`)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(d.stderr.String(), "shutting down") {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-d.exited:
		t.Fatalf("finelogd exited before the stuck request finished: %v\n%s", d.err, d.stderr.String())
	default:
	}
	if code := d.signal(syscall.SIGTERM); code != 2 {
		t.Fatalf("second signal: exit %d, want 2\n%s", code, d.stderr.String())
	}
	if !strings.Contains(d.stderr.String(), "second signal") {
		t.Errorf("stderr does not explain the immediate exit:\n%s", d.stderr.String())
	}
}

// getBody GETs url (5 s timeout) and returns the status and body; a
// transport error fails the test.
func getBody(t *testing.T, url string) (int, []byte) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
