package store

import (
	"context"
	"fmt"
	"math/rand"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/vfs"
	"go.uber.org/goleak"
)

// The store tests' WAL files are small; recycle them anyway, so every crash
// test covers reused files.
func init() { minRecycledWALBytes = 1 }

// reuseCountFS counts WAL files opened for reuse.
type reuseCountFS struct {
	*vfs.MemFS
	reuses atomic.Int64
}

func (r *reuseCountFS) OpenReuse(name string) (vfs.File, error) {
	r.reuses.Add(1)
	return r.MemFS.OpenReuse(name)
}

// staleRecordAt reports the offset of the first valid record past from in
// data that belongs to another WAL file than num (-1: none).
func staleRecordAt(data []byte, from int, num uint64) int {
	for i := from; i+walHeaderSize <= len(data); i++ {
		if !plausibleHeader(data[i:]) {
			continue
		}
		if _, _, fr, err := decodeWALFrame(data[i:]); err == nil && fr.numbered && fr.wal != num {
			return i
		}
	}
	return -1
}

// recycledStore appends and flushes until the WAL runs in a recycled file
// that holds valid records of its earlier use past its own. It returns the
// store, that file's path and number, and the offset where its own records
// end.
func recycledStore(t *testing.T, fs vfs.FS) (*Store, string, uint64, int64) {
	t.Helper()
	s := mustOpen(t, memOpts(fs))
	t.Cleanup(func() { s.Abandon() }) // after a failed check; no-op once closed
	for i := 0; i < 20; i++ {
		mustAppend(t, s, mkRows(fmt.Sprintf("/old/%d", i%3), 5, i*5))
	}
	if err := s.Flush(context.Background()); err != nil { // the old file goes to the pool
		t.Fatal(err)
	}
	mustAppend(t, s, mkRows("/between", 2, 0))
	if err := s.Flush(context.Background()); err != nil { // the seal takes the pool file
		t.Fatal(err)
	}
	mustAppend(t, s, mkRows("/new", 2, 0))
	mustAppend(t, s, mkRows("/new", 2, 2))
	files := walFiles(t, fs)
	cur := files[len(files)-1]
	num, _ := parseWALName(path.Base(cur))
	if s.wal.curNum != num || s.wal.curCap == 0 {
		t.Fatalf("the WAL runs in %s (capacity %d), want a recycled file", walName(s.wal.curNum), s.wal.curCap)
	}
	live := s.wal.end()
	data, err := vfs.ReadFile(fs, cur)
	if err != nil {
		t.Fatal(err)
	}
	if staleRecordAt(data, int(live), num) < 0 {
		t.Fatalf("%s holds no record of its earlier use past its own %d bytes (size %d)", cur, live, len(data))
	}
	return s, cur, num, live
}

// A recycled WAL file overwritten from its start still holds valid records
// of its earlier use past the new ones. Recovery replays only the new ones,
// and a torn last record followed by old records is a torn tail, not
// corruption (the old records' offsets say nothing about this use's syncs).
func TestRecycledWALNeverReplaysOldRecords(t *testing.T) {
	mem := vfs.NewMemFS()
	s, cur, num, live := recycledStore(t, mem)
	data, err := vfs.ReadFile(mem, cur)
	if err != nil {
		t.Fatal(err)
	}
	// The last record of this use starts where a decode of the live part
	// ends one record early.
	var last int
	for off := 0; off < int(live); {
		_, n, _, err := decodeWALFrame(data[off:])
		if err != nil {
			t.Fatalf("live record at %d: %v", off, err)
		}
		last, off = off, off+n
	}
	torn := append([]byte(nil), data...)
	torn[last+walHeaderSize+6] ^= 0xff
	cases := []struct {
		name string
		file []byte
		last int64
	}{
		{"clean", data, 106},
		{"torn last record", torn, 104},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := crashImage(t, mem, cur, c.file)
			s2, err := Open(memOpts(img))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s2.Close()
			if got := s2.LastSeq(); got != c.last {
				t.Fatalf("LastSeq = %d, want %d", got, c.last)
			}
			rows := allRows(t, s2)
			for i, r := range rows {
				if r.Seq != int64(i+1) {
					t.Fatalf("row %d has seq %d: seqs not dense", i, r.Seq)
				}
			}
			if len(rows) != int(c.last) {
				t.Fatalf("%d rows, want %d", len(rows), c.last)
			}
			// The next file number is past every file the pool ever held,
			// so no later use of a file can take old records for its own.
			if s2.wal.curNum <= num {
				t.Fatalf("reopened store writes %s, not past the recycled %s", walName(s2.wal.curNum), walName(num))
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// Power cuts at random points of a workload whose WAL files are recycled
// (flushes retire files into the pool, rotations overwrite them), with
// unsynced tails cut, zeroed or scrambled: no acked row is lost, no partial
// batch appears, seqs stay dense and the store always opens.
func TestCrashRecycledWALKeepsAckedRows(t *testing.T) {
	cases := 40
	if raceEnabled || testing.Short() {
		cases = 12
	}
	reused := 0
	for seed := int64(0); seed < int64(cases); seed++ {
		rng := rand.New(rand.NewSource(seed))
		mem := vfs.NewMemFS()
		fs := &reuseCountFS{MemFS: mem}
		dieAtSync, syncs := 15+rng.Intn(60), 0
		dead := false
		mem.Inject = func(op vfs.Op, name string) error {
			if op == vfs.OpSync && strings.Contains(name, walPrefix) {
				syncs++
				if syncs == dieAtSync {
					dead = true
				}
			}
			if dead {
				return errKilled
			}
			return nil
		}
		opts := memOpts(fs)
		var atts []*attempt
		s, err := Open(opts)
		if err == nil {
			atts = concurrentWorkload(s, 4, 24)
			s.Abandon()
		}
		if fs.reuses.Load() > 0 {
			reused++
		}
		mem.Inject = nil
		mem.Crash(rng)
		verifyRecovered(t, mem, memOpts(mem), atts, fmt.Sprintf("seed %d (killed at wal sync %d)", seed, dieAtSync)).Close()
	}
	if reused < cases/2 {
		t.Fatalf("only %d of %d runs reused a WAL file before the crash: the recycled path is barely tested", reused, cases)
	}
}

// With Options.Background a new store's WAL moves to a pre-written file
// soon after Open, and its records there replay after a reopen.
func TestPrewrittenWAL(t *testing.T) {
	defer goleak.VerifyNone(t)
	mem := vfs.NewMemFS()
	opts := memOpts(mem)
	opts.Background = true
	opts.MemtableBytes = 256 << 10
	s := mustOpen(t, opts)
	var acks int64
	deadline := time.Now().Add(10 * time.Second)
	for s.wal.curCap == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the WAL never moved to a pre-written file")
		}
		mustAppend(t, s, mkRows("/p", 1, int(acks)))
		acks++
		time.Sleep(time.Millisecond)
	}
	mustAppend(t, s, mkRows("/p", 1, int(acks)))
	acks++
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, memOpts(mem))
	defer s.Close()
	if got := len(allRows(t, s)); got != int(acks) {
		t.Fatalf("%d rows after reopen, want %d", got, acks)
	}
}

