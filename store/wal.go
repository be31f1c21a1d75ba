package store

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"

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
	size int64 // bytes of records written (a recycled file is larger)
	// legacy: holds records without a file number; never recycled.
	legacy bool
}

// wal is the append side. Only the committer (and seal, under walMu) touch it.
type wal struct {
	fs     vfs.FS
	dir    string
	cur    vfs.File
	curNum uint64
	// poolMu guards next and pool, which the pre-writer uses too.
	poolMu sync.Mutex
	next   uint64
	// kick wakes the pre-writer (nil without Options.Background).
	kick chan struct{}
	// recycles: retired files go to the pool (walReuse at Open).
	recycles bool
	files    []walFileInfo // live files, oldest first; the last is cur when cur != nil
	// pool is the recycled and pre-written files ready for reuse
	// (walpool.go), oldest first; curCap is how many bytes cur had when
	// it was taken from there (0 for a file created empty): writes below
	// it overwrite in place.
	pool   []walPoolFile
	curCap int64
	// synced is how many of cur's bytes an fdatasync that returned covers:
	// records written later say how far past it they start (walrecord.go,
	// back), which is what recovery needs to tell a torn write from lost
	// acknowledged data once writes overlap the previous group's sync.
	synced int64
}

// rotate starts a new WAL file, a pool file when there is one, and makes its
// directory entry durable before anything is acked from it.
func (w *wal) rotate() error {
	num := w.number()
	name := path.Join(w.dir, walName(num))
	f, capacity, err := w.reuse(name)
	if err != nil {
		return err
	}
	if f == nil {
		if f, err = w.fs.Create(name); err != nil {
			return fmt.Errorf("create wal %s: %w", name, err)
		}
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		f.Close()
		w.fs.Remove(name)
		return fmt.Errorf("sync dir after creating wal %s: %w", name, err)
	}
	if w.cur != nil {
		w.cur.Close()
	}
	w.cur, w.curNum, w.curCap, w.synced = f, num, capacity, 0
	w.files = append(w.files, walFileInfo{num: num})
	if capacity == 0 {
		w.wantPrewrite()
	}
	return nil
}

// wantPrewrite asks the pre-writer (if there is one) for a pool file.
func (w *wal) wantPrewrite() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// abandon drops the current file after a failed write or sync: its tail is
// in an unknown state, so nothing more is appended to it.
func (w *wal) abandon() {
	if w.cur != nil {
		w.cur.Close()
		w.cur = nil
	}
}

// ready makes sure there is a current file to append to.
func (w *wal) ready() error {
	if w.cur != nil {
		return nil
	}
	return w.rotate()
}

// end is how many bytes have been written to the current file.
func (w *wal) end() int64 { return w.files[len(w.files)-1].size }

// append writes buf at the end of the current file (ready must have
// succeeded) without syncing it. After an error the file's tail is in an
// unknown state: the caller abandons it once no sync of it is running.
func (w *wal) append(buf []byte) error {
	_, err := w.cur.Write(buf)
	w.files[len(w.files)-1].size += int64(len(buf)) // on error: unknown; count it
	if err != nil {
		return fmt.Errorf("write wal %s: %w", walName(w.curNum), err)
	}
	return nil
}

// walSync is one fdatasync of the current file, run off the committer so
// the next group can be written meanwhile.
type walSync struct {
	f      vfs.File
	num    uint64
	target int64 // the file's written bytes when the sync started: what it covers
	done   chan error
}

// startSync fdatasyncs the current file on its own goroutine; the result
// arrives on done, and the caller passes it to synced.
func (w *wal) startSync(done chan error) walSync {
	ws := walSync{f: w.cur, num: w.curNum, target: w.end(), done: done}
	go func() { done <- ws.f.Sync() }()
	return ws
}

// syncedTo records the outcome of ws. On failure the file is abandoned.
func (w *wal) syncedTo(ws walSync, err error) error {
	if err != nil {
		if w.cur == ws.f {
			w.abandon()
		}
		return fmt.Errorf("sync wal %s: %w", walName(ws.num), err)
	}
	if w.cur == ws.f {
		w.synced = max(w.synced, ws.target)
	}
	return nil
}

