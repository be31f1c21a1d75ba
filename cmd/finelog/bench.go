package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

func init() {
	register(command{
		name:    "bench",
		summary: "load-generate against a running finelogd and report lines/s, MB/s, latency",
		run:     runBench,
	})
}

type benchConfig struct {
	lines       int
	keys        int
	batch       int
	concurrency int
	pid         int
	metricsURL  string
	progress    time.Duration
	seed        uint64
	gzip        bool
}

func runBench(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	conn := addConnFlags(fs, env)
	var bc benchConfig
	fs.IntVar(&bc.lines, "lines", 5_000_000, "total lines to push")
	fs.IntVar(&bc.keys, "keys", 1000, "distinct keys (one key per batch, round-robin)")
	fs.IntVar(&bc.batch, "batch", 1000, "lines per push")
	fs.IntVar(&bc.concurrency, "concurrency", 4, "concurrent pushers")
	fs.IntVar(&bc.pid, "pid", 0, "finelogd's `pid` on this machine: report its CPU seconds per million lines and peak RSS from /proc")
	fs.StringVar(&bc.metricsURL, "metrics", "", "finelogd /metrics `URL`: report CPU and RSS from its process metrics")
	fs.DurationVar(&bc.progress, "progress", 2*time.Second, "progress line interval")
	fs.Uint64Var(&bc.seed, "seed", 1, "seed of the line generator")
	fs.BoolVar(&bc.gzip, "gzip", false, "gzip request bodies")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected arguments: %q", pos)
	}
	if bc.lines <= 0 || bc.keys <= 0 || bc.batch <= 0 || bc.concurrency <= 0 {
		return fmt.Errorf("--lines, --keys, --batch and --concurrency must be positive")
	}
	var extra []client.Option
	if bc.gzip {
		extra = append(extra, client.WithGzip())
	}
	c, err := conn.client(extra...)
	if err != nil {
		return err
	}
	// Fail fast with the friendly error if the server is not there.
	if _, err := c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/bench/", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, MaxLines: 1}); err != nil {
		return conn.friendly(err)
	}
	r, err := bench(ctx, c, bc, env.stderr)
	if err != nil {
		return conn.friendly(err)
	}
	r.print(env.stdout, bc)
	return nil
}

type benchResult struct {
	lines, bytes int64
	elapsed      time.Duration
	latencies    []time.Duration
	cpu          float64 // server CPU seconds during the run; <0 unknown
	peakRSS      int64   // bytes; <0 unknown
	rssNote      string
}

// procSample is a server process reading.
type procSample struct {
	cpu float64 // seconds
	rss int64   // peak (VmHWM) or current bytes
}

