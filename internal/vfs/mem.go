package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Op names a filesystem operation, for fault injection.
type Op string

// The operations MemFS reports to its Inject hook.
const (
	OpCreate  Op = "create"
	OpWrite   Op = "write"
	OpSync    Op = "sync"
	OpRename  Op = "rename"
	OpRemove  Op = "remove"
	OpSyncDir Op = "syncdir"
	OpMkdir   Op = "mkdir"
	OpLock    Op = "lock"
)

// ErrCrashed is returned by a file handle opened before the last Crash: the
// process that held it is gone.
var ErrCrashed = errors.New("vfs: file handle belongs to a crashed process")

// MemFS is an in-memory filesystem that models a power cut. Every file has
// its current bytes and its durable bytes (as of its last Sync); every
// directory has its current entries, its durable entries (as of its last
// SyncDir) and the operations since. A crash keeps what is durable, and with
// a seeded rng also what a power cut may keep of the rest: any subset of a
// directory's unsynced operations (creates, removes, renames; each one
// atomic, in their order), and of a file's unsynced appended bytes a prefix
// that may have zeroed or scrambled bytes (sectors that never reached the
// disk, or reached it half-written). Directories themselves are durable once
// made (finelog makes its directories once, at start, and syncs their
// parent).
type MemFS struct {
	mu   sync.Mutex
	gen  uint64
	dirs map[string]*memDir
	now  func() time.Time
	// locks are the held Locks: name -> holder token. A crash kills every
	// holder, so Crash clears it.
	locks     map[string]uint64
	lockToken uint64

	// Inject, when set, is called before each mutating operation (and
	// before each Sync); a non-nil error fails the operation unperformed.
	Inject func(op Op, name string) error
	// SyncLies makes Sync and SyncDir report success without making
	// anything durable: a broken disk for canary tests.
	SyncLies bool
}

type memDir struct {
	entries map[string]*memNode
	durable map[string]*memNode
	// ops are the entry changes since the last SyncDir, in order.
	ops []dirOp
}

// dirOp is one directory change: del is removed, then set (if not empty)
// points at node. A rename inside one directory is one op, so a crash keeps
// it whole or not at all, as a journaling filesystem does.
type dirOp struct {
	del, set string
	node     *memNode
}

type memNode struct {
	data   []byte
	synced []byte
	mod    time.Time
}

// NewMemFS returns an empty MemFS with a root directory.
func NewMemFS() *MemFS {
	m := &MemFS{dirs: map[string]*memDir{}, locks: map[string]uint64{}, now: func() time.Time { return time.Unix(0, 0) }}
	m.dirs["/"] = newMemDir()
	return m
}

func newMemDir() *memDir {
	return &memDir{entries: map[string]*memNode{}, durable: map[string]*memNode{}}
}

func clean(name string) string {
	name = filepath.ToSlash(name)
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	return path.Clean(name)
}

func (m *MemFS) inject(op Op, name string) error {
	if m.Inject != nil {
		if err := m.Inject(op, name); err != nil {
			return err
		}
	}
	return nil
}

func (m *MemFS) lookup(name string) (*memDir, string, error) {
	name = clean(name)
	d, ok := m.dirs[path.Dir(name)]
	if !ok {
		return nil, "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return d, path.Base(name), nil
}

// Create creates or truncates name.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject(OpCreate, name); err != nil {
		return nil, err
	}
	d, base, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	n := &memNode{mod: m.now()}
	d.entries[base] = n
	d.ops = append(d.ops, dirOp{set: base, node: n})
	return &memFile{fs: m, node: n, name: clean(name), gen: m.gen, writable: true}, nil
}

// Open opens name read-only.
func (m *MemFS) Open(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	n, ok := d.entries[base]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: clean(name), Err: fs.ErrNotExist}
	}
	return &memFile{fs: m, node: n, name: clean(name), gen: m.gen}, nil
}

// OpenAppend opens an existing file for appending.
func (m *MemFS) OpenAppend(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	n, ok := d.entries[base]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: clean(name), Err: fs.ErrNotExist}
	}
	return &memFile{fs: m, node: n, name: clean(name), gen: m.gen, writable: true, off: int64(len(n.data))}, nil
}

