package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// concurrentWorkload appends from several writers at once, so group commits
// hold several records in one write, with flushes in between.
func concurrentWorkload(s *Store, writers, batches int) []*attempt {
	ctx := context.Background()
	var mu sync.Mutex
	var atts []*attempt
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				rows := make([]Row, 1+b%3)
				for i := range rows {
					rows[i] = Row{Key: fmt.Sprintf("/w/%d", w), Data: fmt.Sprintf("w%d-b%d-r%d", w, b, i), EpochMS: t0.UnixMilli()}
				}
				ack, err := s.Append(ctx, Batch{Rows: rows})
				mu.Lock()
				atts = append(atts, &attempt{rows: rows, ack: ack, acked: err == nil})
				mu.Unlock()
				if w == 0 && b%5 == 4 {
					s.Flush(ctx)
				}
			}
		}()
	}
	wg.Wait()
	return atts
}

// The adversarial crash model (any subset of unsynced directory operations,
// unsynced tails cut, zeroed or scrambled) never loses an acked row, never
// shows an unacked partial batch, and never stops the store from opening.
func TestCrashModelKeepsAckedRows(t *testing.T) {
	cases := 60
	if raceEnabled || testing.Short() {
		cases = 20
	}
	for seed := int64(0); seed < int64(cases); seed++ {
		rng := rand.New(rand.NewSource(seed))
		fs := vfs.NewMemFS()
		// Die at a WAL fdatasync, half the time, so the crash finds an
		// unsynced group commit; otherwise at any operation.
		k := &killer{n: 20 + rng.Intn(200)}
		dieAtSync, syncs := 1+rng.Intn(16), 0
		if rng.Intn(2) == 0 {
			dieAtSync = -1
		}
		dead := false
		fs.Inject = func(op vfs.Op, name string) error {
			if op == vfs.OpSync && strings.Contains(name, walPrefix) {
				syncs++
				if syncs == dieAtSync {
					dead = true
				}
				// Let the other writers queue up behind this commit, so
				// the next group holds several records.
				for i := 0; i < 50; i++ {
					runtime.Gosched()
				}
			}
			if dead {
				return errKilled
			}
			return k.inject(op, name)
		}
		opts := memOpts(fs)
		var atts []*attempt
		s, err := Open(opts)
		if err == nil {
			atts = concurrentWorkload(s, 4, 12)
			s.Abandon()
		}
		fs.Inject = nil
		fs.Crash(rng)
		verifyRecovered(t, fs, opts, atts, fmt.Sprintf("seed %d (killed after op %d or at wal sync %d)", seed, k.n, dieAtSync)).Close()
	}
}

// A flush must make the new segment's directory entry durable before it
// touches the WAL: a later sync of the same directory (the WAL trim's)
// would otherwise hide a missing one. The process dies at the first WAL
// removal; the segment must be there after the crash.
func TestFlushSegmentDurableBeforeWALTrim(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	s := mustOpen(t, opts)
	mustAppend(t, s, mkRows("/k", 5, 0))
	var dead bool
	fs.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpRemove && strings.Contains(name, walPrefix) {
			dead = true
		}
		if dead {
			return errKilled
		}
		return nil
	}
	s.Flush(context.Background())
	s.Abandon()
	if !dead {
		t.Fatal("the flush never removed a WAL file")
	}
	fs.Inject = nil
	fs.Crash(nil)
	if segs := segFiles(t, fs); len(segs) != 1 {
		t.Fatalf("segments after a crash at the WAL trim: %v, want the flushed one", segs)
	}
	s = mustOpen(t, opts)
	defer s.Close()
	if got := len(allRows(t, s)); got != 5 {
		t.Fatalf("rows after crash = %d, want 5", got)
	}
}

