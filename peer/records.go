package peer

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/finelog/finelog/store"
)

// Records is the body of a Records frame (primary to replica):
//
//	floor:u64 | primary_last:u64 | count:u32 | count × record
//	record = first:u64 | last:u64 | n_marks:u32 | n_marks × mark | n_rows:u32 | n_rows × row
//	mark   = producer:str16 | seq:u64
//	row    = key:rstr | source:rstr | data:str32 | epoch_ms:i64 | attempt_id:i32 | level:i32 | cluster:rstr [| attributes:rstr]
//
// Bit 31 of n_rows (rowsHaveAttrs) says the record's rows end with their
// attributes (store.Attributes' canonical encoding); it is set only when a
// row has some, so a record without attributes is byte-for-byte what it was
// before attributes existed, and an older replica refuses one with them
// (its row count check fails) rather than misreading it.
//
// str16 is len:u16 and bytes; str32 is len:u32 and bytes; rstr is a str32
// whose length 0xFFFFFFFF means "the same as this field of the previous row
// in the record" (a push repeats one key). Row seqs are first + index;
// last = first-1 for a record without rows. floor is the primary's retention
// floor (each record takes it as its Floor), primary_last its last committed
// seq when the frame was built (the replica's lag is primary_last minus what
// it holds). The encoding is the protocol's own, not the store's WAL format,
// so either can change without the other; the frame tag covers integrity.
type Records struct {
	Floor       int64
	PrimaryLast int64
	Records     []store.Record
}

const (
	recordsHeader = 8 + 8 + 4
	sameAsPrev    = math.MaxUint32
	rowsHaveAttrs = 1 << 31
	// minRecord and minRow are the smallest encodings, to bound counts by
	// the bytes present before allocating.
	minRecord = 8 + 8 + 4 + 4
	minRow    = 4 + 4 + 4 + 8 + 4 + 4 + 4
	minMark   = 2 + 8
)

// EncodeRecords appends r's encoding to dst.
func EncodeRecords(dst []byte, r Records) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Floor))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.PrimaryLast))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Records)))
	for i := range r.Records {
		dst = appendRecord(dst, &r.Records[i])
	}
	return dst
}

func appendRecord(dst []byte, rec *store.Record) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(rec.First))
	dst = binary.BigEndian.AppendUint64(dst, uint64(rec.Last))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(rec.Marks)))
	for _, m := range rec.Marks {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Producer)))
		dst = append(dst, m.Producer...)
		dst = binary.BigEndian.AppendUint64(dst, uint64(m.Seq))
	}
	n := uint32(len(rec.Rows))
	attrs := false
	for i := range rec.Rows {
		if rec.Rows[i].Attributes != "" {
			attrs = true
			n |= rowsHaveAttrs
			break
		}
	}
	dst = binary.BigEndian.AppendUint32(dst, n)
	for i := range rec.Rows {
		r := &rec.Rows[i]
		var prev *store.Row
		if i > 0 {
			prev = &rec.Rows[i-1]
		}
		dst = appendRStr(dst, r.Key, prev != nil && prev.Key == r.Key)
		dst = appendRStr(dst, r.Source, prev != nil && prev.Source == r.Source)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Data)))
		dst = append(dst, r.Data...)
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.EpochMS))
		dst = binary.BigEndian.AppendUint32(dst, uint32(r.AttemptID))
		dst = binary.BigEndian.AppendUint32(dst, uint32(r.Level))
		dst = appendRStr(dst, r.Cluster, prev != nil && prev.Cluster == r.Cluster)
		if attrs {
			dst = appendRStr(dst, string(r.Attributes), prev != nil && prev.Attributes == r.Attributes)
		}
	}
	return dst
}

