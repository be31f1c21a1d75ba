// Package vfs is the injected filesystem. The store, the relay watermark and
// every other durable component go through FS, never through package os, so
// a test can swap in MemFS and crash it between any two syscalls.
package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
)

// FS is the set of filesystem operations finelog needs. Paths are slash or
// OS paths; implementations clean them.
type FS interface {
	// Create creates or truncates name for writing (and reading).
	Create(name string) (File, error)
	// Open opens name read-only.
	Open(name string) (File, error)
	// OpenAppend opens an existing file for appending (and reading).
	OpenAppend(name string) (File, error)
	// Rename atomically replaces newname with oldname. The change is durable
	// only after SyncDir of the directory.
	Rename(oldname, newname string) error
	Remove(name string) error
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string) error
	// List returns the names (not paths) in dir, sorted.
	List(dir string) ([]string, error)
	Stat(name string) (fs.FileInfo, error)
	// SyncDir makes the directory's entries (creates, renames, removes)
	// durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock named by the file name, held until the
	// returned Closer is closed or the process dies (a kill -9 never leaves
	// a lock behind). When another holder has it, the error is a
	// *LockedError (errors.Is(err, ErrLocked)).
	Lock(name string) (io.Closer, error)
}

// ErrLocked: Lock found the lock held by someone else.
var ErrLocked = errors.New("lock is held by another process")

// LockedError says who holds a lock, as far as is known.
type LockedError struct {
	Path string
	// PID is the holder's process id as it wrote it into the lock file, for
	// information only (0 when unknown): the lock itself is the flock, which
	// dies with its holder whatever the file says.
	PID int
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is locked by pid %d", e.Path, e.PID)
	}
	return fmt.Sprintf("%s is locked by another process", e.Path)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	// Sync makes the file's contents durable (fdatasync).
	Sync() error
	Stat() (fs.FileInfo, error)
}

// ErrNoSpace is returned (wrapped) when the device is full. The OS FS maps
// ENOSPC to it so callers can test errors.Is(err, vfs.ErrNoSpace).
var ErrNoSpace = errors.New("no space left on device")

// WriteFileAtomic writes data to name durably: tmp → fsync → rename → dir
// fsync. After it returns nil the new contents survive a crash; if it fails
// or the process crashes midway, the old contents (or no file) remain.
func WriteFileAtomic(fsys FS, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		fsys.Remove(tmp)
		return err
	}
	if err := fsys.Rename(tmp, name); err != nil {
		fsys.Remove(tmp)
		return err
	}
	return fsys.SyncDir(filepath.Dir(name))
}

// ReadFile reads the whole file.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// ReadFileDurable reads the whole file and then syncs its directory, so the
// name that was read survives a crash. A WriteFileAtomic whose final
// directory sync failed leaves a file that is visible but whose rename is
// not durable; a caller that acts on what it read (a relay resuming from a
// watermark) must not have it vanish afterwards.
func ReadFileDurable(fsys FS, name string) ([]byte, error) {
	data, err := ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	if err := fsys.SyncDir(filepath.Dir(name)); err != nil {
		return nil, fmt.Errorf("sync directory of %s: %w", name, err)
	}
	return data, nil
}