// Rename moves oldname to newname, replacing it.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject(OpRename, newname); err != nil {
		return err
	}
	od, ob, err := m.lookup(oldname)
	if err != nil {
		return err
	}
	nd, nb, err := m.lookup(newname)
	if err != nil {
		return err
	}
	n, ok := od.entries[ob]
	if !ok {
		return &fs.PathError{Op: "rename", Path: clean(oldname), Err: fs.ErrNotExist}
	}
	delete(od.entries, ob)
	nd.entries[nb] = n
	if od == nd {
		od.ops = append(od.ops, dirOp{del: ob, set: nb, node: n})
	} else {
		od.ops = append(od.ops, dirOp{del: ob})
		nd.ops = append(nd.ops, dirOp{set: nb, node: n})
	}
	return nil
}

// Remove deletes name.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject(OpRemove, name); err != nil {
		return err
	}
	d, base, err := m.lookup(name)
	if err != nil {
		return err
	}
	if _, ok := d.entries[base]; !ok {
		if _, isDir := m.dirs[clean(name)]; isDir {
			return fmt.Errorf("remove %s: is a directory", clean(name))
		}
		return &fs.PathError{Op: "remove", Path: clean(name), Err: fs.ErrNotExist}
	}
	delete(d.entries, base)
	d.ops = append(d.ops, dirOp{del: base})
	return nil
}

// MkdirAll creates dir and its parents.
func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject(OpMkdir, dir); err != nil {
		return err
	}
	dir = clean(dir)
	for p := dir; ; p = path.Dir(p) {
		if _, ok := m.dirs[p]; !ok {
			m.dirs[p] = newMemDir()
		}
		if p == "/" {
			break
		}
	}
	return nil
}

// List returns the sorted names in dir (files and subdirectories).
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	d, ok := m.dirs[dir]
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for n := range d.entries {
		names = append(names, n)
	}
	for p := range m.dirs {
		if p != "/" && path.Dir(p) == dir {
			names = append(names, path.Base(p))
		}
	}
	sort.Strings(names)
	return names, nil
}

// Stat describes name.
func (m *MemFS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.dirs[clean(name)]; ok {
		return memInfo{name: path.Base(clean(name)), dir: true}, nil
	}
	d, base, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	n, ok := d.entries[base]
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: clean(name), Err: fs.ErrNotExist}
	}
	return memInfo{name: base, size: int64(len(n.data)), mod: n.mod}, nil
}

// SyncDir makes dir's current entries durable.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject(OpSyncDir, dir); err != nil {
		return err
	}
	d, ok := m.dirs[clean(dir)]
	if !ok {
		return &fs.PathError{Op: "syncdir", Path: clean(dir), Err: fs.ErrNotExist}
	}
	if m.SyncLies {
		return nil
	}
	d.durable = make(map[string]*memNode, len(d.entries))
	for k, v := range d.entries {
		d.durable[k] = v
	}
	d.ops = nil
	return nil
}

// Lock takes an in-process exclusive lock on name (the directory must
// exist). A second Lock of the same name fails with a *LockedError until the
// first is closed or the FS crashes: a crash kills the holder, and like a
// flock the lock dies with it.
func (m *MemFS) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject(OpLock, name); err != nil {
		return nil, err
	}
	if _, _, err := m.lookup(name); err != nil {
		return nil, err
	}
	name = clean(name)
	if _, held := m.locks[name]; held {
		return nil, &LockedError{Path: name, PID: os.Getpid()}
	}
	m.lockToken++
	m.locks[name] = m.lockToken
	return &memLock{fs: m, name: name, token: m.lockToken}, nil
}

type memLock struct {
	fs     *MemFS
	name   string
	token  uint64
	closed bool
}

// Close releases the lock unless a crash already did (and someone else may
// hold it now).
func (l *memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if l.closed {
		return fs.ErrClosed
	}
	l.closed = true
	if l.fs.locks[l.name] == l.token {
		delete(l.fs.locks, l.name)
	}
	return nil
}

