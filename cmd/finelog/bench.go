package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
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
	"github.com/finelog/finelog/internal/loggen"
)

func init() {
	register(command{
		name:    "bench",
		summary: "load-generate against a running finelogd and report lines/s, MB/s, latency",
		run:     runBench,
	})
	helps["bench"] = helpDoc{
		usage:       "finelog bench [flags]",
		description: "load-generate against finelogd (or a throw-away one with --spawn) and report lines/s, MB/s, latency, server CPU and RSS",
		examples: []string{
			"finelog bench --spawn                       # own empty finelogd, CPU and RSS included",
			"finelog bench --lines 100000 --metrics http://127.0.0.1:7070/metrics",
			"finelog bench --addr http://10.0.0.5:7070 --prefix /bench/try-2/",
			"finelog bench --spawn --victorialogs http://127.0.0.1:9428  # then the same lines to VictoriaLogs",
			"finelog bench --spawn --lines 15000000 --tail-every 200ms  # sustained: a reader tails one key meanwhile",
		},
	}
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
	prefix      string
	protocol    string
	push        benchPusher   // nil: PushLogs through the client
	tailEvery   time.Duration // >0: a reader tails one bench key this often during the run
}

func runBench(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	conn := addConnFlags(fs, env)
	var bc benchConfig
	fs.IntVar(&bc.lines, "lines", 5_000_000, "total lines to push")
	fs.IntVar(&bc.keys, "keys", 1000, "distinct keys (one key per batch, round-robin)")
	fs.IntVar(&bc.batch, "batch", 1000, "lines per push")
	fs.IntVar(&bc.concurrency, "concurrency", 4, "concurrent pushers")
	fs.IntVar(&bc.pid, "pid", 0, "finelogd's `pid` on this machine: report its CPU seconds per million lines and peak RSS from /proc")
	fs.StringVar(&bc.metricsURL, "metrics", "", "finelogd /metrics `URL`: report CPU and RSS from its process metrics")
	fs.DurationVar(&bc.progress, "progress", 2*time.Second, "progress line interval (0: no progress lines)")
	fs.Uint64Var(&bc.seed, "seed", 1, "seed of the line generator")
	fs.BoolVar(&bc.gzip, "gzip", false, "gzip request bodies")
	fs.DurationVar(&bc.tailEvery, "tail-every", 0, "while pushing, read the newest 1000 rows of one bench key this often (e.g. 200ms) and report the reads' latency (0: no reader)")
	fs.StringVar(&bc.protocol, "protocol", benchPushLogs, "push over `pushlogs`, loki (push API, protobuf+snappy), otlp (OTLP/HTTP protobuf), or all (each in turn, with ratios to pushlogs)")
	fs.StringVar(&bc.prefix, "prefix", "/bench/run-"+time.Now().UTC().Format("20060102T150405Z")+"/", "key `prefix` the bench rows are written under")
	spawn := fs.Bool("spawn", false, "start a throw-away finelogd (empty data dir, free loopback port) for a clean measurement, report its CPU and RSS, then stop it and delete its data")
	finelogd := fs.String("finelogd", "", "finelogd `binary` for --spawn (default: next to finelog, else on PATH)")
	vl := fs.String("victorialogs", "", "VictoriaLogs `URL` (http://host:port): after finelogd, push the same lines to its /insert/jsonline and print the throughput ratio")
	pos, err := parseArgs(env, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected arguments: %q", pos)
	}
	if bc.lines <= 0 || bc.keys <= 0 || bc.batch <= 0 || bc.concurrency <= 0 {
		return fmt.Errorf("--lines, --keys, --batch and --concurrency must be positive")
	}
	if bc.progress < 0 {
		return fmt.Errorf("--progress %s: want a positive interval such as 2s, or 0 for no progress lines", bc.progress)
	}
	if bc.tailEvery < 0 {
		return fmt.Errorf("--tail-every %s: want a positive interval such as 200ms, or 0 for no reader", bc.tailEvery)
	}
	if bc.tailEvery > 0 && bc.protocol != benchPushLogs {
		return fmt.Errorf("--tail-every runs beside PushLogs: drop --protocol %s", bc.protocol)
	}
	if !strings.HasPrefix(bc.prefix, "/") || !strings.HasSuffix(bc.prefix, "/") {
		return fmt.Errorf("--prefix %q: want a key prefix that starts and ends with /", bc.prefix)
	}
	if *vl != "" {
		if bc.protocol != benchPushLogs {
			return fmt.Errorf("--victorialogs compares with PushLogs: drop --protocol %s", bc.protocol)
		}
		if err := checkVL(ctx, *vl); err != nil {
			return err
		}
	}
	var d *spawned
	if *spawn {
		if bc.pid != 0 || bc.metricsURL != "" {
			return fmt.Errorf("--spawn measures the daemon it starts: drop --pid and --metrics")
		}
		bin, err := findFinelogd(*finelogd)
		if err != nil {
			return err
		}
		d, err = spawnFinelogd(ctx, bin, env.stderr)
		if err != nil {
			return err
		}
		defer d.stop()
		conn.addr = d.addr
		conn.tokenFile = ""
		bc.pid = d.pid()
		fmt.Fprintf(env.stdout, "spawned      %s at %s (pid %d, data in %s, deleted after)\n", bin, d.addr, d.pid(), d.dataDir)
	}
	var extra []client.Option
	if bc.gzip {
		extra = append(extra, client.WithGzip())
	}
	c, err := conn.client(extra...)
	if err != nil {
		return err
	}
	// Fail fast with the friendly error if the server is not there, and
	// say so when the store already holds data: the bench adds bc.lines
	// rows to it, and other data skews the measurement.
	other, err := c.Fetch(ctx, &loggingpb.FetchLogsRequest{MatchScope: loggingpb.MatchScope_MATCH_SCOPE_REGEX, MaxLines: 1})
	if err != nil {
		return conn.friendly(err)
	}
	fmt.Fprintf(env.stdout, "writing      %d lines under key prefix %s at %s\n", bc.lines, bc.prefix, conn.addr)
	if es := other.GetEntries(); len(es) > 0 {
		fmt.Fprintf(env.stderr, "finelog bench: warning: the store at %s already holds data (e.g. key %q): the bench adds %d rows to it under %s; use --spawn for a clean measurement\n",
			conn.addr, es[0].GetKey(), bc.lines, bc.prefix)
	}
	if bc.protocol != benchPushLogs {
		return runProtocolBench(ctx, env, c, conn, bc)
	}
	r, err := bench(ctx, c, bc, env.stderr)
	if err != nil {
		return conn.friendly(err)
	}
	r.print(env.stdout, bc)
	metricsURL := bc.metricsURL
	if d != nil {
		metricsURL = d.addr + "/metrics"
	}
	if metricsURL != "" {
		if w, err := scrapeStoreWrites(ctx, metricsURL); err != nil {
			fmt.Fprintf(env.stderr, "finelog bench: no write amplification: %v\n", err)
		} else {
			w.print(env.stdout, "at the end")
		}
	}
	if d != nil {
		// Before VictoriaLogs runs, so its load does not slow the settling.
		size, waited := d.settledBytes(ctx, settleTimeout)
		fmt.Fprintf(env.stdout, "disk         %.1f bytes per line (%d bytes in the data dir once its size held still; waited %s)\n",
			float64(size)/float64(max(r.lines, 1)), size, waited.Round(100*time.Millisecond))
		if w, err := scrapeStoreWrites(ctx, metricsURL); err == nil {
			w.print(env.stdout, "once settled")
		}
		if rest, ok := d.restingBytes(); ok {
			fmt.Fprintf(env.stdout, "disk at rest %.1f bytes per line (%d bytes once a graceful stop flushed the last memtable: no WAL left)\n",
				float64(rest)/float64(max(r.lines, 1)), rest)
		} else {
			fmt.Fprintf(env.stderr, "finelog bench: finelogd did not stop within 30s: no at-rest disk figure\n")
		}
	}
	if *vl != "" {
		return runVLBench(ctx, env, c, *vl, bc, r)
	}
	return nil
}

