package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// WAL record framing, modelled on Pebble's record package:
//
//	crc32c  uint32  Castagnoli CRC of everything after this field
//	length  uint32  bit 31: grouped (set by every writer since it existed);
//	                bit 30: rows carry attributes (set when any row has
//	                some, so records without any stay readable by older
//	                binaries); bits 0-29: payload length in bytes
//	first   int64   store seq of the first row (first = last+1 when no rows)
//	last    int64   store seq of the last row
//	payload [length]byte
//
// The CRC covers length and the seq range too, so a flipped length or seq is
// caught like a flipped payload byte. One record holds one Append batch: the
// rows and the producer high-water mark of an idempotent batch are in the
// same record and so become durable (or vanish) together.
//
// Payload (all integers are varints, strings are uvarint length + bytes):
//
//	uint32  back    (grouped records only) bytes from the start of this
//	                record's group commit (one write, one fdatasync) to the
//	                start of this record
//	uvarint nMarks; nMarks × (string producer, varint mark)
//	uvarint nRows;  nRows  × (rstring key, rstring source, string data,
//	                          varint epoch_ms, varint attempt_id, varint level,
//	                          rstring cluster[, rstring attributes])
//
// attributes (Row.Attributes, canonical encoding) is present only in
// records with the attributes bit.
//
// An rstring is uvarint 0 for "same as the previous row" (a PushLogs batch
// repeats one key; this saves ~15% of WAL bytes) or uvarint len+1 and bytes.
//
// Row seqs are implicit (first + index), which keeps records compact and makes
// a record whose row count disagrees with its seq range detectably invalid.
//
// back lets recovery tell a torn group from corruption. A power cut can
// leave any of an unsynced group's bytes zeroed or garbled while later
// bytes of the same group are intact, so a bad record followed by a valid
// one of the same group is a torn write (nothing in it was acked). A valid
// record of a later group proves the bad record's group was fdatasync'ed
// (the committer writes a group only after the previous one's sync
// returned), so that is corruption of acked data. Records without the
// grouped bit (older files) keep the old rule: any valid record after a bad
// one is corruption.
const (
	walHeaderSize = 24
	// walGrouped is the length field's flag for records that carry back.
	walGrouped = 1 << 31
	// walAttrs is the length field's flag for records whose rows carry
	// attributes.
	walAttrs = 1 << 30
	// walLengthMask selects the payload length from the length field.
	walLengthMask = walAttrs - 1
	// walBackSize is back's size: fixed, so the committer can patch it into
	// a record encoded before its place in the group was known.
	walBackSize = 4
	// maxWALPayload bounds a record: the largest valid batch plus generous
	// framing overhead. A header claiming more is garbage, not a record.
	maxWALPayload = MaxBatchBytes + 4<<20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WALRecord is one decoded WAL record.
type WALRecord struct {
	First, Last int64
	Marks       []ProducerMark
	Rows        []Row // Seq filled from First
}

// ProducerMark is an idempotent producer's applied high-water mark.
type ProducerMark struct {
	Producer string
	Seq      int64
}

// errBadRecord marks a frame that is not a valid record (torn or corrupt).
var errBadRecord = errors.New("bad wal record")

// appendWALRecord encodes a record onto dst, as the first of its group
// (back 0; patchWALHeader sets it).
func appendWALRecord(dst []byte, first, last int64, marks []ProducerMark, rows []Row) []byte {
	return encodeWALRecord(dst, first, last, 0, marks, rows)
}

// encodeWALRecord encodes a record that starts back bytes after the start
// of its group commit.
func encodeWALRecord(dst []byte, first, last int64, back uint32, marks []ProducerMark, rows []Row) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, walHeaderSize)...)
	dst = binary.LittleEndian.AppendUint32(dst, back)
	dst = binary.AppendUvarint(dst, uint64(len(marks)))
	for _, m := range marks {
		dst = appendString(dst, m.Producer)
		dst = binary.AppendVarint(dst, m.Seq)
	}
	dst = binary.AppendUvarint(dst, uint64(len(rows)))
	var flags uint32 = walGrouped
	for i := range rows {
		if rows[i].Attributes != "" {
			flags |= walAttrs
			break
		}
	}
	for i := range rows {
		r := &rows[i]
		dst = appendRepeat(dst, r.Key, i > 0 && rows[i-1].Key == r.Key)
		dst = appendRepeat(dst, r.Source, i > 0 && rows[i-1].Source == r.Source)
		dst = appendString(dst, r.Data)
		dst = binary.AppendVarint(dst, r.EpochMS)
		dst = binary.AppendVarint(dst, int64(r.AttemptID))
		dst = binary.AppendVarint(dst, int64(r.Level))
		dst = appendRepeat(dst, r.Cluster, i > 0 && rows[i-1].Cluster == r.Cluster)
		if flags&walAttrs != 0 {
			dst = appendRepeat(dst, string(r.Attributes), i > 0 && rows[i-1].Attributes == r.Attributes)
		}
	}
	h := dst[start : start+walHeaderSize]
	binary.LittleEndian.PutUint32(h[4:], uint32(len(dst)-start-walHeaderSize)|flags)
	binary.LittleEndian.PutUint64(h[8:], uint64(first))
	binary.LittleEndian.PutUint64(h[16:], uint64(last))
	binary.LittleEndian.PutUint32(h[0:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// appendRepeat encodes key, source and cluster, which a batch usually
// repeats row after row (a PushLogs request has one key): uvarint 0 means
// "same as the previous row", otherwise length+1 and the bytes.
func appendRepeat(dst []byte, s string, same bool) []byte {
	if same {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s))+1)
	return append(dst, s...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeWALRecord decodes the record at the start of b and returns it with
// the number of bytes it occupies. Any framing problem (short input, length
// out of range, CRC mismatch, payload that does not parse or disagrees with
// the seq range) is an error wrapping errBadRecord; it never panics, and a
// record is returned only when its checksum matches.
func DecodeWALRecord(b []byte) (WALRecord, int, error) {
	rec, n, _, err := decodeWALFrame(b)
	return rec, n, err
}

// decodeWALFrame is DecodeWALRecord that also returns the record's back
// (bytes from its group's start), or -1 for a record written before records
// had one.
func decodeWALFrame(b []byte) (WALRecord, int, int64, error) {
	if len(b) < walHeaderSize {
		return WALRecord{}, 0, 0, fmt.Errorf("%w: %d bytes, header needs %d", errBadRecord, len(b), walHeaderSize)
	}
	n := binary.LittleEndian.Uint32(b[4:])
	grouped := n&walGrouped != 0
	hasAttrs := n&walAttrs != 0
	n &= walLengthMask
	if n > maxWALPayload || int(n) > len(b)-walHeaderSize {
		return WALRecord{}, 0, 0, fmt.Errorf("%w: payload length %d exceeds the %d bytes available", errBadRecord, n, len(b)-walHeaderSize)
	}
	total := walHeaderSize + int(n)
	if got, want := crc32.Checksum(b[4:total], castagnoli), binary.LittleEndian.Uint32(b); got != want {
		return WALRecord{}, 0, 0, fmt.Errorf("%w: crc32c %08x, header says %08x", errBadRecord, got, want)
	}
	rec := WALRecord{
		First: int64(binary.LittleEndian.Uint64(b[8:])),
		Last:  int64(binary.LittleEndian.Uint64(b[16:])),
	}
	if rec.First < 1 || rec.Last < rec.First-1 {
		return WALRecord{}, 0, 0, fmt.Errorf("%w: seq range [%d,%d]", errBadRecord, rec.First, rec.Last)
	}
	d := decoder{b: b[walHeaderSize:total]}
	back := int64(-1)
	if grouped {
		if len(d.b) < walBackSize {
			return WALRecord{}, 0, 0, fmt.Errorf("%w: grouped record of %d payload bytes has no group offset", errBadRecord, len(d.b))
		}
		back = int64(binary.LittleEndian.Uint32(d.b))
		d.b = d.b[walBackSize:]
	}
	nm := d.uvarint()
	if nm > uint64(len(d.b)) {
		return WALRecord{}, 0, 0, fmt.Errorf("%w: %d producer marks in %d bytes", errBadRecord, nm, len(d.b))
	}
	for i := uint64(0); i < nm && d.err == nil; i++ {
		rec.Marks = append(rec.Marks, ProducerMark{Producer: d.str(), Seq: d.varint()})
	}
	nr := d.uvarint()
	if d.err == nil && (nr > uint64(len(d.b)) || int64(nr) != rec.Last-rec.First+1) {
		return WALRecord{}, 0, 0, fmt.Errorf("%w: %d rows for seq range [%d,%d]", errBadRecord, nr, rec.First, rec.Last)
	}
	if d.err == nil {
		rec.Rows = make([]Row, 0, nr)
	}
	prev := &Row{}
	for i := uint64(0); i < nr && d.err == nil; i++ {
		r := Row{Seq: rec.First + int64(i)}
		r.Key = d.repeat(prev.Key)
		r.Source = d.repeat(prev.Source)
		r.Data = d.str()
		r.EpochMS = d.varint()
		r.AttemptID = int32(d.varint())
		r.Level = int32(d.varint())
		r.Cluster = d.repeat(prev.Cluster)
		if hasAttrs {
			r.Attributes = Attributes(d.repeat(string(prev.Attributes)))
		}
		rec.Rows = append(rec.Rows, r)
		prev = &rec.Rows[len(rec.Rows)-1]
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return WALRecord{}, 0, 0, fmt.Errorf("%w: payload: %v", errBadRecord, d.err)
	}
	return rec, total, back, nil
}

// plausibleHeader is a cheap pre-check used when scanning past a bad record
// for a later valid one: it rejects most offsets without computing a CRC.
func plausibleHeader(b []byte) bool {
	if len(b) < walHeaderSize {
		return false
	}
	n := binary.LittleEndian.Uint32(b[4:]) & walLengthMask
	first := int64(binary.LittleEndian.Uint64(b[8:]))
	last := int64(binary.LittleEndian.Uint64(b[16:]))
	return n <= maxWALPayload && int(n) <= len(b)-walHeaderSize && first >= 1 && last >= first-1 && last-first < 1<<30
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("string of %d bytes with %d left", n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) repeat(prev string) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n == 0 {
		return prev
	}
	n--
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("string of %d bytes with %d left", n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// AppendWALRecord appends rec's encoding to dst (rec.Rows' Seq fields are
// ignored: seqs are First..Last). Exported for the fuzz target's seeds and
// for tools that inspect WAL files.
func AppendWALRecord(dst []byte, rec WALRecord) []byte {
	return appendWALRecord(dst, rec.First, rec.Last, rec.Marks, rec.Rows)
}