func appendRStr(dst []byte, s string, same bool) []byte {
	if same {
		return binary.BigEndian.AppendUint32(dst, sameAsPrev)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// DecodeRecords parses a Records body. Structure only: counts and lengths
// must fit the bytes present, a record's row count must match its seq
// range, each record must start where the one before it ended, and nothing
// may follow the last record. Whether the rows and marks are acceptable is
// store.ApplyReplicated's to decide. It never panics.
func DecodeRecords(b []byte) (Records, error) {
	// One string for the whole body: every key, data and name is a slice of
	// it instead of an allocation of its own.
	return decodeRecords(b, string(b))
}

// decodeOwnedRecords is DecodeRecords without the copy: the rows' strings
// alias b itself, so b must be a buffer nobody writes again, as each frame
// body from Conn.Recv is. On a replica every row byte would otherwise be
// copied once more than the store's own WAL and memtable copies need.
func decodeOwnedRecords(b []byte) (Records, error) {
	if len(b) == 0 {
		return decodeRecords(b, "")
	}
	return decodeRecords(b, unsafe.String(&b[0], len(b)))
}

func decodeRecords(b []byte, whole string) (Records, error) {
	d := rdecoder{b: b, whole: whole}
	r := Records{Floor: d.i64(), PrimaryLast: d.i64()}
	n := d.u32()
	if d.err {
		return Records{}, d.fail("header")
	}
	if r.Floor < 0 || r.PrimaryLast < 0 {
		return Records{}, fmt.Errorf("%w: records floor %d or primary_last %d out of range", ErrProtocol, r.Floor, r.PrimaryLast)
	}
	if uint64(n)*minRecord > uint64(len(d.b)) {
		return Records{}, fmt.Errorf("%w: %d records in %d bytes", ErrProtocol, n, len(d.b))
	}
	r.Records = make([]store.Record, 0, n)
	for i := range n {
		rec, err := d.record(r.Floor)
		if err != nil {
			return Records{}, fmt.Errorf("record %d: %w", i, err)
		}
		if k := len(r.Records); k > 0 && rec.First != r.Records[k-1].Last+1 {
			return Records{}, fmt.Errorf("%w: record %d starts at seq %d, the one before ended at %d", ErrProtocol, i, rec.First, r.Records[k-1].Last)
		}
		r.Records = append(r.Records, rec)
	}
	if len(d.b) != 0 {
		return Records{}, fmt.Errorf("%w: %d bytes after the last record", ErrProtocol, len(d.b))
	}
	return r, nil
}

type rdecoder struct {
	b     []byte
	whole string // b's bytes as of the start, as a string
	err   bool
}

func (d *rdecoder) fail(what string) error {
	return fmt.Errorf("%w: records body truncated in %s", ErrProtocol, what)
}

func (d *rdecoder) take(n uint64) []byte {
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

// str takes n bytes as a slice of whole.
func (d *rdecoder) str(n uint64) string {
	off := len(d.whole) - len(d.b)
	if d.take(n) == nil {
		return ""
	}
	return d.whole[off : off+int(n)]
}

func (d *rdecoder) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *rdecoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *rdecoder) i64() int64 {
	if b := d.take(8); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

func (d *rdecoder) rstr(prev string, first bool) (string, bool) {
	n := d.u32()
	if n == sameAsPrev {
		return prev, !first
	}
	return d.str(uint64(n)), true
}

func (d *rdecoder) record(floor int64) (store.Record, error) {
	rec := store.Record{First: d.i64(), Last: d.i64(), Floor: floor}
	nm := d.u32()
	if d.err {
		return rec, d.fail("a record header")
	}
	if rec.First < 1 || rec.Last < rec.First-1 {
		return rec, fmt.Errorf("%w: seq range [%d,%d]", ErrProtocol, rec.First, rec.Last)
	}
	if uint64(nm)*minMark > uint64(len(d.b)) {
		return rec, fmt.Errorf("%w: %d marks in %d bytes", ErrProtocol, nm, len(d.b))
	}
	if nm > 0 {
		rec.Marks = make([]store.ProducerMark, 0, nm)
	}
	for range nm {
		// Cloned: the store keeps producer names in its mark map, which
		// must not pin the whole frame.
		p := strings.Clone(d.str(uint64(d.u16())))
		rec.Marks = append(rec.Marks, store.ProducerMark{Producer: p, Seq: d.i64()})
	}
	nr := d.u32()
	if d.err {
		return rec, d.fail("marks")
	}
	attrs := nr&rowsHaveAttrs != 0
	nr &^= rowsHaveAttrs
	if int64(nr) != rec.Last-rec.First+1 {
		return rec, fmt.Errorf("%w: %d rows for seq range [%d,%d]", ErrProtocol, nr, rec.First, rec.Last)
	}
	if uint64(nr)*minRow > uint64(len(d.b)) {
		return rec, fmt.Errorf("%w: %d rows in %d bytes", ErrProtocol, nr, len(d.b))
	}
	if nr > 0 {
		rec.Rows = make([]store.Row, 0, nr)
	}
	var prev store.Row
	for i := range nr {
		r := store.Row{Seq: rec.First + int64(i)}
		var ok1, ok2, ok3 bool
		r.Key, ok1 = d.rstr(prev.Key, i == 0)
		r.Source, ok2 = d.rstr(prev.Source, i == 0)
		r.Data = d.str(uint64(d.u32()))
		r.EpochMS = d.i64()
		r.AttemptID = int32(d.u32())
		r.Level = int32(d.u32())
		r.Cluster, ok3 = d.rstr(prev.Cluster, i == 0)
		if attrs {
			a, ok := d.rstr(string(prev.Attributes), i == 0)
			r.Attributes = store.Attributes(a)
			ok3 = ok3 && ok
		}
		if d.err {
			return rec, d.fail("rows")
		}
		if !ok1 || !ok2 || !ok3 {
			return rec, fmt.Errorf("%w: row %d refers to a previous row but is the first", ErrProtocol, i)
		}
		rec.Rows = append(rec.Rows, r)
		prev = r
	}
	return rec, nil
}