// trimBefore retires every WAL file numbered below num (their rows are in
// a durable segment): into the pool while it has room, else removed.
func (w *wal) trimBefore(num uint64) error {
	var keep []walFileInfo
	var firstErr error
	changed := false
	for _, fi := range w.files {
		if fi.num >= num {
			keep = append(keep, fi)
			continue
		}
		if w.recycle(fi) {
			changed = true
			continue
		}
		if err := w.fs.Remove(path.Join(w.dir, walName(fi.num))); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("remove wal %s: %w", walName(fi.num), err)
			keep = append(keep, fi)
			continue
		}
		changed = true
	}
	w.files = keep
	if changed {
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

// walFileRead is what readWALFile found in one file.
type walFileRead struct {
	recs []WALRecord
	// live is how many bytes from the start the records span.
	live int64
	// dropped is how many bytes after them are neither records of this
	// file nor the zeros a pool file is pre-written with: a torn write, or
	// the cut-off middle of a record from an earlier use of the file.
	dropped int64
	// legacy: the file holds records from before they carried their file's
	// number; it is never recycled, since its records could not be told
	// from those of a later use.
	legacy bool
}

// readWALFile returns the records of WAL file num. They end at the first
// offset that does not hold a valid record of this file: a torn write, a
// record of an earlier use of a recycled file, or pre-written zeros. A bad
// record there is corruption instead when a valid record of this file
// follows that was written after it was synced (see walrecord.go on back).
func readWALFile(fsys vfs.FS, name string, num uint64) (walFileRead, error) {
	var out walFileRead
	f, err := fsys.Open(name)
	if err != nil {
		return out, fmt.Errorf("open wal %s: %w", name, err)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return out, fmt.Errorf("read wal %s: %w", name, err)
	}
	off := 0
	for off < len(data) {
		rec, n, fr, err := decodeWALFrame(data[off:])
		if err == nil && ofFile(fr, num) {
			out.recs = append(out.recs, rec)
			out.legacy = out.legacy || !fr.numbered
			off += n
			continue
		}
		if later, ok := findLaterGroup(data, off, num); ok {
			what := fmt.Sprintf("corrupt record at offset %d (%v)", off, err)
			if err == nil {
				what = fmt.Sprintf("record of wal file %d at offset %d", fr.wal, off)
			}
			return out, fmt.Errorf("wal %s: %s followed by a valid record at offset %d written after it was synced: refusing to skip acknowledged data", name, what, later)
		}
		out.live = int64(off)
		if err != nil && !allZero(data[off:]) {
			out.dropped = int64(len(data) - off)
		}
		return out, nil
	}
	out.live = int64(len(data))
	return out, nil
}

// ofFile: a record with this frame, found in WAL file num, is one of that
// file's records (those written before records carried a number are).
func ofFile(fr walFrame, num uint64) bool { return !fr.numbered || fr.wal == num }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// findLaterGroup looks past the bad record at off for a valid record of
// WAL file num that proves off was synced: one whose back says the file was
// synced past off when it was written, or one without a back (older files).
// Valid records written while off was not yet synced are what a torn write
// leaves, and records of an earlier use of a recycled file are what it
// overwrites; both are skipped.
func findLaterGroup(data []byte, off int, num uint64) (int, bool) {
	for i := off + 1; i+walHeaderSize <= len(data); i++ {
		if !plausibleHeader(data[i:]) {
			continue
		}
		_, n, fr, err := decodeWALFrame(data[i:])
		if err != nil {
			continue
		}
		if ofFile(fr, num) && (fr.back < 0 || int64(i)-fr.back > int64(off)) {
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
		rd, err := readWALFile(fsys, p, num)
		if err != nil {
			return out, err
		}
		if rd.dropped > 0 {
			out.torn = append(out.torn, fmt.Sprintf("%s: dropped %d bytes after its last record at offset %d", p, rd.dropped, rd.live))
		}
		out.files = append(out.files, walFileInfo{num: num, size: rd.live, legacy: rd.legacy})
		out.maxNum = max(out.maxNum, num)
		first := true
		for _, rec := range rd.recs {
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
