package vfs

import (
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

func TestMemFSCrashDropsUnsynced(t *testing.T) {
	m := NewMemFS()
	if err := m.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	f, _ := m.Create("/d/a")
	f.Write([]byte("hello"))
	f.Sync()
	f.Write([]byte(" world"))
	// File entry not yet durable: a crash removes it.
	m.Crash(nil)
	if _, err := m.Stat("/d/a"); err == nil {
		t.Fatal("unsynced directory entry survived crash")
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("old handle write: %v, want ErrCrashed", err)
	}

	f, _ = m.Create("/d/a")
	f.Write([]byte("hello"))
	f.Sync()
	m.SyncDir("/d")
	f.Write([]byte(" world"))
	m.Crash(nil)
	b, err := ReadFile(m, "/d/a")
	if err != nil || string(b) != "hello" {
		t.Fatalf("after crash got %q, %v; want synced prefix", b, err)
	}
}

func TestMemFSTornTailIsPrefix(t *testing.T) {
	for seed := int64(0); seed < 20; seed++ {
		m := NewMemFS()
		f, _ := m.Create("/a")
		f.Write([]byte("abc"))
		f.Sync()
		m.SyncDir("/")
		f.Write([]byte("defgh"))
		m.Crash(rand.New(rand.NewSource(seed)))
		b, _ := ReadFile(m, "/a")
		if len(b) < 3 || string(b) != "abcdefgh"[:len(b)] {
			t.Fatalf("seed %d: torn file %q is not a prefix extension", seed, b)
		}
	}
}

func TestMemFSRenameNeedsDirSync(t *testing.T) {
	m := NewMemFS()
	if err := WriteFileAtomic(m, "/w", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	f, _ := m.Create("/w.tmp")
	f.Write([]byte("v2"))
	f.Sync()
	f.Close()
	m.Rename("/w.tmp", "/w")
	m.Crash(nil)
	b, _ := ReadFile(m, "/w")
	if string(b) != "v1" {
		t.Fatalf("rename without dir sync survived crash: %q", b)
	}
}

func TestMemFSSyncLies(t *testing.T) {
	m := NewMemFS()
	m.SyncLies = true
	if err := WriteFileAtomic(m, "/w", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	m.Crash(nil)
	if _, err := m.Stat("/w"); err == nil {
		t.Fatal("lying sync made data durable")
	}
}

func TestMemFSInject(t *testing.T) {
	m := NewMemFS()
	m.Inject = func(op Op, name string) error {
		if op == OpWrite {
			return ErrNoSpace
		}
		return nil
	}
	f, _ := m.Create("/a")
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("got %v", err)
	}
}

// Many small appends must grow the file geometrically, not double the
// allocation on every write (which ran the simulation out of memory).
func TestMemFSManyAppends(t *testing.T) {
	m := NewMemFS()
	f, _ := m.Create("/a")
	chunk := make([]byte, 100)
	for i := 0; i < 10000; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			f.Sync()
		}
	}
	st, _ := f.Stat()
	if st.Size() != 1000000 {
		t.Fatalf("size %d, want 1000000", st.Size())
	}
	if c := cap(f.(*memFile).node.data); c > 4*1000000 {
		t.Fatalf("capacity %d for a 1 MB file: growth is not geometric", c)
	}
}

func TestMemFSLock(t *testing.T) {
	m := NewMemFS()
	if err := m.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	l, err := m.Lock("/d/LOCK")
	if err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if _, err := m.Lock("/d/LOCK"); !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.Path != "/d/LOCK" {
		t.Fatalf("second Lock = %v, want a LockedError for /d/LOCK", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := m.Lock("/d/LOCK")
	if err != nil {
		t.Fatalf("Lock after Close: %v", err)
	}
	// A crash kills the holder: its lock is gone, and closing its stale
	// handle later must not release the lock of whoever took it next.
	m.Crash(nil)
	l3, err := m.Lock("/d/LOCK")
	if err != nil {
		t.Fatalf("Lock after Crash: %v", err)
	}
	l2.Close()
	if _, err := m.Lock("/d/LOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("a pre-crash handle's Close released the new holder's lock: %v", err)
	}
	l3.Close()
	if _, err := m.Lock("/nodir/LOCK"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Lock in a missing dir = %v", err)
	}
}

// flock belongs to an open file, so a second Lock even from the same
// process conflicts, and the file names the holder's pid.
func TestOSLock(t *testing.T) {
	name := filepath.Join(t.TempDir(), "LOCK")
	l, err := OS{}.Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if _, err := (OS{}).Lock(name); !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("second Lock = %v, want a LockedError naming pid %d", err, os.Getpid())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = OS{}.Lock(name)
	if err != nil {
		t.Fatalf("Lock after Close: %v", err)
	}
	l.Close()
}
