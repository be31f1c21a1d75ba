package store

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/loggen"
	"github.com/finelog/finelog/internal/vfs"
)

// Benchmarks run on the real disk under os.TempDir() (set TMPDIR to the
// disk you want measured). Examples:
//
//	go test ./store -run '^$' -bench 'AppendDurable' -benchtime 5s
//	go test ./store -run '^$' -bench 'Fetch' -benchtime 10x

var benchStart = time.Date(2026, 11, 24, 3, 53, 22, 0, time.UTC)

func benchRows(seed int64, n int, nKeys int) []Row {
	g := loggen.New(seed, benchStart, nKeys)
	rows := make([]Row, n)
	for i := range rows {
		l := g.Next()
		rows[i] = Row{Key: l.Key, Source: "stdout", Data: l.Data, EpochMS: l.EpochMS, Level: l.Level}
	}
	return rows
}

// diskBaseline measures, in dir, sequential write bandwidth with an
// fdatasync after every 1 MiB, and the rate of small write+fdatasync pairs:
// the two numbers the append targets are relative to.
func diskBaseline(b *testing.B, dir string) (mbPerSec, syncsPerSec float64) {
	f, err := vfs.OS{}.Create(filepath.Join(dir, "baseline"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(chunk)
	const chunks = 64
	start := time.Now()
	for i := 0; i < chunks; i++ {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	mbPerSec = float64(chunks) / time.Since(start).Seconds()
	small := chunk[:150]
	const syncs = 200
	start = time.Now()
	for i := 0; i < syncs; i++ {
		f.Write(small)
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	syncsPerSec = syncs / time.Since(start).Seconds()
	return mbPerSec, syncsPerSec
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkAppendDurable(b *testing.B) {
	for _, c := range []struct{ batch, writers int }{{1000, 4}, {1, 64}} {
		b.Run(fmt.Sprintf("batch=%d/writers=%d", c.batch, c.writers), func(b *testing.B) {
			dir := b.TempDir()
			diskMB, diskSyncs := diskBaseline(b, dir)
			cfs := &countingFS{FS: vfs.OS{}}
			s, err := Open(Options{FS: cfs, Dir: filepath.Join(dir, "store"), Background: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			pool := benchRows(1, 20000, 1000)
			var bytesPerBatch int64
			for i := 0; i < c.batch; i++ {
				bytesPerBatch += int64(len(pool[i].Data))
			}
			b.SetBytes(bytesPerBatch)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			syncs0, walBytes0, syncNanos0 := cfs.walSyncs.Load(), cfs.walBytes.Load(), cfs.walSyncNanos.Load()
			cpu0 := processCPU()
			start := time.Now()
			for w := 0; w < c.writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						off := int(i*int64(c.batch)) % (len(pool) - c.batch)
						if _, err := s.Append(context.Background(), Batch{Rows: pool[off : off+c.batch]}); err != nil {
							b.Error(err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			el := time.Since(start).Seconds()
			b.StopTimer()
			rows := float64(b.N * c.batch)
			rowsPerSec := rows / el
			syncs := float64(cfs.walSyncs.Load() - syncs0)
			b.ReportMetric(rows/syncs, "rows/fsync")
			// The share of the run the WAL spent in fdatasync: below 1 the
			// disk waited on the committer.
			b.ReportMetric(float64(cfs.walSyncNanos.Load()-syncNanos0)/1e9/el, "wal_sync_busy")
			// CPU (user+system, every goroutine: flushes and compactions
			// too) per row: robust to other load on the machine, unlike
			// rows/s.
			b.ReportMetric((processCPU()-cpu0).Seconds()*1e6/rows, "cpu_us/row")
			// WAL bytes per row beyond the line's own bytes: record headers,
			// key, source and the per-row encoding.
			b.ReportMetric(float64(cfs.walBytes.Load()-walBytes0)/rows-float64(bytesPerBatch)/float64(c.batch), "wal_overhead_B/row")
			mbPerSec := float64(int64(b.N)*bytesPerBatch) / el / (1 << 20)
			b.ReportMetric(rowsPerSec, "rows/s")
			b.ReportMetric(diskMB, "disk_fdatasync_MB/s")
			b.ReportMetric(diskSyncs, "disk_fdatasyncs/s")
			if c.batch > 1 {
				b.ReportMetric(mbPerSec/diskMB, "x_disk_bandwidth")
			} else {
				b.ReportMetric(rowsPerSec/diskSyncs, "x_single_fsync_rate")
			}
		})
	}
}

const (
	benchStoreRows = 5_000_000
	benchStoreKeys = 1000
	benchRareToken = "illegal memory access"
	// Bump when the segment format or the generator changes so a stale
	// cached store is rebuilt.
	benchStoreVersion = 5
)

var benchStoreOnce struct {
	sync.Once
	dir string
	err error
}

// benchStore returns a directory holding a flushed and compacted store of
// 5M generated rows over 1000 keys, five of which contain benchRareToken. It
// is built once and cached under os.TempDir() across runs.
func benchStore(b *testing.B) string {
	benchStoreOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("finelog-bench-store-v%d", benchStoreVersion))
		benchStoreOnce.dir = dir
		if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
			return
		}
		os.RemoveAll(dir)
		b.Logf("building the benchmark store in %s (once)", dir)
		s, err := Open(Options{FS: vfs.OS{}, Dir: dir}) // the daemon's memtable and segment sizes
		if err != nil {
			benchStoreOnce.err = err
			return
		}
		// Rows arrive shaped like PushLogs requests (one key, 1-200 lines),
		// which is what a store sees: each task pushes its own lines.
		g := loggen.New(42, benchStart, benchStoreKeys)
		rng := rand.New(rand.NewSource(7))
		rare := map[int]bool{}
		for len(rare) < 5 {
			rare[rng.Intn(benchStoreRows)] = true
		}
		ctx := context.Background()
		batch := make([]Row, 0, 20000)
		for n := 0; n < benchStoreRows; {
			for _, l := range g.Push(200) {
				if n == benchStoreRows {
					break
				}
				r := Row{Key: l.Key, Source: "stdout", Data: l.Data, EpochMS: l.EpochMS, Level: l.Level}
				if rare[n] {
					r.Level = LevelError
					r.Data = fmt.Sprintf("%s ERROR train.loop [%s] CUDA error: an %s was encountered device=%d xid=79", time.UnixMilli(l.EpochMS).UTC().Format("2006-01-02T15:04:05.000000Z"), l.Key[len("/user/"):], benchRareToken, rng.Intn(8))
				}
				batch = append(batch, r)
				n++
			}
			if len(batch) >= 10000 || n == benchStoreRows {
				if _, err := s.Append(ctx, Batch{Rows: batch}); err != nil {
					benchStoreOnce.err = err
					return
				}
				batch = batch[:0]
				if s.Stats().MemtableBytes >= s.opts.MemtableBytes {
					if err := s.Flush(ctx); err != nil {
						benchStoreOnce.err = err
						return
					}
				}
			}
		}
		if err := s.Flush(ctx); err != nil {
			benchStoreOnce.err = err
			return
		}
		if err := s.Compact(ctx); err != nil {
			benchStoreOnce.err = err
			return
		}
		if err := s.Close(); err != nil {
			benchStoreOnce.err = err
			return
		}
		os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644)
	})
	if benchStoreOnce.err != nil {
		b.Fatal(benchStoreOnce.err)
	}
	return benchStoreOnce.dir
}

func openBenchStore(b *testing.B) *Store {
	s, err := Open(Options{FS: vfs.OS{}, Dir: benchStore(b)})
	if err != nil {
		b.Fatal(err)
	}
	st := s.Stats()
	if st.LastSeq != benchStoreRows || st.MemtableRows != 0 {
		b.Fatalf("benchmark store is not complete: %+v (delete %s)", st, benchStoreOnce.dir)
	}
	b.Cleanup(func() {
		// After the loop: ResetTimer discards metrics reported before it.
		b.ReportMetric(float64(st.SegmentBytes)/float64(st.SegmentRows), "bytes/line")
		b.ReportMetric(float64(st.Segments), "segments")
	})
	return s
}

func BenchmarkFetchTail(b *testing.B) {
	s := openBenchStore(b)
	defer s.Close()
	ctx := context.Background()
	keys := loggen.New(0, benchStart, benchStoreKeys).Keys()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := s.Fetch(ctx, Query{Source: keys[(i*7919)%len(keys)], Scope: ScopeExact, Tail: true, MaxLines: 1000})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Rows) != 1000 {
			b.Fatalf("tail returned %d rows, want 1000", len(res.Rows))
		}
	}
}

func BenchmarkFetchSubstring(b *testing.B) {
	s := openBenchStore(b)
	defer s.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := s.Fetch(ctx, Query{Source: "", Scope: ScopeRegex, Substring: benchRareToken, MaxLines: 1000})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Rows) != 5 {
			b.Fatalf("substring returned %d rows, want 5", len(res.Rows))
		}
	}
}

// BenchmarkScanSegment: the relay catching up from a compacted segment,
// consecutive Scans of 1000 rows in seq order across all keys (run it with
// -benchtime 200x or more: the first Scan of each 64 Ki window pays for it).
func BenchmarkScanSegment(b *testing.B) {
	s := openBenchStore(b)
	defer s.Close()
	ctx := context.Background()
	after := int64(1_000_000)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rows, err := s.Scan(ctx, after, 1000, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(rows) != 1000 || rows[0].Seq != after+1 {
			b.Fatalf("Scan(%d) returned %d rows", after, len(rows))
		}
		after += 1000
		if after > benchStoreRows-1000 {
			after = 0
		}
	}
	b.ReportMetric(float64(b.N*1000)/time.Since(start).Seconds(), "rows/s")
}
