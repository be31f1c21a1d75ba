package peer

import (
	"encoding/binary"
	"fmt"

	"github.com/finelog/finelog/store"
)

// Records is the body of a Records frame (primary to replica):
//
//	floor:u64 | primary_last:u64 | count:u32 | count × (len:u32 | record[len])
//
// floor is the primary's retention floor (every seq <= floor was deleted
// there; each record takes it as its Floor), primary_last its last committed seq when the frame was built (the
// replica's lag is primary_last minus what it holds), and each record is one
// committed WAL record in the store's WAL record encoding (docs/store.md:
// little-endian crc32c, length, first, last, then the varint payload with
// producer marks and rows), checksum included, so the replica applies
// exactly what the primary committed: same seqs, same producer marks.
type Records struct {
	Floor       int64
	PrimaryLast int64
	Records     []store.Record
}

const recordsHeader = 8 + 8 + 4

// EncodeRecords appends r's encoding to dst.
func EncodeRecords(dst []byte, r Records) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Floor))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.PrimaryLast))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Records)))
	for _, rec := range r.Records {
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		dst = store.AppendWALRecord(dst, store.WALRecord{First: rec.First, Last: rec.Last, Marks: rec.Marks, Rows: rec.Rows})
		binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	}
	return dst
}

// DecodeRecords parses a Records body. Every record must decode whole
// under its checksum, fill its length exactly, and follow the one before it
// (first = previous last + 1); floor and primary_last must be valid seqs.
// It never panics.
func DecodeRecords(b []byte) (Records, error) {
	if len(b) < recordsHeader {
		return Records{}, fmt.Errorf("%w: records body of %d bytes, header needs %d", ErrProtocol, len(b), recordsHeader)
	}
	r := Records{
		Floor:       int64(binary.BigEndian.Uint64(b)),
		PrimaryLast: int64(binary.BigEndian.Uint64(b[8:])),
	}
	if r.Floor < 0 || r.PrimaryLast < 0 {
		return Records{}, fmt.Errorf("%w: records floor %d or primary_last %d out of range", ErrProtocol, r.Floor, r.PrimaryLast)
	}
	n := binary.BigEndian.Uint32(b[16:])
	b = b[recordsHeader:]
	// Each record takes at least its 4-byte length and a 24-byte header.
	if uint64(n)*28 > uint64(len(b)) {
		return Records{}, fmt.Errorf("%w: %d records in %d bytes", ErrProtocol, n, len(b))
	}
	r.Records = make([]store.Record, 0, n)
	for i := range n {
		if len(b) < 4 {
			return Records{}, fmt.Errorf("%w: record %d: truncated length", ErrProtocol, i)
		}
		l := binary.BigEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return Records{}, fmt.Errorf("%w: record %d: length %d over the %d bytes left", ErrProtocol, i, l, len(b)-4)
		}
		rec, used, err := store.DecodeWALRecord(b[4 : 4+l])
		if err != nil {
			return Records{}, fmt.Errorf("%w: record %d: %v", ErrProtocol, i, err)
		}
		if used != int(l) {
			return Records{}, fmt.Errorf("%w: record %d: %d trailing bytes", ErrProtocol, i, int(l)-used)
		}
		if k := len(r.Records); k > 0 && rec.First != r.Records[k-1].Last+1 {
			return Records{}, fmt.Errorf("%w: record %d starts at seq %d, the one before ended at %d", ErrProtocol, i, rec.First, r.Records[k-1].Last)
		}
		r.Records = append(r.Records, store.Record{First: rec.First, Last: rec.Last, Rows: rec.Rows, Marks: rec.Marks, Floor: r.Floor})
		b = b[4+l:]
	}
	if len(b) != 0 {
		return Records{}, fmt.Errorf("%w: %d bytes after the last record", ErrProtocol, len(b))
	}
	return r, nil
}