func bench(ctx context.Context, c *client.Client, bc benchConfig, progress io.Writer) (*benchResult, error) {
	keys := make([]string, bc.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("/bench/job-%d/task-%d:0", i/10, i%10)
	}
	batches := (bc.lines + bc.batch - 1) / bc.batch
	var next, sentLines, sentBytes atomic.Int64
	lat := make([][]time.Duration, bc.concurrency)
	errs := make(chan error, bc.concurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	sampler := newProcSampler(bc)
	before := sampler.sample()
	peak := before.rss

	start := time.Now()
	var wg sync.WaitGroup
	for w := range bc.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := newLineGen(bc.seed + uint64(w))
			// A few distinct batches per pusher, reused round-robin, keep
			// the generator out of the measurement.
			const pool = 8
			reqs := make([]*loggingpb.PushLogsRequest, pool)
			sizes := make([]int64, pool)
			for i := range reqs {
				reqs[i] = &loggingpb.PushLogsRequest{}
				for range bc.batch {
					e := gen.entry()
					sizes[i] += int64(len(e.Data))
					reqs[i].Entries = append(reqs[i].Entries, e)
				}
			}
			for ctx.Err() == nil {
				b := next.Add(1) - 1
				if b >= int64(batches) {
					return
				}
				req := reqs[b%pool]
				n := bc.batch
				if rest := bc.lines - int(b)*bc.batch; rest < n {
					n = rest
				}
				full := req.Entries
				req.Entries = req.Entries[:n]
				req.Key = keys[b%int64(len(keys))]
				now := time.Now().UnixMilli()
				for _, e := range req.Entries {
					e.Timestamp.EpochMs = now
				}
				t0 := time.Now()
				_, err := c.Push(ctx, req)
				d := time.Since(t0)
				req.Entries = full
				if err != nil {
					errs <- fmt.Errorf("push batch %d: %w", b, err)
					cancel()
					return
				}
				lat[w] = append(lat[w], d)
				sentLines.Add(int64(n))
				if n == bc.batch {
					sentBytes.Add(sizes[b%pool])
				} else {
					for _, e := range req.Entries[:n] {
						sentBytes.Add(int64(len(e.Data)))
					}
				}
			}
		}()
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(bc.progress)
	defer tick.Stop()
	last, lastT := int64(0), start
loop:
	for {
		select {
		case <-done:
			break loop
		case now := <-tick.C:
			s := sampler.sample()
			peak = max(peak, s.rss)
			n := sentLines.Load()
			rate := float64(n-last) / now.Sub(lastT).Seconds()
			last, lastT = n, now
			fmt.Fprintf(progress, "bench: %d/%d lines (%.0f%%)  %.0f lines/s now  %.0f lines/s overall\n",
				n, bc.lines, 100*float64(n)/float64(bc.lines), rate, float64(n)/now.Sub(start).Seconds())
		}
	}
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	after := sampler.sample()
	peak = max(peak, after.rss)
	r := &benchResult{
		lines:   sentLines.Load(),
		bytes:   sentBytes.Load(),
		elapsed: elapsed,
		cpu:     -1,
		peakRSS: -1,
	}
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	if sampler.ok() {
		r.cpu = after.cpu - before.cpu
		r.peakRSS = peak
		r.rssNote = sampler.rssNote()
	}
	return r, nil
}

func (r *benchResult) print(w io.Writer, bc benchConfig) {
	slices.Sort(r.latencies)
	pct := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
	}
	secs := r.elapsed.Seconds()
	fmt.Fprintf(w, "lines        %d in %s (%d keys, batches of %d, %d pushers)\n", r.lines, r.elapsed.Round(time.Millisecond), bc.keys, bc.batch, bc.concurrency)
	fmt.Fprintf(w, "throughput   %.0f lines/s, %.1f MB/s of log data (avg line %.0f bytes)\n", float64(r.lines)/secs, float64(r.bytes)/secs/1e6, float64(r.bytes)/float64(max(r.lines, 1)))
	fmt.Fprintf(w, "push latency p50 %s  p99 %s  max %s\n", pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
	if r.cpu >= 0 {
		fmt.Fprintf(w, "server CPU   %.2f s total, %.2f s per million lines\n", r.cpu, r.cpu/float64(r.lines)*1e6)
		fmt.Fprintf(w, "server RSS   %.1f MiB peak (%s)\n", float64(r.peakRSS)/(1<<20), r.rssNote)
	}
}

// procSampler reads the server's CPU time and memory, from /proc (--pid)
// or from its Prometheus process metrics (--metrics).
type procSampler struct {
	pid     int
	metrics string
	hc      *http.Client
	failed  bool
}

func newProcSampler(bc benchConfig) *procSampler {
	return &procSampler{pid: bc.pid, metrics: bc.metricsURL, hc: &http.Client{Timeout: 5 * time.Second}}
}

func (p *procSampler) ok() bool { return (p.pid > 0 || p.metrics != "") && !p.failed }

func (p *procSampler) rssNote() string {
	if p.pid > 0 {
		return "VmHWM from /proc/" + strconv.Itoa(p.pid) + "/status"
	}
	return "max of process_resident_memory_bytes sampled each progress tick"
}

func (p *procSampler) sample() procSample {
	var s procSample
	var err error
	switch {
	case p.pid > 0:
		s, err = readProc(p.pid)
	case p.metrics != "":
		s, err = p.scrape()
	default:
		return s
	}
	if err != nil {
		p.failed = true
	}
	return s
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// readProc reads utime+stime (fields 14 and 15 of /proc/PID/stat) and VmHWM
// (peak resident set) from /proc/PID/status.
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces; fields count from after
	// its closing parenthesis.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpu = float64(ut+st) / clockTicks
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			s.rss = kb << 10
		}
	}
	return s, sc.Err()
}

