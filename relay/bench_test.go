package relay

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// benchRows is the backlog size: FINELOG_BENCH_ROWS (default 200,000; the
// documented drain figure uses 1,000,000).
func benchRows(b *testing.B) int {
	if s := os.Getenv("FINELOG_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("FINELOG_BENCH_ROWS=%q: %v", s, err)
		}
		return n
	}
	return 200_000
}

func openOSStore(b *testing.B, dir string) *store.Store {
	b.Helper()
	// A producer batch that overtakes an earlier one waits for it, as in
	// finelogd (whose store runs with Background).
	st, err := store.Open(store.Options{FS: vfs.OS{}, Dir: dir, Clock: clock.Real{}, ProducerOrderWait: store.DefaultProducerOrderWait})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// newGlobal starts a target finelogd stand-in on loopback over a real store
// on disk and returns the sink the daemon's relay would use for it
// (NewClientSink: gzip until the target's Accept-Encoding lists zstd).
func newGlobal(b *testing.B) (ClientSink, *store.Store) {
	dst := openOSStore(b, filepath.Join(b.TempDir(), "global"))
	b.Cleanup(func() { dst.Close() })
	srv := serveTarget(b, &targetService{st: dst})
	return NewClientSink(srv.URL, client.HTTP1Client(), nil, 0), dst
}

// BenchmarkRelayDrain measures how fast the relay empties a backlog from a
// store on disk to a target on loopback (one Step). Compare rows/s with
// BenchmarkDirectIngest.
func BenchmarkRelayDrain(b *testing.B) {
	n := benchRows(b)
	src := openOSStore(b, filepath.Join(b.TempDir(), "east"))
	defer src.Close()
	rows := realisticRows(n, 3)
	for i := range rows {
		// As the daemon stores its own rows: stamped with its cluster.
		rows[i].Cluster = "east"
	}
	appendRows(b, src, rows)
	for _, c := range []struct {
		inFlight int
		gzip     bool
	}{{1, false}, {4, false}, {4, true}} {
		name := "in-flight=" + strconv.Itoa(c.inFlight)
		if c.gzip {
			name += "/gzip"
		}
		inFlight := c.inFlight
		b.Run(name, func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				sink, dst := newGlobal(b)
				if c.gzip {
					// A target without zstd.
					sink.ZstdClient = nil
				}
				dir := b.TempDir()
				f, err := New(Config{Source: StoreSource{src}, Sink: sink, FS: vfs.OS{}, StatePath: filepath.Join(dir, "state.json"),
					DeadLetterPath: filepath.Join(dir, "dl.jsonl"), Target: "bench", Producer: "east/bench", Cluster: "east",
					Options: Options{Backfill: true, InFlight: inFlight}})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				cpu0 := processCPU()
				if _, err := f.Step(context.Background()); err != nil {
					b.Fatal(err)
				}
				cpu += processCPU() - cpu0
				b.StopTimer()
				if got := dst.LastSeq(); got != int64(n) {
					b.Fatalf("target has %d rows, want %d", got, n)
				}
				b.StartTimer()
			}
			reportRowsAndCPU(b, n, cpu)
		})
	}
}

// BenchmarkDirectIngest pushes the same rows straight to the target in
// 5000-row PushLogs, with 1 and 4 concurrent pushers, gzip-compressed as
// finelog's client sends them; "zstd" pushes as the relay does to a
// finelogd, so the relay's own overhead can be told from its compression.
func BenchmarkDirectIngest(b *testing.B) {
	n := benchRows(b)
	rows := realisticRows(n, 3)
	for _, c := range []struct {
		pushers int
		zstd    bool
	}{{1, false}, {4, false}, {4, true}} {
		name := "pushers=" + strconv.Itoa(c.pushers)
		if c.zstd {
			name += "/zstd"
		}
		b.Run(name, func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				sink, dst := newGlobal(b)
				if c.zstd {
					sink.Client = sink.ZstdClient
				}
				sink.ZstdClient = nil
				b.StartTimer()
				cpu0 := processCPU()
				var wg sync.WaitGroup
				next := make(chan []store.Row)
				for w := 0; w < c.pushers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for batch := range next {
							if _, err := sink.Push(context.Background(), Batch{Cluster: "east", Rows: batch}); err != nil {
								b.Error(err)
							}
						}
					}()
				}
				for i := 0; i < n; i += 5000 {
					next <- rows[i:min(i+5000, n)]
				}
				close(next)
				wg.Wait()
				cpu += processCPU() - cpu0
				b.StopTimer()
				if got := dst.LastSeq(); got != int64(n) {
					b.Fatalf("target has %d rows, want %d", got, n)
				}
				b.StartTimer()
			}
			reportRowsAndCPU(b, n, cpu)
		})
	}
}

// reportRowsAndCPU reports the rows per second of b.N runs of n rows, and
// the CPU of both ends (one process) per million rows, which is robust to
// other load on the machine.
func reportRowsAndCPU(b *testing.B, n int, cpu time.Duration) {
	rows := float64(n) * float64(b.N)
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(cpu.Seconds()/(rows/1e6), "cpu-s/Mrows")
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// farSink is the daemon's sink to a target half a round trip away: each
// answer reaches the relay delay after the target wrote it (the target
// stand-in delays each request as much).
type farSink struct {
	ClientSink
	delay time.Duration
}

func (s farSink) Push(ctx context.Context, b Batch) (store.Ack, error) {
	a, err := s.ClientSink.Push(ctx, b)
	time.Sleep(s.delay)
	return a, err
}

func (s farSink) PushSent(ctx context.Context, b Batch, sent func()) (store.Ack, error) {
	a, err := s.ClientSink.PushSent(ctx, b, sent)
	time.Sleep(s.delay)
	return a, err
}

// BenchmarkRelayDrainFar drains the backlog to a target a 20 ms round trip
// away, where what bounds the relay is how well its pushes overlap, not
// the CPU the two ends share in BenchmarkRelayDrain, so the figure moves
// little with other load on the machine.
func BenchmarkRelayDrainFar(b *testing.B) {
	const rtt = 20 * time.Millisecond
	n := benchRows(b)
	src := openOSStore(b, filepath.Join(b.TempDir(), "east"))
	defer src.Close()
	rows := realisticRows(n, 3)
	for i := range rows {
		rows[i].Cluster = "east"
	}
	appendRows(b, src, rows)
	for _, inFlight := range []int{1, 4} {
		b.Run("in-flight="+strconv.Itoa(inFlight), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				dst := openOSStore(b, filepath.Join(b.TempDir(), "global"))
				b.Cleanup(func() { dst.Close() })
				srv := serveTarget(b, &targetService{st: dst, delay: rtt / 2})
				sink := farSink{ClientSink: NewClientSink(srv.URL, client.HTTP1Client(), nil, 0), delay: rtt / 2}
				dir := b.TempDir()
				f, err := New(Config{Source: StoreSource{src}, Sink: sink, FS: vfs.OS{}, StatePath: filepath.Join(dir, "state.json"),
					DeadLetterPath: filepath.Join(dir, "dl.jsonl"), Target: "bench", Producer: "east/bench", Cluster: "east",
					Options: Options{Backfill: true, InFlight: inFlight}})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := f.Step(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if got := dst.LastSeq(); got != int64(n) {
					b.Fatalf("target has %d rows, want %d", got, n)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
