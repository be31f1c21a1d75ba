package store

import (
	"context"
	"flag"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/loggen"
	"github.com/finelog/finelog/internal/vfs"
)

var settleLines = flag.Int("settle.lines", 2_000_000, "lines BenchmarkSettledBytesPerLine ingests")

// BenchmarkSettledBytesPerLine ingests the way `finelog bench` loads the
// daemon (4 pushers, batches of 1,000 lines of one key each, 1,000 keys,
// the daemon's store options with background flush and compaction), waits
// for the background work to settle, and reports disk bytes per line
// (segments plus any WAL left) and compaction write amplification: bytes
// written to segment files per byte of line data ingested.
//
//	go test ./store -run '^$' -bench SettledBytesPerLine -benchtime 1x
func BenchmarkSettledBytesPerLine(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		cfs := &countingFS{FS: vfs.OS{}}
		// FlushInterval is the one non-default: the last partial memtable
		// is flushed after seconds instead of the daemon's minute, so the
		// benchmark settles sooner; it does not change what is written.
		s, err := Open(Options{FS: cfs, Dir: filepath.Join(dir, "store"), Background: true, FlushInterval: 2 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		const pushers, batch, nKeys, pool = 4, 1000, 1000, 8
		keys := make([]string, nKeys)
		for k := range keys {
			// The key prefix `finelog bench` writes under: the generator
			// puts the key's task name in each line, so it is part of
			// what compresses.
			keys[k] = "/bench/run-20261202T040655Z" + loggen.Key(k)
		}
		var dataBytes [pushers]int64
		var wg sync.WaitGroup
		var next atomic.Int64
		batches := *settleLines / batch
		start := time.Now()
		for w := 0; w < pushers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				g := loggen.New(int64(w), benchStart, nKeys)
				reqs := make([][]Row, pool)
				for p := range reqs {
					for j := 0; j < batch; j++ {
						l := g.NextFor(keys[(w*pool+p+j)%nKeys])
						reqs[p] = append(reqs[p], Row{Source: "stdout", Data: l.Data, Level: l.Level})
					}
				}
				for {
					// Batches are claimed from one counter, as `finelog
					// bench` does: which pusher's lines a key's batch holds
					// varies, so a key's batches are not all identical
					// (which would compress unrealistically well).
					n := int(next.Add(1) - 1)
					if n >= batches {
						return
					}
					rows := reqs[n%pool]
					now := benchStart.Add(time.Duration(n) * time.Millisecond).UnixMilli()
					for j := range rows {
						rows[j].Key = keys[n%nKeys]
						rows[j].EpochMS = now
						dataBytes[w] += int64(len(rows[j].Data))
					}
					if _, err := s.Append(context.Background(), Batch{Rows: rows}); err != nil {
						b.Error(err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		ingest := time.Since(start)
		var data int64
		for _, d := range dataBytes {
			data += d
		}
		lines := float64(batches * batch)
		// Settled: everything flushed, no merge running, and no segment
		// change for longer than the maintenance tick.
		var st Stats
		stable := time.Now()
		for prev := (Stats{}); time.Since(stable) < 5*time.Second; time.Sleep(250 * time.Millisecond) {
			st = s.Stats()
			idle := s.compactMu.TryLock()
			if idle {
				s.compactMu.Unlock()
			}
			if !idle || st.Segments != prev.Segments || st.SegmentBytes != prev.SegmentBytes || st.MemtableRows > 0 {
				stable = time.Now()
			}
			prev = st
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("store did not settle in 10 minutes: %+v", st)
			}
		}
		b.ReportMetric(float64(st.SegmentBytes+st.WALBytes)/lines, "disk_B/line")
		b.ReportMetric(float64(st.WALBytes)/lines, "wal_B/line")
		b.ReportMetric(float64(st.Segments), "segments")
		// Write amplification two ways: segment bytes written per byte of
		// line data ingested, and per byte of the settled segments (1 would
		// be writing each row once, by its flush).
		b.ReportMetric(float64(cfs.otherBytes.Load())/float64(data), "seg_written/ingested")
		b.ReportMetric(float64(cfs.otherBytes.Load())/float64(st.SegmentBytes), "seg_written/settled")
		b.ReportMetric(float64(data)/lines, "line_B")
		b.ReportMetric(lines/ingest.Seconds(), "ingest_rows/s")
		s.mu.Lock()
		var sizes []int64
		for _, sg := range s.segs {
			sizes = append(sizes, sg.size>>20)
		}
		s.mu.Unlock()
		b.Logf("settled segments (MiB, oldest first): %v", sizes)

		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
