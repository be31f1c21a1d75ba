package objstore

import "io"

// newSectionSeeker lets Put re-read a segment file from the start (a retry
// inside the client seeks back) without holding it in memory.
func newSectionSeeker(r io.ReaderAt, size int64) io.ReadSeeker {
	return io.NewSectionReader(r, 0, size)
}