// File numbers are never reused: a store reopened with pool files numbered
// above its live WAL files numbers its next file past them, so a pool
// file's records can never pass for a later file's.
func TestWALNumbersPastPoolFiles(t *testing.T) {
	mem := vfs.NewMemFS()
	mem.MkdirAll("/data")
	rec := encodeWALRecord(nil, 1, 2, 0, 1, nil, mkRows("/a", 2, 0))
	if err := vfs.WriteFileAtomic(mem, "/data/"+walName(1), rec); err != nil {
		t.Fatal(err)
	}
	stale := encodeWALRecord(nil, 3, 4, 0, 7, nil, mkRows("/stale", 2, 0))
	if err := vfs.WriteFileAtomic(mem, "/data/"+walPoolName(7), stale); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, memOpts(mem))
	defer s.Close()
	if s.wal.curNum <= 7 {
		t.Fatalf("reopened store writes %s: not past pool file %s", walName(s.wal.curNum), walPoolName(7))
	}
	mustAppend(t, s, mkRows("/b", 1, 0))
	if got := len(allRows(t, s)); got != 3 {
		t.Fatalf("%d rows, want 3 (the pool file's record is not replayed)", got)
	}
}

// A pre-write that fails (a full disk) is removed and not retried; appends
// go on in the file the WAL appends to, and Close leaves no goroutine.
func TestPrewriteFailureLeavesAppendsWorking(t *testing.T) {
	defer goleak.VerifyNone(t)
	mem := vfs.NewMemFS()
	var attempts atomic.Int64
	mem.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpWrite && strings.Contains(name, walPoolPrefix) {
			attempts.Add(1)
			return fmt.Errorf("write %s: %w", name, vfs.ErrNoSpace)
		}
		return nil
	}
	opts := memOpts(mem)
	opts.Background = true
	opts.MemtableBytes = 64 << 10
	s := mustOpen(t, opts)
	waitFor(t, "the pre-write attempt", func() bool { return attempts.Load() > 0 })
	// A seal with the pool still empty rotates into a new empty file,
	// which would ask for a pre-write again.
	mustAppend(t, s, mkRows("/f", 1, 1000))
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // room for a retry that must not come
	for i := 0; i < 50; i++ {
		mustAppend(t, s, mkRows("/f", 20, i*20))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := attempts.Load(); n != 1 {
		t.Fatalf("%d pre-write attempts, want 1 (no retry after a failure)", n)
	}
	names, _ := mem.List("/data")
	for _, n := range names {
		if num, ok := parseWALPoolName(n); ok {
			if st, _ := mem.Stat(path.Join("/data", n)); st.Size() == 0 {
				t.Fatalf("the failed pre-write left %s (%d) behind", n, num)
			}
		}
	}
	mem.Inject = nil
	s = mustOpen(t, memOpts(mem))
	defer s.Close()
	if got := len(allRows(t, s)); got != 1001 {
		t.Fatalf("%d rows after reopen, want 1001", got)
	}
}

// A WAL file written before records carried their file's number replays,
// and once flushed it is removed, never pooled: its records could not be
// told from those of a later use.
func TestLegacyWALFileIsNotRecycled(t *testing.T) {
	mem := vfs.NewMemFS()
	mem.MkdirAll("/data")
	legacy := append(legacyRecord(1, 2, mkRows("/a", 2, 0)), legacyRecord(3, 4, mkRows("/b", 2, 0))...)
	if err := vfs.WriteFileAtomic(mem, "/data/"+walName(1), legacy); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, memOpts(mem))
	defer s.Close()
	if got := s.LastSeq(); got != 4 {
		t.Fatalf("LastSeq = %d after replaying the old file, want 4", got)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	names, _ := mem.List("/data")
	for _, n := range names {
		if n == walName(1) || n == walPoolName(1) {
			t.Fatalf("the old-format WAL file is still there as %s after the flush", n)
		}
	}
}
