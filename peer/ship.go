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
	SealedSince(cursor uint64) ([]store.SealedSegment, uint64)
	OpenSealed(name string) (vfs.File, int64, error)
}

func (ss storeSource) SealedSince(c uint64) ([]store.SealedSegment, uint64) {
	return ss.s.SealedSince(c)
}

func (ss storeSource) OpenSealed(name string) (vfs.File, int64, error) {
	return ss.s.OpenSealed(name)
}

// subscribeFlagsBytes is the Subscribe body with flags:
// from_seq:u64 | flags:u8 | segments_through:u64.
const subscribeFlagsBytes = 17

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
	// done is the last segment sent in full: the link may have dropped
	// before the replica adopted it (shipLeftover).
	done *store.SealedSegment
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

// newShipper starts a link's shipping for a replica that holds every seq
// up to from, those up to through in segments. Besides the segments sealed
// from now on, it offers the recent ones sealed while the replica was away
// (a dropped link, a restart) that start after through and no later than
// from+1: the replica holds their rows, or gets the rest as the next
// records, in its memtables. Older ones it has in segments of its own;
// ones further ahead are for a replica still catching up, which flushes
// those rows itself (shipping them would mostly send files it drops).
func newShipper(src SegmentSource, from, through int64) *shipper {
	evs, next := src.SealedSince(0)
	sh := &shipper{src: src, cursor: next}
	for _, ev := range evs {
		if ev.First > through && ev.First <= from+1 {
			sh.queue = append(sh.queue, ev)
		}
	}
	return sh
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
		// The link is done; the shipment stays, for its leftover.
		return false, err
	}
	cur.off += n
	if cur.off == cur.size {
		pl.c.stats.segment("sent")
		sh.done = &cur.ev
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

// shipLeftover is a closed link's shipping: the segments it had still to
// send, after the last one it sent in full (a replica drops a file whose
// link ends before it is adopted; one it did adopt it answers
// already_held) and the one under way (it goes again whole), and its
// place in the sealed log. A replica's links drop now and then (a
// restart, a loaded machine); its next link picks up there, so the
// segments sealed in between are shipped too and the replica need not
// flush those rows itself.
type shipLeftover struct {
	cursor uint64
	queue  []store.SealedSegment
}

// maxShipLeftovers bounds the replicas whose leftovers a primary keeps.
const maxShipLeftovers = 64

func (sh *shipper) leftover() shipLeftover {
	left := shipLeftover{cursor: sh.cursor}
	if sh.done != nil {
		left.queue = append(left.queue, *sh.done)
	}
	if sh.cur != nil {
		left.queue = append(left.queue, sh.cur.ev)
	}
	left.queue = append(left.queue, sh.queue...)
	return left
}

// resumeShipper continues a replica's shipping where its previous link
// left it, instead of newShipper's guess from the Subscribe.
func resumeShipper(src SegmentSource, left shipLeftover) *shipper {
	evs, next := src.SealedSince(left.cursor)
	return &shipper{src: src, cursor: next, queue: append(left.queue, evs...)}
}

func (p *Primary) keepShipLeft(id ID, left shipLeftover) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shipLeft == nil {
		p.shipLeft = map[ID]shipLeftover{}
	}
	if _, ok := p.shipLeft[id]; !ok && len(p.shipLeft) >= maxShipLeftovers {
		for other := range p.shipLeft {
			delete(p.shipLeft, other) // any one: a stale leftover only costs that replica its own flushes
			break
		}
	}
	p.shipLeft[id] = left
}

func (p *Primary) takeShipLeft(id ID) (shipLeftover, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	left, ok := p.shipLeft[id]
	delete(p.shipLeft, id)
	return left, ok
}
