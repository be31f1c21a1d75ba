// Package gzipwire is Connect's "gzip" compression backed by
// klauspost/compress instead of the standard library. The bytes are ordinary
// gzip, so any Connect or gRPC peer reads them; klauspost's reader inflates
// about 2x and its writer deflates about 4x faster than compress/gzip, and
// gzip is what every relayed batch and most remote clients send.
package gzipwire

import (
	"io"

	"connectrpc.com/connect"
	"github.com/klauspost/compress/gzip"
)

// Name is the Connect/gRPC compression name.
const Name = "gzip"

// NewDecompressor returns a pooled-by-Connect gzip reader.
func NewDecompressor() connect.Decompressor { return &gzip.Reader{} }

// Compressor returns a factory of gzip writers at level (gzip.BestSpeed ..
// gzip.BestCompression, or gzip.DefaultCompression).
func Compressor(level int) func() connect.Compressor {
	return func() connect.Compressor {
		w, err := gzip.NewWriterLevel(io.Discard, level)
		if err != nil {
			// Only an out-of-range level fails; callers pass constants.
			panic(err)
		}
		return w
	}
}
