package store

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/finelog/finelog/internal/vfs"
)

// The WAL is a sequence of files wal-<number>.log, each a run of records
// (walrecord.go). Files are only ever appended to by the process that created
// them: after Open, and after any failed write or sync, the store starts a
// new file instead of appending after bytes of unknown state. That keeps the
// recovery rule simple: inside one file, a bad record followed by nothing
// valid is a torn tail (dropped: it was never acked), and a bad record
// followed by a valid one is corruption (an error naming file and offset).
//
// Across files seqs must be continuous, with one exception: a file may start
// at a seq below the previous file's end. That happens only when a write or
// fdatasync failed: the store returned an error for those batches (never
// acked them), reused their seqs, and moved to a new file, while the failed
// bytes may still have reached the disk. The later file supersedes them.

const walPrefix, walSuffix = "wal-", ".log"

func walName(num uint64) string { return fmt.Sprintf("%s%016d%s", walPrefix, num, walSuffix) }

func parseWALName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, walPrefix) || !strings.HasSuffix(name, walSuffix) {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, walPrefix), walSuffix), 10, 64)
	return n, err == nil
}

type walFileInfo struct {
	num  uint64
	size int64
}

// wal is the append side. Only the committer (and seal, under walMu) touch it.
type wal struct {
	fs     vfs.FS
	dir    string
	cur    vfs.File
	curNum uint64
	next   uint64
	files  []walFileInfo // live files, oldest first; the last is cur when cur != nil
}

// rotate starts a new WAL file and makes its directory entry durable before
// anything is acked from it.
func (w *wal) rotate() error {
	num := w.next
	name := path.Join(w.dir, walName(num))
	f, err := w.fs.Create(name)
	if err != nil {
		return fmt.Errorf("create wal %s: %w", name, err)
	}
	w.next++
	if err := w.fs.SyncDir(w.dir); err != nil {
		f.Close()
		w.fs.Remove(name)
		return fmt.Errorf("sync dir after creating wal %s: %w", name, err)
	}
	if w.cur != nil {
		w.cur.Close()
	}
	w.cur, w.curNum = f, num
	w.files = append(w.files, walFileInfo{num: num})
	return nil
}

// abandon drops the current file after a failed write or sync: its tail is
// in an unknown state, so nothing more is appended to it.
func (w *wal) abandon() {
	if w.cur != nil {
		w.cur.Close()
		w.cur = nil
	}
}

// write appends buf and fdatasyncs it.
func (w *wal) write(buf []byte) error {
	if w.cur == nil {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	if _, err := w.cur.Write(buf); err != nil {
		w.files[len(w.files)-1].size += int64(len(buf)) // unknown; count it
		w.abandon()
		return fmt.Errorf("write wal %s: %w", walName(w.curNum), err)
	}
	w.files[len(w.files)-1].size += int64(len(buf))
	if err := w.cur.Sync(); err != nil {
		num := w.curNum
		w.abandon()
		return fmt.Errorf("sync wal %s: %w", walName(num), err)
	}
	return nil
}

// trimBefore removes every WAL file numbered below num (their rows are in a
// durable segment).
func (w *wal) trimBefore(num uint64) error {
	var keep []walFileInfo
	var firstErr error
	removed := false
	for _, fi := range w.files {
		if fi.num >= num {
			keep = append(keep, fi)
			continue
		}
		if err := w.fs.Remove(path.Join(w.dir, walName(fi.num))); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("remove wal %s: %w", walName(fi.num), err)
			keep = append(keep, fi)
			continue
		}
		removed = true
	}
	w.files = keep
	if removed {
		if err := w.fs.SyncDir(w.dir); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("sync dir after trimming wal: %w", err)
		}
	}
	return firstErr
}

func (w *wal) bytes() int64 {
	var n int64
	for _, f := range w.files {
		n += f.size
	}
	return n
}

func (w *wal) close() error {
	if w.cur == nil {
		return nil
	}
	err := w.cur.Close()
	w.cur = nil
	return err
}

