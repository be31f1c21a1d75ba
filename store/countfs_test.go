package store

import (
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/finelog/finelog/internal/vfs"
)

// countingFS counts the fdatasyncs of WAL files and every byte written,
// split into WAL and other (segment, metadata) files, so benchmarks can
// report rows per group commit and write amplification.
type countingFS struct {
	vfs.FS
	walSyncs, walBytes, otherBytes atomic.Int64
	walSyncNanos                   atomic.Int64 // time in WAL fdatasyncs
}

func (c *countingFS) Create(name string) (vfs.File, error) {
	f, err := c.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, fs: c, wal: strings.HasPrefix(path.Base(name), walPrefix)}, nil
}

type countingFile struct {
	vfs.File
	fs  *countingFS
	wal bool
}

func (f *countingFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if f.wal {
		f.fs.walBytes.Add(int64(n))
	} else {
		f.fs.otherBytes.Add(int64(n))
	}
	return n, err
}

func (f *countingFile) Sync() error {
	if !f.wal {
		return f.File.Sync()
	}
	start := time.Now()
	err := f.File.Sync()
	f.fs.walSyncNanos.Add(int64(time.Since(start)))
	f.fs.walSyncs.Add(1)
	return err
}
