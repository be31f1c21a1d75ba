package server

import (
	"io"

	"github.com/klauspost/compress/zstd"
)

// A zstd frame names its window, and the decoder allocates it at once: a
// 7 KB body declaring a 32 MiB window costs 32 MiB before a byte is
// inflated, outside any per-request charge. So the server's decoders
// refuse windows over zstdServerMaxWindow (finelog's relay uses 1 MiB, the
// zstd tool at most 8 MiB below --long), and at most zstdDecoders inflate
// at once: together at most 64 MiB, which docs/operations.md counts.
const (
	zstdServerMaxWindow = 8 << 20
	zstdDecoders        = 8
)

// serverZstd is a pooled zstd decoder with the server's window limit, as a
// connect.Decompressor (Close leaves it reusable, as wirecompress's does).
type serverZstd struct{ d *zstd.Decoder }

func newServerZstd() serverZstd {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdServerMaxWindow))
	if err != nil {
		panic(err) // constant options
	}
	return serverZstd{d}
}

func (r serverZstd) Read(p []byte) (int, error) { return r.d.Read(p) }
func (r serverZstd) Reset(rd io.Reader) error   { return r.d.Reset(rd) }
func (r serverZstd) Close() error               { return r.d.Reset(nil) }
