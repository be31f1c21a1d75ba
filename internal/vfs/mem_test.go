package vfs

import (
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
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

// A crash keeps the synced bytes intact and at most the written length;
// over many seeds it produces every kind of unsynced tail: cut, intact,
// zeroed and scrambled.
func TestMemFSTornTail(t *testing.T) {
	var cut, whole, zeroed, scrambled bool
	for seed := int64(0); seed < 200; seed++ {
		m := NewMemFS()
		f, _ := m.Create("/a")
		f.Write([]byte("abc"))
		f.Sync()
		m.SyncDir("/")
		f.Write([]byte("defgh"))
		m.Crash(rand.New(rand.NewSource(seed)))
		b, _ := ReadFile(m, "/a")
		if len(b) < 3 || len(b) > 8 || string(b[:3]) != "abc" {
			t.Fatalf("seed %d: crashed file %q lost synced bytes or grew", seed, b)
		}
		tail := b[3:]
		switch {
		case string(tail) == "defgh":
			whole = true
		case string(tail) == "defgh"[:len(tail)]:
			cut = true
		case strings.Contains(string(tail), "\x00"):
			zeroed = true
		default:
			scrambled = true
		}
	}
	if !cut || !whole || !zeroed || !scrambled {
		t.Fatalf("crash tails over 200 seeds: cut %v whole %v zeroed %v scrambled %v; want every kind", cut, whole, zeroed, scrambled)
	}
}

// Unsynced directory operations survive a crash in any subset, each whole:
// over many seeds every combination of two renames shows up, and a rename
// never leaves both names or neither.
func TestMemFSCrashKeepsAnySubsetOfDirOps(t *testing.T) {
	seen := map[string]bool{}
	for seed := int64(0); seed < 64; seed++ {
		m := NewMemFS()
		for _, n := range []string{"/a.tmp", "/b.tmp"} {
			f, _ := m.Create(n)
			f.Write([]byte(n))
			f.Sync()
		}
		m.SyncDir("/")
		m.Rename("/a.tmp", "/a")
		m.Rename("/b.tmp", "/b")
		m.Crash(rand.New(rand.NewSource(seed)))
		names, _ := m.List("/")
		key := strings.Join(names, ",")
		switch key {
		case "a.tmp,b.tmp", "a,b.tmp", "a.tmp,b", "a,b":
			seen[key] = true
		default:
			t.Fatalf("seed %d: after crash %q: a rename was split", seed, key)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("subsets seen over 64 seeds: %v, want all 4", seen)
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