// readWALFile returns the valid records of one file. A bad record is a torn
// tail (dropped) unless a valid record of a later group commit follows it,
// which is corruption (see walrecord.go on back).
func readWALFile(fsys vfs.FS, name string) ([]WALRecord, int64, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("open wal %s: %w", name, err)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("read wal %s: %w", name, err)
	}
	var recs []WALRecord
	off := 0
	for off < len(data) {
		rec, n, _, err := decodeWALFrame(data[off:])
		if err == nil {
			recs = append(recs, rec)
			off += n
			continue
		}
		if later, ok := findLaterGroup(data, off); ok {
			return nil, 0, fmt.Errorf("wal %s: corrupt record at offset %d (%v) followed by a valid record of a later group commit at offset %d: refusing to skip acknowledged data", name, off, err, later)
		}
		return recs, int64(len(data) - off), nil // torn tail
	}
	return recs, 0, nil
}

// findLaterGroup looks past the bad record at off for a valid record that
// proves off's group commit was synced: one whose group starts after off,
// or one that does not say where its group starts (older files). Valid
// records of off's own group are what a torn write leaves; they are skipped.
func findLaterGroup(data []byte, off int) (int, bool) {
	for i := off + 1; i+walHeaderSize <= len(data); i++ {
		if !plausibleHeader(data[i:]) {
			continue
		}
		_, n, back, err := decodeWALFrame(data[i:])
		if err != nil {
			continue
		}
		if back < 0 || int64(i)-back > int64(off) {
			return i, true
		}
		i += n - 1
	}
	return 0, false
}

// walReplay is the outcome of reading every WAL file at Open.
type walReplay struct {
	records []WALRecord // continuous, all rows > base
	// flushed are the records whose rows are all in segments (last <= base)
	// but whose marks may not be in producers.json yet (last > markBase).
	flushed []WALRecord
	files   []walFileInfo
	maxNum  uint64
	torn    []string // one line per file that ended in a torn (unacked) record
}

var errWALGap = errors.New("wal gap")

// replayWAL reads the WAL files in order and returns the continuous run of
// records after markBase (where producers.json's marks are as of, <= base),
// split at base (the highest seq already in segments).
func replayWAL(fsys vfs.FS, dir string, names []string, base, markBase int64) (walReplay, error) {
	out, err := replayWALAfter(fsys, dir, names, markBase)
	if err != nil {
		return out, err
	}
	recs := out.records
	out.records = nil
	for _, rec := range recs {
		switch {
		case rec.Last <= base:
			out.flushed = append(out.flushed, rec)
		case rec.First <= base: // straddles the segment boundary
			rec.Rows = rec.Rows[base-rec.First+1:]
			rec.First = base + 1
			out.records = append(out.records, rec)
		default:
			out.records = append(out.records, rec)
		}
	}
	return out, nil
}

func replayWALAfter(fsys vfs.FS, dir string, names []string, base int64) (walReplay, error) {
	var out walReplay
	expected := base + 1
	for _, name := range names {
		num, ok := parseWALName(name)
		if !ok {
			continue
		}
		p := path.Join(dir, name)
		recs, torn, err := readWALFile(fsys, p)
		if err != nil {
			return out, err
		}
		st, err := fsys.Stat(p)
		if err != nil {
			return out, fmt.Errorf("stat wal %s: %w", p, err)
		}
		if torn > 0 {
			out.torn = append(out.torn, fmt.Sprintf("%s: dropped a torn tail of %d bytes", p, torn))
		}
		out.files = append(out.files, walFileInfo{num: num, size: st.Size()})
		out.maxNum = max(out.maxNum, num)
		first := true
		for _, rec := range recs {
			if rec.Last < base || (rec.Last == base && rec.First <= base) {
				// Already in a durable segment, and its marks in the marks
				// as of base. A record without rows at base itself may have
				// come after the seal, so the marks as of base lack it: it
				// is kept for its marks.
				continue
			}
			if rec.First <= base { // straddles the segment boundary
				rec.Rows = rec.Rows[base-rec.First+1:]
				rec.First = base + 1
			}
			if first && rec.First < expected {
				// A file after a failed write supersedes the unacked tail of
				// the previous one (see the package comment above).
				i := len(out.records) - 1
				for i >= 0 && out.records[i].First > rec.First {
					i--
				}
				if i < 0 || out.records[i].First != rec.First {
					return out, fmt.Errorf("wal %s: first record starts at seq %d, inside an earlier record: %w", p, rec.First, errWALGap)
				}
				out.records = out.records[:i]
				expected = rec.First
			}
			first = false
			if rec.First != expected {
				return out, fmt.Errorf("wal %s: record starts at seq %d, expected %d (missing or reordered wal data): %w", p, rec.First, expected, errWALGap)
			}
			out.records = append(out.records, rec)
			expected = rec.Last + 1
		}
	}
	return out, nil
}
