package store

import (
	"context"
	"flag"
	"runtime"
	"testing"

	"github.com/finelog/finelog/internal/loggen"
	"github.com/finelog/finelog/internal/vfs"
)

var compactLines = flag.Int("compact.lines", 5_000_000, "lines BenchmarkCompactAfterIngest flushes and compacts")

// BenchmarkCompactAfterIngest measures, without the timing noise of
// background maintenance, the CPU a store spends turning ingest into
// settled segments: rows in the shape `finelog bench` sends (1,000 keys,
// batches of 1,000 lines of one key, 4 pushers each cycling 8 batches) are
// appended and flushed every 150 batches (about what fills the daemon's
// 32 MiB memtable), then Compact runs until it has nothing to pick. It
// reports the CPU of the flushes and of the compaction per million lines,
// the settled bytes per line and the segment bytes written per settled
// byte. On MemFS, so the figures are CPU, not disk.
//
//	go test ./store -run '^$' -bench CompactAfterIngest -benchtime 1x
func BenchmarkCompactAfterIngest(b *testing.B) {
	const pushers, batch, nKeys, pool, flushEvery = 4, 1000, 1000, 8, 150
	keys := make([]string, nKeys)
	for k := range keys {
		keys[k] = "/bench/run-20261202T040655Z" + loggen.Key(k)
	}
	var reqs [pushers][pool][]Row
	for w := range reqs {
		g := loggen.New(int64(w), benchStart, nKeys)
		for p := range reqs[w] {
			for j := 0; j < batch; j++ {
				l := g.NextFor(keys[(w*pool+p+j)%nKeys])
				reqs[w][p] = append(reqs[w][p], Row{Source: "stdout", Data: l.Data, Level: l.Level})
			}
		}
	}
	batches := *compactLines / batch
	lines := float64(batches * batch)
	for i := 0; i < b.N; i++ {
		cfs := &countingFS{FS: vfs.NewMemFS()}
		s, err := Open(Options{FS: cfs, Dir: "/store"})
		if err != nil {
			b.Fatal(err)
		}
		var flushCPU float64
		for n := 0; n < batches; n++ {
			// Which pusher's batch a key gets varies, as when pushers claim
			// batches from one counter: a key's batches are not all the same.
			rows := reqs[int(uint32(n)*2654435761>>28)%pushers][n%pool]
			now := benchStart.UnixMilli() + int64(n)
			for j := range rows {
				rows[j].Key = keys[n%nKeys]
				rows[j].EpochMS = now
			}
			if _, err := s.Append(context.Background(), Batch{Rows: rows}); err != nil {
				b.Fatal(err)
			}
			if (n+1)%flushEvery == 0 || n == batches-1 {
				c0 := processCPU()
				if err := s.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
				flushCPU += (processCPU() - c0).Seconds()
			}
		}
		flushed := cfs.otherBytes.Load()
		runtime.GC()
		c0 := processCPU()
		if err := s.Compact(context.Background()); err != nil {
			b.Fatal(err)
		}
		compactCPU := (processCPU() - c0).Seconds()
		st := s.Stats()
		b.ReportMetric(flushCPU/lines*1e6, "flush_cpu_s/Mline")
		b.ReportMetric(compactCPU/lines*1e6, "compact_cpu_s/Mline")
		b.ReportMetric(float64(st.SegmentBytes)/lines, "settled_B/line")
		b.ReportMetric(float64(flushed)/lines, "flushed_B/line")
		b.ReportMetric(float64(cfs.otherBytes.Load())/float64(st.SegmentBytes), "seg_written/settled")
		b.ReportMetric(float64(st.Segments), "segments")
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
