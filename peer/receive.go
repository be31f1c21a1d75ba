package peer

import (
	"context"
	"fmt"

	"lukechampine.com/blake3"

	"github.com/finelog/finelog/store"
)

// SegmentReceiver is a RecordApplier that can adopt its primary's sealed
// segment files (store.Store). A replica whose store is one asks for them
// in its Subscribe.
type SegmentReceiver interface {
	ReceiveSegment(store.ShippedSegment) (*store.IncomingSegment, error)
	// SetAdoptShipped tells the store whether segments will come, so it
	// leaves flushing and compaction to the primary.
	SetAdoptShipped(on bool)
}

// receiving is the segment file a ReplicaLink is taking in.
type receiving struct {
	hdr SegmentChunk // without Data
	in  *store.IncomingSegment
	h   *blake3.Hasher
	got int64
}

// TakeSegment takes one Segment frame, in link order with the Records
// frames (whose rows Apply must already have written): the chunk goes to
// the file being received, and the last one is checked against the
// announced size and BLAKE3 hash and handed to the store to adopt. A chunk
// out of order, or a file whose hash does not match, is a protocol error
// and closes the link; a file the store cannot use is dropped and counted.
func (rl *ReplicaLink) TakeSegment(ctx context.Context, c SegmentChunk) error {
	recv, ok := rl.r.cfg.Store.(SegmentReceiver)
	if !ok || !rl.segments {
		rl.c.Close()
		return fmt.Errorf("%w: a Segment frame on a link that did not ask for segments", ErrProtocol)
	}
	cur := rl.recv
	switch {
	case c.Offset == 0 && cur != nil:
		rl.abortSegment()
		rl.c.Close()
		return fmt.Errorf("%w: segment [%d,%d] started before segment [%d,%d] was complete", ErrProtocol, c.First, c.Last, cur.hdr.First, cur.hdr.Last)
	case c.Offset == 0:
		hdr := c
		hdr.Data = nil
		in, err := recv.ReceiveSegment(store.ShippedSegment{First: c.First, Last: c.Last, Replaces: c.Replaces, Size: c.Size})
		if err != nil {
			rl.c.Close()
			return fmt.Errorf("receive the primary's segment [%d,%d]: %w", c.First, c.Last, err)
		}
		in.SkipChecks = rl.r.cfg.Defects.ShipUnchecked
		cur = &receiving{hdr: hdr, in: in, h: blake3.New(32, nil)}
		rl.recv = cur
	case cur == nil || !cur.hdr.sameFile(&c) || c.Offset != cur.got:
		rl.abortSegment()
		rl.c.Close()
		return fmt.Errorf("%w: segment [%d,%d] chunk at offset %d does not continue the file being received", ErrProtocol, c.First, c.Last, c.Offset)
	}
	cur.h.Write(c.Data)
	if err := cur.in.Write(c.Offset, c.Data); err != nil {
		rl.abortSegment()
		rl.c.Close()
		return fmt.Errorf("receive the primary's segment [%d,%d]: %w", c.First, c.Last, err)
	}
	cur.got += int64(len(c.Data))
	if cur.got < cur.hdr.Size {
		return nil
	}
	rl.recv = nil
	var sum [32]byte
	cur.h.Sum(sum[:0])
	if !macEqual(sum[:], c.Hash[:]) {
		cur.in.Abort()
		rl.c.Close()
		return fmt.Errorf("%w: segment [%d,%d]: the received file's BLAKE3 hash is not the announced one", ErrProtocol, c.First, c.Last)
	}
	res, err := cur.in.Adopt(ctx)
	if err != nil {
		rl.c.Close()
		return fmt.Errorf("adopt the primary's segment [%d,%d]: %w", c.First, c.Last, err)
	}
	rl.c.stats.segment(res.Reason)
	if !res.Adopted {
		rl.r.cfg.Log.Debug("dropped the primary's segment; keeping this replica's own copy of its rows", "first_seq", c.First, "last_seq", c.Last, "reason", res.Reason)
	}
	rl.r.mu.Lock()
	if rl.r.segResults == nil {
		rl.r.segResults = map[string]int{}
	}
	rl.r.segResults[res.Reason]++
	rl.r.mu.Unlock()
	return nil
}

// SegmentResults counts the shipped segments this replica took, by
// store.AdoptResult.Reason.
func (r *Replica) SegmentResults() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.segResults))
	for k, v := range r.segResults {
		out[k] = v
	}
	return out
}

// abortSegment drops a partly received file (the link is going down).
func (rl *ReplicaLink) abortSegment() {
	if rl.recv != nil {
		rl.recv.in.Abort()
		rl.recv = nil
	}
}