func (p *procSampler) scrape() (procSample, error) {
	var s procSample
	resp, err := p.hc.Get(p.metrics)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s: %s", p.metrics, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "process_cpu_seconds_total "); ok {
			s.cpu, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, "process_resident_memory_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			s.rss = int64(f)
		}
	}
	return s, sc.Err()
}

// lineGen makes log lines that look like an ML/batch cluster's: trainer
// steps, data loading, collective warnings, HTTP access, checkpoints —
// about 150 bytes each, with the numbers and ids that make real logs
// compress less than repeated text would.
type lineGen struct {
	r *rand.Rand
	b []byte
}

func newLineGen(seed uint64) *lineGen {
	return &lineGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *lineGen) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[g.r.IntN(16)]
	}
	return string(b)
}

func (g *lineGen) entry() *loggingpb.LogEntry {
	r := g.r
	lv := loggingpb.LogLevel_LOG_LEVEL_INFO
	var s string
	switch k := r.IntN(100); {
	case k < 45:
		s = fmt.Sprintf("I1124 04:%02d:%02d.%06d %7d trainer.py:%d] [rank %d] epoch %d step %d loss=%.4f lr=%.2e grad_norm=%.3f tokens/s=%d mem=%.1fGiB dt=%.3fs",
			r.IntN(60), r.IntN(60), r.IntN(1e6), 1000+r.IntN(90000), 100+r.IntN(900), r.IntN(512), r.IntN(100), r.IntN(500000), r.Float64()*4, r.Float64()*1e-3, r.Float64()*10, 10000+r.IntN(90000), 10+r.Float64()*60, r.Float64()*2)
	case k < 70:
		s = fmt.Sprintf("2026-11-24 04:%02d:%02d,%03d INFO data_loader[worker %d]: loaded shard %05d/%05d from gs://ml-data/%s/part-%05d.parquet (%d rows, %.1f MiB)",
			r.IntN(60), r.IntN(60), r.IntN(1000), r.IntN(32), r.IntN(4096), 4096, g.hex(8), r.IntN(100000), 1000+r.IntN(200000), r.Float64()*512)
	case k < 80:
		lv = loggingpb.LogLevel_LOG_LEVEL_WARNING
		s = fmt.Sprintf("WARNING:torch.distributed:NCCL watchdog: rank %d collective allreduce seq %d still pending after %d ms (attempt %d/5) on host node-%s",
			r.IntN(512), r.IntN(1e7), 1000+r.IntN(60000), 1+r.IntN(5), g.hex(6))
	case k < 95:
		lv = loggingpb.LogLevel_LOG_LEVEL_DEBUG
		s = fmt.Sprintf("[api-%d] %s 10.%d.%d.%d - - \"GET /api/v1/jobs/%s/tasks/%d/status HTTP/1.1\" %d %d %dms \"python-requests/2.31.0\"",
			r.IntN(8), "2026-11-24T04:"+strconv.Itoa(10+r.IntN(50))+":"+strconv.Itoa(10+r.IntN(50)), r.IntN(256), r.IntN(256), r.IntN(256), g.hex(12), r.IntN(1000), []int{200, 200, 200, 404, 503}[r.IntN(5)], r.IntN(5000), r.IntN(900))
	default:
		lv = loggingpb.LogLevel_LOG_LEVEL_ERROR
		s = fmt.Sprintf("ERROR checkpoint: failed to upload /mnt/ckpt/run-%s/step_%08d/shard_%03d.safetensors to gs://ckpt: deadline exceeded after %.2fs",
			g.hex(10), r.IntN(500000), r.IntN(256), r.Float64()*120)
	}
	return &loggingpb.LogEntry{
		Timestamp: &loggingpb.Timestamp{},
		Source:    "stdout",
		Data:      s,
		Level:     lv,
	}
}
