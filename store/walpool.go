package store

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/finelog/finelog/internal/vfs"
)

// Recycled WAL files. An fdatasync after an append that grows a file
// commits the file system's journal (the new size, the newly allocated
// blocks); one after overwriting bytes already written in place has no
// metadata to commit and is cheaper (1.8-2.7x for 4 KiB writes on the disks
// measured; fallocate alone does not help: unwritten extents are converted
// at the sync). So a WAL file whose rows are all in segments is not removed
// but renamed into a pool, walpool-<n>.log with n its last number, and the
// next rotation renames it to wal-<next>.log and overwrites it from the
// start. Past its new records it still holds valid records of its earlier
// use; every record carries its file's number (walrecord.go) and recovery
// stops at the first that is not this file's, so they are never replayed.
// Files holding records from before records carried a number are never
// recycled. With Options.Background, a pool file of zeros is pre-written
// (and fdatasync'ed) when a rotation found the pool empty, so a new store
// has cheap syncs long before its first flush.

const walPoolPrefix = "walpool-"

// walPoolFiles bounds the pool: a flush retires one file and the next seal
// takes one, so two cover the usual cycle; each is about a memtable's WAL.
const walPoolFiles = 2

// maxWALPrewrite bounds a pre-written pool file.
const maxWALPrewrite = 64 << 20

// minRecycledWALBytes: a retired file smaller than this is removed, not
// pooled. Its bytes held few syncs' worth of appends; the pool is for the
// memtable-sized files a store under load retires (tests lower it to
// recycle their small files).
var minRecycledWALBytes int64 = 1 << 20

// walReuse off makes a store opened meanwhile remove retired WAL files and
// never pre-write, as before files were recycled. Only a benchmark turns it
// off, to measure in one process what reuse gains.
var walReuse = true

type walPoolFile struct {
	num  uint64
	size int64
}

func walPoolName(num uint64) string {
	return fmt.Sprintf("%s%016d%s", walPoolPrefix, num, walSuffix)
}

func parseWALPoolName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, walPoolPrefix) || !strings.HasSuffix(name, walSuffix) {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, walPoolPrefix), walSuffix), 10, 64)
	return n, err == nil
}

// recycle moves a retired WAL file into the pool if it may be reused: the
// pool has room, the file has enough bytes to overwrite and its records
// carry its number. The caller syncs the directory.
func (w *wal) recycle(fi walFileInfo) bool {
	w.poolMu.Lock()
	defer w.poolMu.Unlock()
	if !w.recycles || fi.legacy || len(w.pool) >= walPoolFiles {
		return false
	}
	from := path.Join(w.dir, walName(fi.num))
	st, err := w.fs.Stat(from)
	if err != nil || st.Size() == 0 || st.Size() < minRecycledWALBytes {
		return false
	}
	if err := w.fs.Rename(from, path.Join(w.dir, walPoolName(fi.num))); err != nil {
		return false
	}
	w.pool = append(w.pool, walPoolFile{num: fi.num, size: st.Size()})
	return true
}

// reuse renames the oldest pool file to name and opens it for overwriting,
// returning its size. It returns a nil file when the pool is empty or the
// pool file could not be taken (the caller creates a new file instead; a
// pool file that failed to open is dropped from the pool).
func (w *wal) reuse(name string) (vfs.File, int64, error) {
	w.poolMu.Lock()
	defer w.poolMu.Unlock()
	if len(w.pool) == 0 {
		return nil, 0, nil
	}
	pf := w.pool[0]
	w.pool = w.pool[1:]
	if err := w.fs.Rename(path.Join(w.dir, walPoolName(pf.num)), name); err != nil {
		return nil, 0, nil
	}
	f, err := w.fs.OpenReuse(name)
	if err != nil {
		return nil, 0, nil
	}
	return f, pf.size, nil
}

// number hands out the next WAL file number.
func (w *wal) number() uint64 {
	w.poolMu.Lock()
	defer w.poolMu.Unlock()
	n := w.next
	w.next++
	return n
}

