// Package wirecompress is the request compression finelog speaks over
// Connect, backed by klauspost/compress instead of the standard library:
//
//   - gzip, which every Connect and gRPC peer understands. klauspost's reader
//     inflates about 2x and its writer deflates about 4x faster than
//     compress/gzip, for ordinary gzip bytes.
//   - zstd, which finelogd accepts and its relay sends to a target that
//     lists it in Accept-Encoding: at its fastest level it compresses a
//     relay batch about 2x faster than gzip level 6 into slightly fewer
//     bytes (docs/relay.md).
package wirecompress

import (
	"io"

	"connectrpc.com/connect"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression names as Connect and gRPC spell them.
const (
	Gzip = "gzip"
	Zstd = "zstd"
)

// GzipDecompressor returns a gzip reader for Connect to pool.
func GzipDecompressor() connect.Decompressor { return &gzip.Reader{} }

// GzipCompressor returns a factory of gzip writers at level (gzip.BestSpeed
// .. gzip.BestCompression, or gzip.DefaultCompression).
func GzipCompressor(level int) func() connect.Compressor {
	return func() connect.Compressor {
		w, err := gzip.NewWriterLevel(io.Discard, level)
		if err != nil {
			panic(err) // only an out-of-range level fails; callers pass constants
		}
		return w
	}
}

// zstdMaxWindow bounds the window a zstd frame may ask the decoder for
// (zstd's own limit is terabytes): finelog's writers use 1 MiB, common
// tools up to 8 MiB. The decompressed size is bounded separately by the
// handler's read limit.
const zstdMaxWindow = 32 << 20

// ZstdDecompressor returns a synchronous zstd reader for Connect to pool.
func ZstdDecompressor() connect.Decompressor {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow))
	if err != nil {
		panic(err) // constant options
	}
	return zstdReader{d}
}

// zstdReader adapts *zstd.Decoder to connect.Decompressor. Connect closes a
// decompressor after each message and then pools it, so Close must leave it
// reusable: it resets to no input instead of releasing the decoder (with
// concurrency 1 the decoder holds no goroutines, so nothing leaks when the
// pool drops it).
type zstdReader struct{ d *zstd.Decoder }

func (r zstdReader) Read(p []byte) (int, error) { return r.d.Read(p) }
func (r zstdReader) Reset(rd io.Reader) error   { return r.d.Reset(rd) }
func (r zstdReader) Close() error               { return r.d.Reset(nil) }

// ZstdCompressor returns zstd writers at the fastest level with a 1 MiB
// window (a relay batch is at most 8 MiB; a longer window gained nothing
// measurable and costs memory per pooled writer).
func ZstdCompressor() connect.Compressor {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(err) // constant options
	}
	return e
}

// HandlerOptions register both compressions on a Connect handler. A
// handler compresses only responses, and those at gzip's fastest level: on
// a 200 KB read response it takes half the CPU of the default level for
// ~8% more bytes, and a server answers many readers at once.
func HandlerOptions() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithCompression(Gzip, GzipDecompressor, GzipCompressor(gzip.BestSpeed)),
		connect.WithCompression(Zstd, ZstdDecompressor, ZstdCompressor),
	}
}