type benchResult struct {
	lines, bytes int64
	elapsed      time.Duration
	latencies    []time.Duration
	tail         *tailResult // nil without --tail-every
	cpu          float64     // server CPU seconds during the run; <0 unknown
	peakRSS      int64       // bytes; <0 unknown
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
		keys[i] = bc.prefix + strings.TrimPrefix(loggen.Key(i), "/")
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
	var tl *tailer
	if bc.tailEvery > 0 {
		tl = startTailer(ctx, c, keys[0], bc.tailEvery)
	}
	var wg sync.WaitGroup
	for w := range bc.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := loggen.New(int64(bc.seed)+int64(w), time.Now(), bc.keys)
			// A few distinct batches per pusher, reused round-robin, keep
			// the generator out of the measurement.
			const pool = 8
			reqs := make([]*loggingpb.PushLogsRequest, pool)
			sizes := make([]int64, pool)
			for i := range reqs {
				reqs[i] = &loggingpb.PushLogsRequest{}
				for j := range bc.batch {
					e := benchEntry(gen, keys[(w*pool+i+j)%len(keys)])
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
				var err error
				if bc.push != nil {
					err = bc.push(ctx, req)
				} else {
					_, err = c.Push(ctx, req)
				}
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
	// The tick also samples the server's RSS, so it runs without progress
	// lines too.
	every := bc.progress
	if every == 0 {
		every = 2 * time.Second
	}
	tick := time.NewTicker(every)
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
			if bc.progress == 0 {
				continue
			}
			fmt.Fprintf(progress, "bench: %d/%d lines (%.0f%%)  %.0f lines/s now  %.0f lines/s overall\n",
				n, bc.lines, 100*float64(n)/float64(bc.lines), rate, float64(n)/now.Sub(start).Seconds())
		}
	}
	elapsed := time.Since(start)
	var tail *tailResult
	if tl != nil {
		tail = tl.finish()
	}
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
		tail:    tail,
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
	if r.tail != nil {
		r.tail.print(w)
	}
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

// benchEntry is one generated line as a wire entry. The lines come from
// internal/loggen, the generator the store benchmarks use: ~150 bytes with
// a timestamp, level, component, task and random ids and numbers.
func benchEntry(g *loggen.Gen, key string) *loggingpb.LogEntry {
	l := g.NextFor(key)
	return &loggingpb.LogEntry{
		Timestamp: &loggingpb.Timestamp{EpochMs: l.EpochMS},
		Source:    "stdout",
		Data:      l.Data,
		Level:     loggingpb.LogLevel(l.Level),
	}
}
