package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// BenchmarkAttributes: what attributes cost on the write path (append on
// MemFS, so WAL encoding and the memtable without disk, then a flush to
// parquet) and on a filtered read of the segment, per 20000-row op, for
// rows without attributes and with five Loki/OTLP-like ones.
func BenchmarkAttributes(b *testing.B) {
	const n = 20000
	for _, withAttrs := range []bool{false, true} {
		rows := benchRows(1, n, 1000)
		if withAttrs {
			for i := range rows {
				a, err := MakeAttributes(map[string]string{"app": "api", "env": "prod", "host": fmt.Sprintf("node-%d", i%8),
					"trace_id": fmt.Sprintf("%032x", i/10), "span_id": fmt.Sprintf("%016x", i)})
				if err != nil {
					b.Fatal(err)
				}
				rows[i].Attributes = a
			}
		}
		name := fmt.Sprintf("attrs=%v", withAttrs)
		b.Run(name+"/append+flush", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := mustOpen(b, memOpts(vfs.NewMemFS()))
				for i := 0; i < n; i += 1000 {
					mustAppend(b, s, rows[i:i+1000])
				}
				if err := s.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
		b.Run(name+"/fetch-prefix", func(b *testing.B) {
			s := mustOpen(b, memOpts(vfs.NewMemFS()))
			defer s.Close()
			for i := 0; i < n; i += 1000 {
				mustAppend(b, s, rows[i:i+1000])
			}
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			q := Query{Source: "/", Scope: ScopePrefix, MaxLines: MaxMaxLines}
			if withAttrs {
				q.Attributes, _ = MakeAttributes(map[string]string{"host": "node-3"})
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Fetch(context.Background(), q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
