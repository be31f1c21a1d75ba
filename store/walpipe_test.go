package store

import (
	"context"
	"errors"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/vfs"
	"go.uber.org/goleak"
)

// syncGateFS holds WAL fdatasyncs at a gate while armed, so a test can act
// while one is in flight.
type syncGateFS struct {
	vfs.FS
	armed   chan struct{} // closed: syncs wait
	entered chan struct{} // a sync reached the gate
	release chan struct{} // closed: waiting syncs go on
	fail    error         // returned by gated syncs instead of syncing
}

func newSyncGateFS(fs vfs.FS) *syncGateFS {
	return &syncGateFS{FS: fs, armed: make(chan struct{}), entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *syncGateFS) Create(name string) (vfs.File, error) {
	f, err := g.FS.Create(name)
	if err != nil || !strings.HasPrefix(path.Base(name), walPrefix) {
		return f, err
	}
	return &gatedFile{File: f, g: g}, nil
}

type gatedFile struct {
	vfs.File
	g *syncGateFS
}

func (f *gatedFile) Sync() error {
	select {
	case <-f.g.armed:
		f.g.entered <- struct{}{}
		<-f.g.release
		if f.g.fail != nil {
			return f.g.fail
		}
	default:
	}
	return f.File.Sync()
}

// waitFor polls cond (the committer runs on its own goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// crashImage copies every file of /data in from into a fresh MemFS, with
// the WAL file wal replaced by data: the disk a power cut could leave.
func crashImage(t *testing.T, from vfs.FS, wal string, data []byte) *vfs.MemFS {
	t.Helper()
	to := vfs.NewMemFS()
	to.MkdirAll("/data")
	names, err := from.List("/data")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		p := path.Join("/data", n)
		b, err := vfs.ReadFile(from, p)
		if err != nil {
			t.Fatal(err)
		}
		if p == wal {
			b = data
		}
		if err := vfs.WriteFileAtomic(to, p, b); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// While one group's fdatasync runs, the committer writes the next group
// behind it. Neither is visible nor acked before its own sync returns, and a
// power cut that tears the syncing group but leaves the later one intact is
// a torn tail (nothing in it was acked), not corruption; a damaged record
// that a sync had covered before a later record was written still is.
func TestWriteBehindSyncRecovery(t *testing.T) {
	defer goleak.VerifyNone(t)
	mem := vfs.NewMemFS()
	gate := newSyncGateFS(mem)
	s := mustOpen(t, memOpts(gate))
	mustAppend(t, s, mkRows("/base", 2, 0)) // seqs 1-2, synced
	wal := walFiles(t, mem)[0]
	size := func() int64 {
		st, err := mem.Stat(wal)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	baseEnd := size()

	close(gate.armed)
	type result struct {
		ack Ack
		err error
	}
	resA, resB := make(chan result, 1), make(chan result, 1)
	go func() {
		ack, err := s.Append(context.Background(), Batch{Rows: mkRows("/a", 2, 0)})
		resA <- result{ack, err}
	}()
	<-gate.entered // A is written and its sync is in flight
	aEnd := size()
	go func() {
		ack, err := s.Append(context.Background(), Batch{Rows: mkRows("/b", 2, 0)})
		resB <- result{ack, err}
	}()
	waitFor(t, "B written behind A's sync", func() bool { return size() > aEnd })
	if got := s.LastSeq(); got != 2 {
		t.Fatalf("LastSeq = %d while A's fdatasync is in flight, want 2: rows visible before they are durable", got)
	}
	res, err := s.Fetch(context.Background(), Query{Source: "", Scope: ScopeRegex, MaxLines: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 {
		t.Fatalf("Fetch returned %d rows while A's fdatasync is in flight, want the 2 synced ones", len(res.Rows))
	}
	select {
	case r := <-resA:
		t.Fatalf("A acked (%+v, %v) before its fdatasync returned", r.ack, r.err)
	case r := <-resB:
		t.Fatalf("B acked (%+v, %v) before any fdatasync covering it", r.ack, r.err)
	default:
	}
	data, err := vfs.ReadFile(mem, wal)
	if err != nil {
		t.Fatal(err)
	}
	damaged := func(at int64) []byte {
		b := append([]byte(nil), data...)
		b[at+walHeaderSize+6] ^= 0xff
		return b
	}
	cases := []struct {
		name    string
		file    []byte
		last    int64
		corrupt bool
	}{
		{"syncing group torn, later group intact", damaged(baseEnd), 2, false},
		{"later group torn", damaged(aEnd), 4, false},
		{"both intact", data, 6, false},
		{"synced record damaged", damaged(0), 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s2, err := Open(memOpts(crashImage(t, mem, wal, c.file)))
			if c.corrupt {
				if err == nil || !strings.Contains(err.Error(), "refusing to skip acknowledged data") {
					t.Fatalf("Open = %v, want a corruption error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s2.Close()
			if got := s2.LastSeq(); got != c.last {
				t.Fatalf("LastSeq after recovery = %d, want %d", got, c.last)
			}
		})
	}

	close(gate.release)
	a, b := <-resA, <-resB
	if a.err != nil || b.err != nil {
		t.Fatalf("appends after the sync: %v, %v", a.err, b.err)
	}
	if a.ack.First != 3 || b.ack.First != 5 || s.LastSeq() != 6 {
		t.Fatalf("acks %+v %+v, LastSeq %d: want seqs 3-4, 5-6", a.ack, b.ack, s.LastSeq())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// A failed fdatasync fails its group and the group written behind it (that
// sync was the first to cover it): neither is acked, their seqs are given
// out again from a new WAL file, and recovery from a disk that kept all of
// the failed bytes replays the new file's rows, not theirs.
func TestWriteBehindSyncFailure(t *testing.T) {
	defer goleak.VerifyNone(t)
	mem := vfs.NewMemFS()
	gate := newSyncGateFS(mem)
	gate.fail = errors.New("injected fdatasync failure")
	s := mustOpen(t, memOpts(gate))
	mustAppend(t, s, mkRows("/base", 2, 0))
	wal := walFiles(t, mem)[0]
	size := func() int64 {
		st, err := mem.Stat(wal)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	close(gate.armed)
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), Batch{Rows: mkRows("/a", 2, 0)})
		errA <- err
	}()
	<-gate.entered
	aEnd := size()
	go func() {
		_, err := s.Append(context.Background(), Batch{Rows: mkRows("/b", 2, 0)})
		errB <- err
	}()
	waitFor(t, "B written behind A's sync", func() bool { return size() > aEnd })
	close(gate.release)
	if err := <-errA; err == nil || !strings.Contains(err.Error(), "injected fdatasync failure") {
		t.Fatalf("A: %v, want the sync failure", err)
	}
	if err := <-errB; err == nil || !strings.Contains(err.Error(), "injected fdatasync failure") {
		t.Fatalf("B: %v, want the sync failure", err)
	}
	if got := s.LastSeq(); got != 2 {
		t.Fatalf("LastSeq = %d after the failed sync, want 2", got)
	}
	gate.armed = make(chan struct{}) // later syncs go through
	ack := mustAppend(t, s, mkRows("/c", 3, 0))
	if ack.First != 3 || ack.Last != 5 {
		t.Fatalf("append after the failure got seqs %d-%d, want 3-5 (the failed seqs given out again)", ack.First, ack.Last)
	}
	if files := walFiles(t, mem); len(files) != 2 {
		t.Fatalf("WAL files %v: want the failed one and a new one", files)
	}
	data, err := vfs.ReadFile(mem, wal)
	if err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, memOpts(crashImage(t, mem, wal, data)))
	defer s2.Close()
	rows, err := s2.Scan(context.Background(), 0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range rows {
		keys = append(keys, r.Key)
	}
	if got := strings.Join(keys, " "); got != "/base /base /c /c /c" {
		t.Fatalf("recovered rows %q, want the base rows then C's", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
