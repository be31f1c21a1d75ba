package store

import "path"

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
