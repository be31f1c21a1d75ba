package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
)

// These tests run the attacks of the hostile-input probe against a real
// finelogd and log what the victim saw and what the daemon spent (peak RSS
// and CPU seconds from /proc), so a run against an older build
// (FINELOG_E2E_BINARY) gives the "before" figures:
//
//	go test ./cmd/finelogd -run TestE2EHostile -v
//	FINELOG_E2E_BINARY=/path/to/old/finelogd go test ./cmd/finelogd -run TestE2EHostile -v

// procStats reads the daemon's peak resident set (VmHWM) and CPU seconds.
func procStats(t *testing.T, d *daemon) (hwmMiB float64, cpuSec float64) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return 0, 0
	}
	pid := d.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			hwmMiB = kb / 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which is in parentheses).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return hwmMiB, (ut + st) / 100 // USER_HZ is 100 on Linux
}

func openFDs(t *testing.T, d *daemon) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	if err != nil {
		t.Skip("no /proc: ", err)
	}
	return len(ents)
}

// victimPushes runs n small pushes one after another and reports their
// latencies and errors.
func victimPushes(c *client.Client, n int) (lat []time.Duration, errs []error) {
	for i := range n {
		start := time.Now()
		_, err := c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/victim", Entries: []*loggingpb.LogEntry{{Data: fmt.Sprint("v", i)}}})
		lat = append(lat, time.Since(start))
		if err != nil {
			errs = append(errs, err)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, errs
}

func h2cTransport() *http.Transport {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return tr
}

// Cross-tenant producer poisoning over the wire: west's token advances
// east's relay producer; east's next batch must still be stored.
func TestE2EHostileProducerPoisoning(t *testing.T) {
	dir := t.TempDir()
	secrets := map[string]auth.Secret{"east": auth.Secret(strings.Repeat("e", 40)), "west": auth.Secret(strings.Repeat("w", 40))}
	for name, s := range secrets {
		if err := os.WriteFile(filepath.Join(dir, name+".key"), s, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	policy := fmt.Sprintf(`[{"type":"jwt","keys":[{"cluster":"east","secret_file":%q},{"cluster":"west","secret_file":%q}]}]`,
		filepath.Join(dir, "east.key"), filepath.Join(dir, "west.key"))
	d := start(t, filepath.Join(dir, "data"), []string{"FINELOG_AUTH_POLICY=" + policy})
	as := func(cluster string) *client.Client {
		m := auth.NewMinter(secrets[cluster], cluster, "", time.Hour, nil)
		return client.New(d.url, client.WithRetry(1, 0, 0), client.WithToken(func(context.Context) (string, error) { return m.Token() }))
	}
	east, west := as("east"), as("west")
	ctx := context.Background()
	const producer = "east/00112233aabbccdd"
	_, poisonErr := west.Push(ctx, &loggingpb.PushLogsRequest{Producer: producer, FirstSeq: 2, LastSeq: 1_000_000})
	_, _, askErr := west.ProducerState(ctx, producer)
	entries := make([]*loggingpb.LogEntry, 100)
	for i := range entries {
		entries[i] = &loggingpb.LogEntry{Key: "/east/job", Data: fmt.Sprint(i + 1), Seq: int64(i + 1)}
	}
	if _, err := east.Push(ctx, &loggingpb.PushLogsRequest{Producer: producer, FirstSeq: 1, LastSeq: 100, Entries: entries}); err != nil {
		t.Fatalf("east's relay batch: %v", err)
	}
	stored := len(fetchAll(t, east, "/east/job"))
	t.Logf("poison push by west: %v; west asking about east's producer: %v; east's 100-row batch afterwards: %d rows stored", poisonErr, askErr, stored)
	if poisonErr == nil || askErr == nil || stored != 100 {
		t.Fatalf("west could advance or read east's producer (push err %v, ask err %v), %d of 100 rows stored", poisonErr, askErr, stored)
	}
}

// Two HTTP/1 requests and two h2c gRPC streams announce 32 MiB bodies and
// stall; ordinary pushes must keep going.
func TestE2EHostileStalledBodies(t *testing.T) {
	d := start(t, t.TempDir(), nil)
	addr := strings.TrimPrefix(d.url, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: %d\r\n\r\n%s",
			loggingpbconnect.LogServicePushLogsProcedure, 32<<20, strings.Repeat("\x0a", 1024))
	}
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	var pipes []*io.PipeWriter
	for range 2 {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		req, _ := http.NewRequest("POST", d.url+loggingpbconnect.LogServicePushLogsProcedure, pr)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		wg.Add(2)
		go func() {
			defer wg.Done()
			if resp, err := tr.RoundTrip(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		env := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(env[1:], 32<<20)
		go func() { defer wg.Done(); pw.Write(append(env, make([]byte, 1024)...)) }()
	}
	defer func() {
		for _, pw := range pipes {
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}
		wg.Wait()
	}()
	time.Sleep(300 * time.Millisecond) // let the four reach the handler: this measures, it does not assert timing
	c := client.New(d.url, client.WithRetry(1, 0, 0))
	lat, errs := victimPushes(c, 10)
	hwm, cpu := procStats(t, d)
	t.Logf("during the stalled-body attack: 10 victim pushes, %d failed, latency p50 %v max %v; daemon peak RSS %.0f MiB, CPU %.2f s",
		len(errs), lat[len(lat)/2], lat[len(lat)-1], hwm, cpu)
	if len(errs) > 0 {
		t.Fatalf("victim pushes failed during the attack: %v", errs[0])
	}
}

// zstdBombBytes is size zero bytes, zstd-compressed.
func zstdBombBytes(t *testing.T, size int, opts ...zstd.EOption) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out, append([]zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for i := 0; i < size>>20; i++ {
		w.Write(zero)
	}
	w.Close()
	return out.Bytes()
}

// 40 concurrent small zstd bodies that inflate to 40 MiB each, then one
// that inflates to 1 GiB: each must be refused having inflated no more
// than the limit, and memory and CPU stay bounded.
func TestE2EHostileZstdBombs(t *testing.T) {
	d := start(t, t.TempDir(), nil)
	small, big := zstdBombBytes(t, 40<<20), zstdBombBytes(t, 1<<30)
	post := func(body []byte) (int, string) {
		req, _ := http.NewRequest("POST", d.url+loggingpbconnect.LogServicePushLogsProcedure, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/proto")
		req.Header.Set("Content-Encoding", "zstd")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	_, cpu0 := procStats(t, d)
	var wg sync.WaitGroup
	var oversize, busy, other atomic.Int32
	start := time.Now()
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch code, body := post(small); {
			case code == http.StatusBadRequest && strings.Contains(body, "--max-request-bytes"):
				oversize.Add(1)
			case code == http.StatusTooManyRequests && strings.Contains(body, "busy"):
				busy.Add(1) // backpressure: the budget is held by the others' inflated bytes
			default:
				other.Add(1)
			}
		}()
	}
	wg.Wait()
	took40 := time.Since(start)
	hwm, cpu1 := procStats(t, d)
	start = time.Now()
	code, body := post(big)
	tookBig := time.Since(start)
	_, cpu2 := procStats(t, d)
	c := client.New(d.url, client.WithRetry(1, 0, 0))
	lat, errs := victimPushes(c, 5)
	t.Logf("40 concurrent %d-byte zstd bodies (40 MiB inflated each): %d refused as oversize (400 naming the limit), %d busy (429), %d other, in %v; daemon CPU %.2f s, peak RSS %.0f MiB",
		len(small), oversize.Load(), busy.Load(), other.Load(), took40, cpu1-cpu0, hwm)
	t.Logf("one %d-byte zstd body (1 GiB inflated): %d %.120s, %v, daemon CPU %.2f s; victim pushes after: %d failed, max %v",
		len(big), code, body, tookBig, cpu2-cpu1, len(errs), lat[len(lat)-1])
	if other.Load() > 0 || oversize.Load() == 0 || code != http.StatusBadRequest || len(errs) > 0 {
		t.Errorf("bombs: %d oversize, %d busy, %d other (a success or an unexpected answer); big: %d", oversize.Load(), busy.Load(), other.Load(), code)
	}
	if runtime.GOOS == "linux" && hwm > 400 {
		t.Errorf("peak RSS %.0f MiB under 40 bombs, want it bounded near the 64 MiB in-flight budget", hwm)
	}

	// 40 more that each declare a 32 MiB zstd window, which a decoder
	// allocates before inflating anything.
	wide := zstdBombBytes(t, 8<<20, zstd.WithWindowSize(32<<20))
	var refusedWide atomic.Int32
	start = time.Now()
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _ := post(wide); code == http.StatusBadRequest || code == http.StatusTooManyRequests {
				refusedWide.Add(1)
			}
		}()
	}
	wg.Wait()
	hwm, cpu3 := procStats(t, d)
	t.Logf("40 concurrent %d-byte zstd bodies declaring a 32 MiB window: %d refused, in %v; daemon CPU %.2f s, peak RSS so far %.0f MiB",
		len(wide), refusedWide.Load(), time.Since(start), cpu3-cpu2, hwm)
	if runtime.GOOS == "linux" && hwm > 400 {
		t.Fatalf("peak RSS %.0f MiB under 40 wide-window bodies", hwm)
	}
}

// 2,000 idle connections, 500 long-polls and a ten-minute CPU profile.
func TestE2EHostileConnectionsLongPollsProfile(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 4096 {
		lim.Cur = min(lim.Max, 8192)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	d := start(t, t.TempDir(), nil)
	addr := strings.TrimPrefix(d.url, "http://")
	before := openFDs(t, d)
	var conns []net.Conn
	for range 2000 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v (raise ulimit -n)", err)
		}
		fmt.Fprintf(conn, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		conns = append(conns, conn)
	}
	answered := 0
	for _, conn := range conns {
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			resp.Body.Close()
			answered++
		}
	}
	held := openFDs(t, d) - before
	for _, conn := range conns {
		conn.Close()
	}
	t.Logf("2000 keep-alive connections after /health: %d answered, daemon fds +%d", answered, held)
	if held > 300 {
		t.Errorf("daemon holds %d more fds for 2000 idle connections from one peer, want about --max-connections-per-peer (256)", held)
	}

	// 500 long-polls over h2c (a handful of connections).
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	c := client.New(d.url, client.WithRetry(1, 0, 0), client.WithHTTPClient(&http.Client{Transport: tr}), client.WithGRPC())
	ctx, cancel := context.WithCancel(context.Background())
	var quick, failed atomic.Int32
	var firstErr atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/nothing", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, WaitMs: 30_000})
			switch {
			case time.Since(t0) >= 5*time.Second:
			case err == nil:
				quick.Add(1)
			default:
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
	}
	time.Sleep(5 * time.Second) // measurement window, not an assertion on timing
	parkedNow := 500 - int(quick.Load()) - int(failed.Load())
	cancel()
	wg.Wait()
	t.Logf("500 concurrent wait_ms=30000 long-polls: %d answered at once, %d failed (first: %v), %d parked", quick.Load(), failed.Load(), firstErr.Load(), parkedNow)
	if parkedNow > 64 {
		t.Errorf("%d long-polls parked from one identity, want at most --max-long-polls-per-identity (64)", parkedNow)
	}

	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get(d.url + "/debug/pprof/profile?seconds=600")
	status := "held past 3s: " + fmt.Sprint(err)
	if err == nil {
		status = resp.Status
		resp.Body.Close()
	}
	t.Logf("/debug/pprof/profile?seconds=600: %s", status)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a 600-second profile: %s, want 400 at once", status)
	}
}
