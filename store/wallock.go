package store

import (
	"sync"
	"sync/atomic"
)

// walLock is the mutex behind Store.walMu. The committer holds it from the
// write of a group until that group is published, and with writes
// pipelined behind fdatasyncs a busy committer would never let go; so a
// Lock from anyone else (a seal, a WAL trim, a floor jump, Close) is
// visible to the committer, which then stops taking new batches, lets its
// written groups reach the disk and be published, and unlocks.
type walLock struct {
	mu      sync.Mutex
	waiting atomic.Int32
}

func (l *walLock) Lock() {
	l.waiting.Add(1)
	l.mu.Lock()
	l.waiting.Add(-1)
}

func (l *walLock) Unlock() { l.mu.Unlock() }

// wanted reports whether someone is waiting in Lock. Only meaningful to the
// holder.
func (l *walLock) wanted() bool { return l.waiting.Load() > 0 }
