package peer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"lukechampine.com/blake3"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// SegmentSource is a RecordSource that can ship its sealed segment files
// (store.Store's SealedSince and OpenSealed).
type SegmentSource interface {
	SealedCursor() uint64
	SealedSince(cursor uint64) ([]store.SealedSegment, uint64)
	OpenSealed(name string) (vfs.File, int64, error)
}

func (ss storeSource) SealedCursor() uint64 { return ss.s.SealedCursor() }

func (ss storeSource) SealedSince(c uint64) ([]store.SealedSegment, uint64) {
	return ss.s.SealedSince(c)
}

func (ss storeSource) OpenSealed(name string) (vfs.File, int64, error) {
	return ss.s.OpenSealed(name)
}

// maxShipQueue bounds the segments a link waits to send; past it the
// oldest are dropped (the replica keeps its own copy of their rows).
const maxShipQueue = 64

// shipper is a link's segment shipping: the segments sealed since the
// replica subscribed, sent one at a time in MaxSegmentChunk pieces, each
// only once every row in it was sent on the link. Those rows were
// committed (fdatasync'ed) on this primary before the tail yielded them,
// so a replica never adopts a row its primary may still lose.
type shipper struct {
	src    SegmentSource
	cursor uint64
	queue  []store.SealedSegment
	cur    *shipment
	body   []byte
}

type shipment struct {
	ev   store.SealedSegment
	f    vfs.File
	size int64
	// h hashes the bytes sent so far; the last chunk carries the sum. One
	// pass over the file, and no wait before its first chunk: hashing a
	// merged segment up front held the link's records up for its length.
	h   *blake3.Hasher
	off int64
}

func newShipper(src SegmentSource) *shipper {
	return &shipper{src: src, cursor: src.SealedCursor()}
}

func (sh *shipper) close() {
	if sh != nil && sh.cur != nil {
		sh.cur.f.Close()
		sh.cur = nil
	}
}

// ShipChunk sends the next chunk of a sealed segment whose rows the
// replica has all been sent, if there is one, and reports whether more
// chunks are ready to go right away. It does nothing on a link whose
// replica did not ask for segments.
func (pl *PrimaryLink) ShipChunk() (more bool, err error) {
	sh := pl.ship
	if sh == nil {
		return false, nil
	}
	if sh.cur == nil {
		if err := pl.nextShipment(); err != nil || sh.cur == nil {
			return false, err
		}
	}
	cur := sh.cur
	n := min(cur.size-cur.off, MaxSegmentChunk)
	c := SegmentChunk{First: cur.ev.First, Last: cur.ev.Last, Size: cur.size, Replaces: cur.ev.Replaces, Offset: cur.off}
	sh.body = EncodeSegmentChunk(sh.body[:0], c)
	h := len(sh.body)
	sh.body = append(sh.body, make([]byte, n)...)
	if err := readFull(cur.f, sh.body[h:], cur.off); err != nil {
		sh.close()
		return false, fmt.Errorf("peer: read segment %s at %d for the replica: %w", cur.ev.Name, cur.off, err)
	}
	cur.h.Write(sh.body[h:])
	if cur.off+n == cur.size {
		cur.h.Sum(sh.body[hashAt:hashAt])
	}
	if err := pl.c.Send(TypeSegment, sh.body); err != nil {
		sh.close()
		return false, err
	}
	cur.off += n
	if cur.off == cur.size {
		pl.c.stats.segment("sent")
		sh.close()
	}
	if cap(sh.body) > 2*MaxSegmentChunk {
		sh.body = nil
	}
	return sh.cur != nil || pl.shipDue(), nil
}

// shipDue reports whether a queued segment can start now.
func (pl *PrimaryLink) shipDue() bool {
	sh := pl.ship
	evs, next := sh.src.SealedSince(sh.cursor)
	sh.cursor = next
	sh.queue = append(sh.queue, evs...)
	if n := len(sh.queue); n > maxShipQueue {
		sh.queue = append(sh.queue[:0:0], sh.queue[n-maxShipQueue:]...)
	}
	if len(sh.queue) == 0 {
		return false
	}
	if pl.p.cfg.Defects.ShipUnchecked {
		return true
	}
	pl.p.mu.Lock()
	sent := pl.l.sent
	pl.p.mu.Unlock()
	return sh.queue[0].Last <= sent
}

// nextShipment opens the next due segment; a segment whose file is gone
// (merged or retained away since) is skipped.
func (pl *PrimaryLink) nextShipment() error {
	sh := pl.ship
	for pl.shipDue() {
		ev := sh.queue[0]
		sh.queue = sh.queue[1:]
		f, size, err := sh.src.OpenSealed(ev.Name)
		if errors.Is(err, fs.ErrNotExist) {
			pl.c.stats.segment("skipped")
			continue
		}
		if err != nil {
			return fmt.Errorf("peer: ship segment %s: %w", ev.Name, err)
		}
		sh.cur = &shipment{ev: ev, f: f, size: size, h: blake3.New(32, nil)}
		return nil
	}
	return nil
}

// readFull reads len(p) bytes at off; io.EOF with every byte read is no
// error (ReaderAt allows it at the end of the file).
func readFull(f io.ReaderAt, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if n == len(p) && (err == nil || errors.Is(err, io.EOF)) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}
