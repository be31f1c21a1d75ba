package store

import (
	"fmt"
	"path"

	"github.com/finelog/finelog/internal/vfs"
)

// SealedSegment is a segment file this store made durable: a flush's, or
// a merge's that replaced the segments of Replaces. A primary's replica
// port ships these files to its standbys (Store.ReceiveSegment on the
// other end), so a standby need not encode the same rows again.
type SealedSegment struct {
	Name        string
	First, Last int64
	// Replaces are the seq ranges of a merge's inputs, in seq order; nil
	// for a flush.
	Replaces [][2]int64
}

// sealedLogCap bounds the sealed-segment log. A reader that falls further
// behind than this misses segments; its standby keeps (or writes) its own
// copy of those rows, which is always safe.
const sealedLogCap = 64

// sealedLog is the recent SealedSegments in the order they were made
// durable, numbered from 0.
type sealedLog struct {
	// base is the number of events[0].
	base   uint64
	events []SealedSegment
}

// noteSealed records that sg became durable (a flush, or a merge of
// inputs). Called with no store lock held but the one that made sg
// (flushMu or compactMu).
func (s *Store) noteSealed(sg *segment, inputs []*segment) {
	ev := SealedSegment{Name: sg.name, First: sg.first, Last: sg.last}
	for _, in := range inputs {
		ev.Replaces = append(ev.Replaces, [2]int64{in.first, in.last})
	}
	s.sealedMu.Lock()
	defer s.sealedMu.Unlock()
	l := &s.sealedLog
	l.events = append(l.events, ev)
	if n := len(l.events); n > sealedLogCap {
		l.events = append(l.events[:0:0], l.events[n-sealedLogCap:]...)
		l.base += uint64(n - sealedLogCap)
	}
}

// SealedSince returns the segments sealed since cursor (a value this
// method returned before, or SealedCursor's) and the cursor for the next
// call. Segments that dropped out of the bounded log are skipped.
func (s *Store) SealedSince(cursor uint64) ([]SealedSegment, uint64) {
	s.sealedMu.Lock()
	defer s.sealedMu.Unlock()
	l := &s.sealedLog
	end := l.base + uint64(len(l.events))
	if cursor >= end {
		return nil, end
	}
	from := max(cursor, l.base) - l.base
	return append([]SealedSegment(nil), l.events[from:]...), end
}

// SealedCursor is the cursor past every segment sealed so far: a reader
// starting now sees only later ones.
func (s *Store) SealedCursor() uint64 {
	s.sealedMu.Lock()
	defer s.sealedMu.Unlock()
	return s.sealedLog.base + uint64(len(s.sealedLog.events))
}

// OpenSealed opens a sealed segment's file for reading, with its size. The
// file may be gone (merged into a larger one, or deleted by retention):
// the error then wraps fs.ErrNotExist. An open file stays readable when
// the store removes its name.
func (s *Store) OpenSealed(name string) (vfs.File, int64, error) {
	if !IsSegmentName(name) {
		return nil, 0, fmt.Errorf("store: %q is not a segment name: %w", name, ErrInvalidArgument)
	}
	p := path.Join(s.dir, name)
	f, err := s.fs.Open(p)
	if err != nil {
		return nil, 0, fmt.Errorf("store: open sealed segment %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("store: stat sealed segment %s: %w", name, err)
	}
	return f, fi.Size(), nil
}

// noteSealedFlush records a flush's segment (sg is nil for a memtable of
// marks alone, which writes no segment).
func (s *Store) noteSealedFlush(sg *segment) {
	if sg != nil {
		s.noteSealed(sg, nil)
	}
}