// Crash simulates a power cut. With rng nil every directory reverts to its
// durable entries and every file to its durable bytes. With rng, each
// directory also keeps a random subset of its unsynced operations, and a
// file whose unsynced bytes extend its durable bytes keeps a random prefix
// of them, in which a random run of bytes may be zeroed or scrambled (a torn
// write). Handles opened before the crash fail with ErrCrashed, and every
// Lock is released.
func (m *MemFS) Crash(rng *rand.Rand) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	clear(m.locks)
	seen := map[*memNode]bool{}
	dirNames := make([]string, 0, len(m.dirs))
	for p := range m.dirs {
		dirNames = append(dirNames, p)
	}
	sort.Strings(dirNames)
	for _, p := range dirNames {
		d := m.dirs[p]
		if rng != nil {
			for _, op := range d.ops {
				if rng.Intn(2) == 0 {
					continue
				}
				if op.del != "" {
					delete(d.durable, op.del)
				}
				if op.set != "" {
					d.durable[op.set] = op.node
				}
			}
		}
		d.ops = nil
		d.entries = make(map[string]*memNode, len(d.durable))
		names := make([]string, 0, len(d.durable))
		for k, v := range d.durable {
			d.entries[k] = v
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			n := d.durable[k]
			if seen[n] {
				continue
			}
			seen[n] = true
			keep := append([]byte(nil), n.synced...)
			if rng != nil && len(n.data) > len(n.synced) && string(n.data[:len(n.synced)]) == string(n.synced) {
				// Often all of it reached the disk (the usual case, and
				// the one where damage inside it is followed by intact
				// bytes); otherwise a uniform prefix.
				extra := len(n.data) - len(n.synced)
				if rng.Intn(3) > 0 {
					extra = rng.Intn(extra + 1)
				}
				keep = append(keep, n.data[len(n.synced):len(n.synced)+extra]...)
				damage(rng, keep[len(n.synced):])
			}
			n.data = keep
			n.synced = keep[:len(keep):len(keep)]
		}
	}
}

// damage models what a power cut does to bytes written but not synced: kept
// as written (a clean cut), a run of them zeroed (sectors never written), or
// a run of them overwritten with garbage (a sector written halfway).
func damage(rng *rand.Rand, b []byte) {
	if len(b) == 0 {
		return
	}
	mode := rng.Intn(3)
	if mode == 0 {
		return
	}
	// Up to a sector: damage elsewhere in the tail is a separate sector.
	from := rng.Intn(len(b))
	to := from + 1 + rng.Intn(min(len(b)-from, 512))
	for i := from; i < to; i++ {
		if mode == 1 {
			b[i] = 0
		} else {
			b[i] = byte(rng.Intn(256))
		}
	}
}

// memFile is an open handle on a memNode.
type memFile struct {
	fs       *MemFS
	node     *memNode
	name     string
	gen      uint64
	off      int64
	writable bool
	closed   bool
}

func (f *memFile) check() error {
	if f.closed {
		return fs.ErrClosed
	}
	if f.gen != f.fs.gen {
		return ErrCrashed
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if f.off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[f.off:])
	f.off += int64(n)
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if !f.writable {
		return 0, fmt.Errorf("write %s: file opened read-only", f.name)
	}
	if err := f.fs.inject(OpWrite, f.name); err != nil {
		return 0, err
	}
	// Writes past the end extend; writes inside overwrite (only append
	// happens in practice). synced may share data's array, so an overwrite
	// copies first.
	if f.off < int64(len(f.node.data)) {
		f.node.data = append([]byte(nil), f.node.data...)
	}
	end := f.off + int64(len(p))
	switch {
	case end > int64(cap(f.node.data)):
		nd := make([]byte, end, max(end, int64(cap(f.node.data))*2))
		copy(nd, f.node.data)
		f.node.data = nd
	case end > int64(len(f.node.data)):
		// Room in the array: bytes past len are not part of synced (it is
		// capped at its own length), so extending in place is safe.
		f.node.data = f.node.data[:end]
	}
	copy(f.node.data[f.off:], p)
	f.off = end
	f.node.mod = f.fs.now()
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if err := f.fs.inject(OpSync, f.name); err != nil {
		return err
	}
	if f.fs.SyncLies {
		return nil
	}
	// Sharing the array is safe: appends never touch bytes below len, and
	// overwrites copy (see Write).
	f.node.synced = f.node.data[:len(f.node.data):len(f.node.data)]
	return nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	return memInfo{name: path.Base(f.name), size: int64(len(f.node.data)), mod: f.node.mod}, nil
}

type memInfo struct {
	name string
	size int64
	mod  time.Time
	dir  bool
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
