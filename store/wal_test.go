package store

import (
	"context"
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

func TestWALRecordRoundTrip(t *testing.T) {
	rows := []Row{
		{Key: "/a", Source: "stdout", Data: "hello", EpochMS: 123, AttemptID: 2, Level: 7, Cluster: "east"},
		{Key: "/b", Data: "", EpochMS: -5, Level: -1},
	}
	marks := []ProducerMark{{Producer: "relay-east", Seq: 42}}
	b := appendWALRecord(nil, 10, 11, marks, rows)
	rec, n, err := DecodeWALRecord(append(b, 0xff, 0xff))
	if err != nil || n != len(b) {
		t.Fatalf("decode: n=%d err=%v", n, err)
	}
	rows[0].Seq, rows[1].Seq = 10, 11
	if rec.First != 10 || rec.Last != 11 || len(rec.Rows) != 2 || rec.Rows[0] != rows[0] || rec.Rows[1] != rows[1] || rec.Marks[0] != marks[0] {
		t.Fatalf("decoded %+v", rec)
	}
	for i := range b { // every single-byte flip is caught
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		if _, _, err := DecodeWALRecord(c); err == nil {
			t.Fatalf("flip at byte %d decoded without error", i)
		}
	}
	for i := 0; i < len(b); i++ { // every truncation is caught
		if _, _, err := DecodeWALRecord(b[:i]); err == nil {
			t.Fatalf("truncation to %d bytes decoded", i)
		}
	}
}

// walFiles returns the store's WAL file paths, oldest first.
func walFiles(t *testing.T, fs vfs.FS) []string {
	names, err := fs.List("/data")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, walPrefix) {
			out = append(out, path.Join("/data", n))
		}
	}
	return out
}

func rewrite(t *testing.T, fs vfs.FS, name string, f func([]byte) []byte) {
	data, err := vfs.ReadFile(fs, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(fs, name, f(data)); err != nil {
		t.Fatal(err)
	}
}

func TestRecoveryTornTailDropped(t *testing.T) {
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	mustAppend(t, s, mkRows("/a", 2, 0))
	mustAppend(t, s, mkRows("/a", 2, 2))
	s.Abandon()
	files := walFiles(t, fs)
	rewrite(t, fs, files[0], func(b []byte) []byte { return b[:len(b)-3] }) // tear the last record
	s = mustOpen(t, memOpts(fs))
	defer s.Close()
	if s.LastSeq() != 2 {
		t.Fatalf("LastSeq = %d after dropping the torn second record, want 2", s.LastSeq())
	}
	if ack := mustAppend(t, s, mkRows("/a", 1, 9)); ack.First != 3 {
		t.Fatalf("next seq %d, want 3", ack.First)
	}
}

func TestRecoveryCorruptionNamesFileAndOffset(t *testing.T) {
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	a1 := mustAppend(t, s, mkRows("/a", 2, 0))
	_ = a1
	mustAppend(t, s, mkRows("/a", 2, 2))
	s.Abandon()
	files := walFiles(t, fs)
	rewrite(t, fs, files[0], func(b []byte) []byte { b[walHeaderSize+3] ^= 1; return b }) // first record's payload
	_, err := Open(memOpts(fs))
	if err == nil || !strings.Contains(err.Error(), files[0]) || !strings.Contains(err.Error(), "offset 0") {
		t.Fatalf("Open with a corrupt non-tail record: %v; want an error naming %s and offset 0", err, files[0])
	}
}

func TestRecoveryGapAcrossFilesIsError(t *testing.T) {
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	mustAppend(t, s, mkRows("/a", 2, 0))
	s.Abandon()
	s = mustOpen(t, memOpts(fs)) // second WAL file
	mustAppend(t, s, mkRows("/a", 2, 2))
	s.Abandon()
	files := walFiles(t, fs)
	if len(files) < 2 {
		t.Fatalf("want 2 wal files, have %v", files)
	}
	if err := fs.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	_, err := Open(memOpts(fs))
	if !errors.Is(err, errWALGap) {
		t.Fatalf("Open with the first WAL file missing: %v, want a seq gap error", err)
	}
}

// TestFailedSyncRowsAreSuperseded: a batch whose fdatasync failed was never
// acked; if its bytes reached the disk anyway, the retry in the next WAL file
// (same seqs) wins, so no row appears twice.
func TestFailedSyncRowsAreSuperseded(t *testing.T) {
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	mustAppend(t, s, mkRows("/a", 1, 0))
	fail := true
	fs.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpSync && fail {
			fail = false
			return errors.New("EIO")
		}
		return nil
	}
	if _, err := s.Append(context.Background(), Batch{Rows: mkRows("/lost", 2, 0)}); err == nil {
		t.Fatal("append with a failing fdatasync succeeded")
	}
	fs.Inject = nil
	ack := mustAppend(t, s, mkRows("/retry", 2, 0))
	if ack.First != 2 {
		t.Fatalf("retry got seq %d, want 2 (the failed batch's seqs are reused)", ack.First)
	}
	s.Abandon()
	// Model the worst case: the failed write did reach the disk.
	s = mustOpen(t, memOpts(fs))
	defer s.Close()
	got := fetchAll(t, s, Query{Source: "/", Scope: ScopePrefix})
	if len(got) != 3 || got[1].Key != "/retry" || got[2].Key != "/retry" {
		t.Fatalf("after recovery: %+v; want /a then the two /retry rows", got)
	}
}
