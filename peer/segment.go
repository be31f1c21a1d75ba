package peer

import (
	"encoding/binary"
	"fmt"
)

// TypeSegment carries one chunk of a sealed segment file, primary to a
// replica that asked for them in its Subscribe (SubscribeSegments).
const TypeSegment byte = 0x14

// SubscribeSegments is bit 0 of the Subscribe frame's optional flags byte:
// ship sealed segment files (Segment frames) as well as records.
const SubscribeSegments byte = 0x01

// MaxSegmentChunk bounds a Segment frame's data, so Records frames
// interleave with a large file and the replica's Acks are not held up
// behind it.
const MaxSegmentChunk = 1 << 20

// SegmentChunk is the body of a Segment frame:
//
//	first:u64 | last:u64 | size:u64 | hash[32] | n_replaces:u16 | n_replaces × (first:u64 | last:u64) | offset:u64 | data
//
// first..last is the segment's seq range (its file name), size the whole
// file's bytes, replaces the seq ranges of the merge inputs it replaces
// (none for a flush's), and data the file's bytes from offset. hash is
// BLAKE3-256 of the whole file in the last chunk (the one that ends at
// size) and all zero in the others, so the sender hashes as it sends.
// Every chunk of a file carries the same first, last, size and replaces;
// the chunks of one file come in offset order from 0, one file at a time.
type SegmentChunk struct {
	First, Last int64
	Size        int64
	Hash        [32]byte
	Replaces    [][2]int64
	Offset      int64
	Data        []byte
}

const (
	segmentHeader = 8 + 8 + 8 + 32 + 2
	hashAt        = 8 + 8 + 8 // where hash starts in a Segment body
)

// EncodeSegmentChunk appends c's encoding to dst.
func EncodeSegmentChunk(dst []byte, c SegmentChunk) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.First))
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.Last))
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.Size))
	dst = append(dst, c.Hash[:]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(c.Replaces)))
	for _, r := range c.Replaces {
		dst = binary.BigEndian.AppendUint64(dst, uint64(r[0]))
		dst = binary.BigEndian.AppendUint64(dst, uint64(r[1]))
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.Offset))
	return append(dst, c.Data...)
}

// DecodeSegmentChunk parses a Segment body. Data aliases b. Every error
// wraps ErrProtocol.
func DecodeSegmentChunk(b []byte) (SegmentChunk, error) {
	var c SegmentChunk
	if len(b) < segmentHeader+8 {
		return c, fmt.Errorf("%w: segment frame of %d bytes, at least %d needed", ErrProtocol, len(b), segmentHeader+8)
	}
	c.First = int64(binary.BigEndian.Uint64(b))
	c.Last = int64(binary.BigEndian.Uint64(b[8:]))
	c.Size = int64(binary.BigEndian.Uint64(b[16:]))
	copy(c.Hash[:], b[24:56])
	n := int(binary.BigEndian.Uint16(b[56:]))
	b = b[segmentHeader:]
	if len(b) < 16*n+8 {
		return SegmentChunk{}, fmt.Errorf("%w: segment frame with %d replaced ranges has %d bytes left", ErrProtocol, n, len(b))
	}
	if c.First < 1 || c.Last < c.First {
		return SegmentChunk{}, fmt.Errorf("%w: segment seqs [%d,%d]", ErrProtocol, c.First, c.Last)
	}
	for i := 0; i < n; i++ {
		r := [2]int64{int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))}
		if r[0] < c.First || r[1] < r[0] || r[1] > c.Last {
			return SegmentChunk{}, fmt.Errorf("%w: segment [%d,%d] replaces [%d,%d], which is not inside it", ErrProtocol, c.First, c.Last, r[0], r[1])
		}
		c.Replaces = append(c.Replaces, r)
		b = b[16:]
	}
	c.Offset = int64(binary.BigEndian.Uint64(b))
	c.Data = b[8:]
	switch {
	case len(c.Data) == 0 || len(c.Data) > MaxSegmentChunk:
		return SegmentChunk{}, fmt.Errorf("%w: segment chunk of %d bytes, want 1..%d", ErrProtocol, len(c.Data), MaxSegmentChunk)
	case c.Size <= 0 || c.Offset < 0 || c.Offset > c.Size-int64(len(c.Data)):
		return SegmentChunk{}, fmt.Errorf("%w: segment chunk of %d bytes at offset %d of a %d-byte file", ErrProtocol, len(c.Data), c.Offset, c.Size)
	case !c.final() && c.Hash != [32]byte{}:
		return SegmentChunk{}, fmt.Errorf("%w: segment chunk at offset %d of %d carries a hash; only the last one does", ErrProtocol, c.Offset, c.Size)
	}
	return c, nil
}

// final reports whether c is the last chunk of its file.
func (c *SegmentChunk) final() bool { return c.Offset+int64(len(c.Data)) == c.Size }

// sameFile reports whether two chunks' headers name the same file.
func (c *SegmentChunk) sameFile(o *SegmentChunk) bool {
	if c.First != o.First || c.Last != o.Last || c.Size != o.Size || len(c.Replaces) != len(o.Replaces) {
		return false
	}
	for i := range c.Replaces {
		if c.Replaces[i] != o.Replaces[i] {
			return false
		}
	}
	return true
}
