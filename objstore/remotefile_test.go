package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

func putEntry(t *testing.T, b Bucket, name string, data []byte) Entry {
	t.Helper()
	size, sum, _ := SumOf(bytes.NewReader(data))
	if _, err := b.Put(context.Background(), name, bytes.NewReader(data), size, sum); err != nil {
		t.Fatal(err)
	}
	return Entry{Object: name, Size: size, SHA256: sum.SHA256Hex()}
}

func TestRemoteFileReadsThroughCache(t *testing.T) {
	b := NewMemBucket("b")
	data := make([]byte, 3*BlockSize+12345)
	for i := range data {
		data[i] = byte(i * 31 >> 3)
	}
	e := putEntry(t, b, "segments/s", data)
	reg := prometheus.NewRegistry()
	fsys := vfs.NewMemFS()
	cache, err := OpenCache(fsys, "/data/objcache", 2*BlockSize, reg)
	if err != nil {
		t.Fatal(err)
	}
	var gets int
	b.Fault = func(op Op, _ string) Fault {
		if op == OpGet {
			gets++
		}
		return FaultNone
	}
	r := OpenRemote(context.Background(), b, cache, e, time.Second, nil)
	// A read spanning a block boundary, and the tail (the parquet footer).
	for _, rng := range [][2]int64{{BlockSize - 10, 20}, {int64(len(data)) - 8, 8}, {0, int64(len(data))}} {
		buf := make([]byte, rng[1])
		n, err := r.ReadAt(buf, rng[0])
		if n != len(buf) || (err != nil && err != io.EOF) || !bytes.Equal(buf, data[rng[0]:rng[0]+rng[1]]) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v; bytes differ", rng[0], rng[1], n, err)
		}
	}
	if _, err := r.ReadAt(make([]byte, 10), int64(len(data))-5); err != io.EOF {
		t.Fatalf("read past the end: %v, want io.EOF", err)
	}
	if used := cache.Used(); used > 2*BlockSize {
		t.Fatalf("cache holds %d bytes, over its %d limit", used, 2*BlockSize)
	}
	before := gets
	buf := make([]byte, 100)
	if _, err := r.ReadAt(buf, int64(len(data))-100); err != nil {
		t.Fatal(err)
	}
	if gets != before {
		t.Fatal("a block just read came from the bucket again instead of the cache")
	}
	if counterValue(t, reg, "finelog_objstore_cache_hits_total") == 0 {
		t.Fatal("cache hit not counted")
	}

	// The bucket goes down: cached blocks still serve, others fail naming
	// the bucket as unavailable.
	b.Fault = func(Op, string) Fault { return FaultSlowDown }
	if _, err := r.ReadAt(buf, int64(len(data))-100); err != nil {
		t.Fatalf("cached block with the bucket down: %v", err)
	}
	_, err = r.ReadAt(buf, 0)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "mem://b") {
		t.Fatalf("uncached read with the bucket down: %v", err)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}

func TestCacheIsEmptiedOnOpenAndBounded(t *testing.T) {
	fsys := vfs.NewMemFS()
	c, err := OpenCache(fsys, "/c", 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		c.put(k, bytes.Repeat([]byte(k), 40))
	}
	if c.Used() != 80 {
		t.Fatalf("used = %d, want 80 (oldest evicted)", c.Used())
	}
	if _, ok := c.get("a", 40); ok {
		t.Fatal("least recently used block not evicted")
	}
	if got, ok := c.get("c", 40); !ok || !bytes.Equal(got, bytes.Repeat([]byte("c"), 40)) {
		t.Fatal("recent block lost")
	}
	names, _ := fsys.List("/c")
	if len(names) != 2 {
		t.Fatalf("cache dir holds %d files, want 2", len(names))
	}
	if _, err := OpenCache(fsys, "/c", 100, nil); err != nil {
		t.Fatal(err)
	}
	if names, _ := fsys.List("/c"); len(names) != 0 {
		t.Fatalf("reopened cache kept %d unsynced blocks", len(names))
	}
	if _, err := OpenCache(fsys, "/c", -1, nil); err == nil || !strings.Contains(err.Error(), "--object-cache-bytes") {
		t.Fatalf("negative capacity: %v", err)
	}
}