// A WAL whose last record has its full length but fails its checksum is a
// torn write: its rows are never visible and the next append reuses its
// seqs.
func TestWALLastRecordBadChecksumIsTorn(t *testing.T) {
	for _, damage := range []struct {
		name string
		f    func(rec []byte)
	}{
		{"payload byte flipped", func(rec []byte) { rec[len(rec)-1] ^= 0x40 }},
		{"payload zeroed", func(rec []byte) { clear(rec[walHeaderSize:]) }},
		{"checksum zeroed", func(rec []byte) { clear(rec[:4]) }},
	} {
		t.Run(damage.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			s := mustOpen(t, memOpts(fs))
			mustAppend(t, s, mkRows("/a", 2, 0))
			mustAppend(t, s, []Row{{Key: "/a", Data: "torn-1"}, {Key: "/a", Data: "torn-2"}})
			s.Abandon()
			files := walFiles(t, fs)
			rewrite(t, fs, files[0], func(b []byte) []byte {
				_, n, err := DecodeWALRecord(b)
				if err != nil {
					t.Fatal(err)
				}
				damage.f(b[n:])
				return b
			})
			s = mustOpen(t, memOpts(fs))
			defer s.Close()
			for _, r := range allRows(t, s) {
				if strings.HasPrefix(r.Data, "torn") {
					t.Fatalf("row %q of the torn record is visible", r.Data)
				}
			}
			if ack := mustAppend(t, s, mkRows("/a", 2, 9)); ack.First != 3 || ack.Last != 4 {
				t.Fatalf("next append got seqs %d..%d, want the torn record's 3..4", ack.First, ack.Last)
			}
		})
	}
}

// legacyRecord encodes a record as files written before records carried
// their group offset: no grouped bit, no back field.
func legacyRecord(first, last int64, rows []Row) []byte {
	rec := appendWALRecord(nil, first, last, nil, rows)
	out := append([]byte(nil), rec[:walHeaderSize]...)
	out = append(out, rec[walHeaderSize+walBackSize:]...)
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-walHeaderSize))
	binary.LittleEndian.PutUint32(out[0:], crc32.Checksum(out[4:], castagnoli))
	return out
}

// A bad record followed by valid records of its own group commit is what a
// power cut leaves of an unsynced group (sectors written out of order): a
// torn tail. Followed by a record of a later group, it is corruption of
// synced data, and so is any valid record after a bad one in a file written
// before records carried their group offset.
func TestWALTornGroupVersusCorruption(t *testing.T) {
	synced := appendWALRecord(nil, 1, 2, nil, mkRows("/a", 2, 0))
	group := func() []byte {
		var g []byte
		g = encodeWALRecord(g, 3, 4, 0, nil, mkRows("/b", 2, 0))
		return encodeWALRecord(g, 5, 6, uint32(len(g)), nil, mkRows("/c", 2, 0))
	}
	damageFirst := func(b []byte, at int) { b[at+walHeaderSize+6] ^= 0xff }
	cases := []struct {
		name    string
		file    func() []byte
		corrupt bool
		last    int64
	}{
		{"bad record then same group", func() []byte {
			b := append(append([]byte(nil), synced...), group()...)
			damageFirst(b, len(synced))
			return b
		}, false, 2},
		{"bad record then a later group", func() []byte {
			b := append(append([]byte(nil), synced...), group()...)
			b = append(b, appendWALRecord(nil, 7, 7, nil, mkRows("/d", 1, 0))...)
			damageFirst(b, len(synced))
			return b
		}, true, 0},
		{"legacy: bad record then any valid record", func() []byte {
			b := append(legacyRecord(1, 2, mkRows("/a", 2, 0)), legacyRecord(3, 4, mkRows("/b", 2, 0))...)
			damageFirst(b, 0)
			return b
		}, true, 0},
		{"legacy records replay", func() []byte {
			return append(legacyRecord(1, 2, mkRows("/a", 2, 0)), legacyRecord(3, 4, mkRows("/b", 2, 0))...)
		}, false, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			fs.MkdirAll("/data")
			if err := vfs.WriteFileAtomic(fs, "/data/"+walName(1), c.file()); err != nil {
				t.Fatal(err)
			}
			s, err := Open(memOpts(fs))
			if c.corrupt {
				if err == nil || !strings.Contains(err.Error(), "refusing to skip acknowledged data") {
					t.Fatalf("Open = %v, want a corruption error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.LastSeq() != c.last {
				t.Fatalf("LastSeq = %d, want %d", s.LastSeq(), c.last)
			}
		})
	}
}
