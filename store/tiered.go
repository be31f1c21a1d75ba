package store

import (
	"path"

	"github.com/finelog/finelog/internal/vfs"
)

// TieredFS is implemented by a file system that keeps some sealed segments
// only in another tier (objstore.TierFS: a bucket). Compaction merges only
// segments whose bytes are local, and holds them local while it reads
// them: a merge never downloads its inputs. A remote-only segment stays as
// it is until retention deletes it; see docs/objectstore.md for why.
type TieredFS interface {
	// Remote reports whether the segment at p has no local copy.
	Remote(p string) bool
	// HoldLocal keeps the segments at paths from losing their local copies
	// until release is called; ok is false (and nothing is held) when one
	// of them is already remote.
	HoldLocal(paths []string) (release func(), ok bool)
}

// remoteSeg reports whether sg lives only in another tier.
func (s *Store) remoteSeg(sg *segment) bool {
	t, ok := s.fs.(TieredFS)
	return ok && t.Remote(path.Join(s.dir, sg.name))
}

// holdLocal keeps run's inputs local for the merge (no-op without a tier).
func (s *Store) holdLocal(run []*segment) (release func(), ok bool) {
	t, tiered := s.fs.(TieredFS)
	if !tiered {
		return func() {}, true
	}
	paths := make([]string, len(run))
	for i, sg := range run {
		paths[i] = path.Join(s.dir, sg.name)
	}
	return t.HoldLocal(paths)
}

// OpenRanges returns the byte ranges (offset, length) of segment f that
// the store reads to open it: footer, page index and key index. An object
// tier keeps them locally when it evicts the segment, so a store with
// remote-only segments opens while the bucket is unreachable.
func OpenRanges(f vfs.File, size int64) ([][2]int64, error) {
	rec := &rangeRecorder{File: f}
	if _, err := loadSegment(rec, size); err != nil {
		return nil, err
	}
	return rec.ranges, nil
}

// rangeRecorder notes every ReadAt.
type rangeRecorder struct {
	vfs.File
	ranges [][2]int64
}

func (r *rangeRecorder) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.File.ReadAt(p, off)
	if n > 0 {
		r.ranges = append(r.ranges, [2]int64{off, int64(n)})
	}
	return n, err
}
