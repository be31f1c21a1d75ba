package store

import (
	"github.com/klauspost/compress/zstd"
	pqzstd "github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// pageCodec is parquet's ZSTD codec with finelog's memory bounds.
//
// parquet-go's own zstd codec builds encoders with zstd's default 8 MiB
// window, whose match history costs 16 MiB per encoder, and keeps them in a
// GC-cleared pool, so a busy store both held ~100 MiB of history and kept
// reallocating it. A parquet page is compressed on its own (EncodeAll), and
// finelog's pages are at most pageWindow bytes, so a longer window can never
// find a match: it only costs memory. Encoders are kept in a small bounded
// free list instead of a sync.Pool, so the steady state allocates nothing
// and the idle state holds a fixed few MiB.
type pageCodec struct {
	level zstd.EncoderLevel
	encs  chan *zstd.Encoder
}

// pageWindow is the zstd window: the page buffer size rounded up to a power
// of two (zstd's rule).
const pageWindow = 256 << 10

// codecFreeList: encoders kept for reuse. Flush and merge each compress one
// page at a time, so two are busy at most; the rest is slack.
const codecFreeList = 4

func newPageCodec(level zstd.EncoderLevel) *pageCodec {
	return &pageCodec{level: level, encs: make(chan *zstd.Encoder, codecFreeList)}
}

func (c *pageCodec) String() string { return "ZSTD" }

func (c *pageCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *pageCodec) Encode(dst, src []byte) ([]byte, error) {
	var e *zstd.Encoder
	select {
	case e = <-c.encs:
	default:
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(c.level),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(pageWindow),
			zstd.WithLowerEncoderMem(true),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false),
		)
		if err != nil {
			return nil, err
		}
	}
	out := e.EncodeAll(src, dst[:0])
	select {
	case c.encs <- e:
	default:
	}
	return out, nil
}

// Decode is part of parquet's codec interface; parquet-go's reader decodes
// with the codec registered for the column's format code, never this one,
// so this only serves a caller that decodes with the write codec directly.
func (c *pageCodec) Decode(dst, src []byte) ([]byte, error) {
	return readCodec.Decode(dst, src)
}

var readCodec pqzstd.Codec
