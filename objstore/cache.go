package objstore

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Cache is a bounded on-disk LRU of remote segment blocks
// (--object-cache-bytes), under the data dir. Blocks are written without
// fsync: the cache is emptied when it is opened, so a block torn by a
// crash is never served.
type Cache struct {
	fs       vfs.FS
	dir      string
	capacity int64
	metrics  *cacheMetrics

	mu    sync.Mutex
	used  int64
	lru   *list.List // front = most recent; values are *cacheBlock
	index map[string]*list.Element
}

type cacheBlock struct {
	key  string
	size int64
}

// OpenCache empties dir and returns a cache of at most capacity bytes. A
// capacity of 0 disables caching (every read goes to the bucket).
func OpenCache(fsys vfs.FS, dir string, capacity int64, reg prometheus.Registerer) (*Cache, error) {
	if capacity < 0 {
		return nil, fmt.Errorf("--object-cache-bytes is %d; it must be 0 (no cache) or more", capacity)
	}
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("object cache dir %s: %w", dir, err)
	}
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("object cache dir %s: %w", dir, err)
	}
	for _, n := range names {
		if err := fsys.Remove(filepath.Join(dir, n)); err != nil {
			return nil, fmt.Errorf("empty object cache %s: %w", dir, err)
		}
	}
	c := &Cache{fs: fsys, dir: dir, capacity: capacity, lru: list.New(), index: map[string]*list.Element{}}
	c.metrics = newCacheMetrics(reg, c)
	return c, nil
}

func (c *Cache) m() *cacheMetrics {
	if c == nil {
		return nil
	}
	return c.metrics
}

// Used returns the bytes the cache holds.
func (c *Cache) Used() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

func (c *Cache) path(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(c.dir, hex.EncodeToString(h[:16]))
}

// readAt fills p from the cached block key at off within the block; false
// when the block is not cached (or its file is gone).
func (c *Cache) readAt(key string, p []byte, off int64) bool {
	if c == nil || c.capacity == 0 {
		return false
	}
	c.mu.Lock()
	el, ok := c.index[key]
	if ok {
		c.lru.MoveToFront(el)
	}
	c.mu.Unlock()
	if !ok {
		return false
	}
	f, err := c.fs.Open(c.path(key))
	if err != nil {
		c.drop(key)
		return false
	}
	defer f.Close()
	if n, _ := f.ReadAt(p, off); n != len(p) {
		c.drop(key)
		return false
	}
	return true
}

// get returns the whole cached block for key.
func (c *Cache) get(key string, size int64) ([]byte, bool) {
	buf := make([]byte, size)
	if !c.readAt(key, buf, 0) {
		return nil, false
	}
	return buf, true
}

// put stores a block, evicting the least recently used ones to stay under
// capacity. A failure to write only means a later miss.
func (c *Cache) put(key string, data []byte) {
	if c == nil || int64(len(data)) > c.capacity {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.index[key]; ok {
		return
	}
	for c.used+int64(len(data)) > c.capacity && c.lru.Len() > 0 {
		c.evictLocked(c.lru.Back())
	}
	f, err := c.fs.Create(c.path(key))
	if err != nil {
		return
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr != nil || cerr != nil {
		_ = c.fs.Remove(c.path(key))
		return
	}
	c.index[key] = c.lru.PushFront(&cacheBlock{key: key, size: int64(len(data))})
	c.used += int64(len(data))
}

// Clear drops every cached block (a cold-cache measurement, or an operator
// reclaiming the space).
func (c *Cache) Clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lru.Len() > 0 {
		c.evictLocked(c.lru.Back())
	}
}

func (c *Cache) evictLocked(el *list.Element) {
	b := el.Value.(*cacheBlock)
	c.lru.Remove(el)
	delete(c.index, b.key)
	c.used -= b.size
	_ = c.fs.Remove(c.path(b.key))
}

func (c *Cache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[key]; ok {
		c.evictLocked(el)
	}
}