// switchWanted: the current file was created empty, so every sync of it
// commits the journal, and a pool file is ready; the committer rotates into
// it once nothing is in flight. (A recycled file written past its old size
// is not left early: the pool file is for the next seal, and taking it now
// would leave that seal a new empty file and the pre-writer a file to
// write, doubling the WAL's bytes.)
//
// Only with Options.Background (which also starts the pre-writer): without
// it the WAL changes files only when a step seals the memtable, so the
// simulation's scripted fault schedules meet the operations they name.
func (w *wal) switchWanted() bool {
	if w.kick == nil || w.cur == nil || w.curCap > 0 {
		return false
	}
	w.poolMu.Lock()
	defer w.poolMu.Unlock()
	return len(w.pool) > 0
}

// prewriteWanted: no pool file is ready (the pre-writer is woken when a
// rotation found none and created an empty file).
func (w *wal) prewriteWanted() bool {
	w.poolMu.Lock()
	defer w.poolMu.Unlock()
	return len(w.pool) == 0
}

// prewrite writes a pool file of size zero bytes and makes it durable. It
// runs beside the committer; a close of stop abandons it.
func (w *wal) prewrite(size int64, stop <-chan struct{}) error {
	num := w.number()
	name := path.Join(w.dir, walPoolName(num))
	f, err := w.fs.Create(name)
	if err != nil {
		return fmt.Errorf("create wal pool file %s: %w", name, err)
	}
	fail := func(err error) error {
		f.Close()
		w.fs.Remove(name)
		return err
	}
	chunk := make([]byte, 1<<20)
	for written := int64(0); written < size; {
		select {
		case <-stop:
			return fail(nil)
		default:
		}
		n := min(int64(len(chunk)), size-written)
		if _, err := f.Write(chunk[:n]); err != nil {
			return fail(fmt.Errorf("write wal pool file %s: %w", name, err))
		}
		written += n
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("sync wal pool file %s: %w", name, err))
	}
	if err := f.Close(); err != nil {
		w.fs.Remove(name)
		return fmt.Errorf("close wal pool file %s: %w", name, err)
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		w.fs.Remove(name)
		return fmt.Errorf("sync dir after writing wal pool file %s: %w", name, err)
	}
	w.poolMu.Lock()
	w.pool = append(w.pool, walPoolFile{num: num, size: size})
	w.poolMu.Unlock()
	return nil
}

// loadPool takes the pool files found at Open (names in dir), keeping at
// most walPoolFiles, and returns the highest number among them.
func (w *wal) loadPool(names []string) uint64 {
	var maxNum uint64
	for _, n := range names {
		num, ok := parseWALPoolName(n)
		if !ok {
			continue
		}
		maxNum = max(maxNum, num)
		p := path.Join(w.dir, n)
		st, err := w.fs.Stat(p)
		if err != nil || st.Size() == 0 || len(w.pool) >= walPoolFiles {
			w.fs.Remove(p)
			continue
		}
		w.pool = append(w.pool, walPoolFile{num: num, size: st.Size()})
	}
	return maxNum
}

// prewriteLoop writes a pool file when a rotation found none (Options.
// Background only: the simulation drives every write itself).
func (s *Store) prewriteLoop(kick <-chan struct{}, stop <-chan struct{}) {
	size := min(s.opts.MemtableBytes+s.opts.MemtableBytes/4, maxWALPrewrite)
	for {
		select {
		case <-kick:
		case <-stop:
			return
		}
		if !s.wal.prewriteWanted() {
			continue
		}
		if err := s.wal.prewrite(size, stop); err != nil {
			// No more tries in this process: on a disk short of space a
			// pre-write takes what appends need (retired files still come
			// to the pool, and overwriting those needs no new space).
			s.log.Warn("wal: pre-writing a file for reuse failed; not trying again until restart, the WAL keeps appending until a flush retires a file to reuse", "err", err)
			return
		}
	}
}
