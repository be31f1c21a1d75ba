package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// BenchmarkScanMemtable reads rows still in the memtables in the relay's
// batches (Scan of 5000 rows after a seq), as a relay catching up on a
// store that has not flushed them yet does.
func BenchmarkScanMemtable(b *testing.B) {
	const rows, batch = 200_000, 5000
	s, err := Open(Options{FS: vfs.NewMemFS(), Dir: "d", MemtableBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < rows; i += 1000 {
		rs := make([]Row, 1000)
		for j := range rs {
			rs[j] = Row{Key: fmt.Sprintf("/bench/key-%d", (i/1000)%100), Source: "stdout", Data: fmt.Sprintf("line %d of the memtable scan benchmark, with some words in it", i+j), EpochMS: int64(i + j)}
		}
		if _, err := s.Append(ctx, Batch{Rows: rs}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	after := int64(0)
	for i := 0; i < b.N; i++ {
		got, err := s.Scan(ctx, after, batch, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != batch || got[0].Seq != after+1 {
			b.Fatalf("Scan(%d) returned %d rows", after, len(got))
		}
		after += batch
		if after > rows-batch {
			after = 0
		}
	}
}
