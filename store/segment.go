package store

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"

	"github.com/finelog/finelog/internal/vfs"
)

// A segment is an immutable parquet file holding the rows of a contiguous seq
// range [first, last], named seg-<first>-<last>.parquet.
//
// Rows are sorted by (key, seq), so one key is a contiguous row range and a
// one-key read decodes only that range (a tail read only its end). Columns
// (plain parquet, readable by any tool):
//
//	key        BYTE_ARRAY (UTF8)  dictionary; sorted, so runs collapse
//	seq        INT64              delta-binary-packed
//	epoch_ms   INT64              delta-binary-packed
//	level      INT32
//	attempt_id INT32
//	source     BYTE_ARRAY (UTF8)  dictionary
//	cluster    BYTE_ARRAY (UTF8)  dictionary
//	data       BYTE_ARRAY (UTF8)  plain; zstd does the work
//
// All columns are zstd-compressed with ~1 MiB pages. The footer key/value
// metadata carries what finelog needs to avoid reading data it does not need:
//
//	finelog.segment   JSON: first/last seq, row count, producer marks
//	finelog.keys      base64(zstd(binary key index)): key → row range and
//	                  seq/epoch range
//	finelog.rowgroups base64(zstd(binary)): per row group its row range,
//	                  seq/epoch range, and a 64 Ki-bit trigram bitmap of data
//	                  (a one-hash bloom filter) that lets a substring read skip
//	                  row groups that cannot contain it.
type segment struct {
	name        string
	first, last int64
	rows        int64
	size        int64
	minEpoch    int64
	maxEpoch    int64
	written     int64 // segMeta.Written (or MaxEpoch for older segments)
	producers   map[string]int64

	f    vfs.File
	pf   *parquet.File
	keys []keyRange // sorted by key
	rgs  []rgInfo
	col  colIndex

	refs atomic.Int32 // 1 for the store's list + 1 per reader snapshot
}

type keyRange struct {
	key          string
	start, count int64
	// samples[i] is the seq of row start+i*seqSampleEvery: a sparse index
	// that lets a read with a cursor (or Scan's seq window) jump into the
	// key's range instead of decoding it from the start.
	samples            []int64
	minSeq, maxSeq     int64
	minEpoch, maxEpoch int64
}

type rgInfo struct {
	start, count       int64
	minSeq, maxSeq     int64
	minEpoch, maxEpoch int64
	grams              []byte // trigramBits/8 bytes
}

type colIndex struct{ key, seq, epoch, level, attempt, source, cluster, data int }

// segRow is the parquet schema of a segment row.
type segRow struct {
	Key       string `parquet:"key,dict"`
	Seq       int64  `parquet:"seq,delta"`
	EpochMS   int64  `parquet:"epoch_ms,delta"`
	Level     int32  `parquet:"level"`
	AttemptID int32  `parquet:"attempt_id"`
	Source    string `parquet:"source,dict"`
	Cluster   string `parquet:"cluster,dict"`
	Data      string `parquet:"data"`
}

const (
	segPrefix, segSuffix = "seg-", ".parquet"
	// rowGroupRows trades pruning granularity (a substring hit decodes one
	// whole row group) against per-group overhead and compression.
	rowGroupRows = 16384
	trigramBits  = 1 << 16
	// seqSampleEvery: one seq sample per this many rows of a key.
	seqSampleEvery = 256
)

// firstRowAfter returns a row r in [start, start+count] such that every row
// of the key before r has seq <= seq (rows from r on may still be <= seq).
func (k *keyRange) firstRowAfter(seq int64) int64 {
	i := sort.Search(len(k.samples), func(i int) bool { return k.samples[i] > seq })
	if i == 0 {
		return k.start
	}
	return k.start + int64(i-1)*seqSampleEvery
}

// endRowUpTo returns a row e such that every row of the key from e on has
// seq > seq.
func (k *keyRange) endRowUpTo(seq int64) int64 {
	i := sort.Search(len(k.samples), func(i int) bool { return k.samples[i] > seq })
	return min(k.start+int64(i)*seqSampleEvery, k.start+k.count)
}

func segName(first, last int64) string {
	return fmt.Sprintf("%s%020d-%020d%s", segPrefix, first, last, segSuffix)
}

func parseSegName(name string) (first, last int64, ok bool) {
	if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix), "-")
	if !found {
		return 0, 0, false
	}
	f, err1 := strconv.ParseInt(a, 10, 64)
	l, err2 := strconv.ParseInt(b, 10, 64)
	return f, l, err1 == nil && err2 == nil && f >= 1 && l >= f
}

func trigramHash(a, b, c byte) uint32 {
	return (uint32(a)<<16 | uint32(b)<<8 | uint32(c)) * 0x9E3779B1 >> 16
}

func addTrigrams(bits *[trigramBits / 8]byte, s string) {
	if len(s) < 3 {
		return
	}
	v := uint32(s[0])<<8 | uint32(s[1])
	for i := 2; i < len(s); i++ {
		v = (v<<8 | uint32(s[i])) & 0xffffff
		h := (v * 0x9E3779B1) >> 16 // == trigramHash; the array type drops bounds checks
		bits[h>>3] |= 1 << (h & 7)
	}
}

// mayContain reports whether every trigram of sub is set: false means no row
// of the group contains sub.
func mayContain(bits []byte, sub string) bool {
	if len(bits) == 0 {
		return true
	}
	for i := 0; i+3 <= len(sub); i++ {
		h := trigramHash(sub[i], sub[i+1], sub[i+2])
		if bits[h>>3]&(1<<(h&7)) == 0 {
			return false
		}
	}
	return true
}

// ---- writing ------------------------------------------------------------

// segWriter streams rows in (key, seq) order into a segment file.
type segWriter struct {
	f     vfs.File
	bw    *bufio.Writer
	w     *parquet.GenericWriter[segRow]
	buf   []segRow
	rows  int64
	grams [][]byte // precomputed row-group bitmaps (see writeSegment)
	keys  []keyRange
	rgs   []rgInfo
	first int64
	last  int64
	minE  int64
	maxE  int64
}

// Flushes run on the ingest path's CPU, so they use zstd's fastest level.
// Compaction uses the better level only for a segment that is final (see
// Store.merge): a smaller merged segment is merged again, and spending the
// better level's ~1.3x CPU on it bought nothing that lasted.
var (
	flushCodec   = newPageCodec(zstd.SpeedFastest)
	compactCodec = newPageCodec(zstd.SpeedBetterCompression)
)

// newSegWriter sizes its buffers from the expected rows and bytes: large
// pages compress best, but a small flush should not allocate megabytes.
func newSegWriter(f vfs.File, estRows, estBytes int64, codec *pageCodec) *segWriter {
	bufBytes := int(min(max(estBytes, 4<<10), 1<<20))
	bw := bufio.NewWriterSize(f, bufBytes)
	w := parquet.NewGenericWriter[segRow](bw,
		parquet.Compression(codec),
		parquet.PageBufferSize(min(bufBytes, 256<<10)),
		parquet.MaxRowsPerRowGroup(rowGroupRows*2),
		parquet.CreatedBy("finelog", "1", ""),
	)
	return &segWriter{f: f, bw: bw, w: w, buf: make([]segRow, 0, min(max(estRows, 16), rowGroupRows))}
}

func (sw *segWriter) add(r *Row) error {
	if n := len(sw.keys); n == 0 || sw.keys[n-1].key != r.Key {
		sw.keys = append(sw.keys, keyRange{key: r.Key, start: sw.rows, minSeq: r.Seq, maxSeq: r.Seq, minEpoch: r.EpochMS, maxEpoch: r.EpochMS})
	}
	k := &sw.keys[len(sw.keys)-1]
	if k.count%seqSampleEvery == 0 {
		k.samples = append(k.samples, r.Seq)
	}
	k.count++
	k.minSeq, k.maxSeq = min(k.minSeq, r.Seq), max(k.maxSeq, r.Seq)
	k.minEpoch, k.maxEpoch = min(k.minEpoch, r.EpochMS), max(k.maxEpoch, r.EpochMS)
	if sw.rows == 0 {
		sw.first, sw.last, sw.minE, sw.maxE = r.Seq, r.Seq, r.EpochMS, r.EpochMS
	}
	sw.first, sw.last = min(sw.first, r.Seq), max(sw.last, r.Seq)
	sw.minE, sw.maxE = min(sw.minE, r.EpochMS), max(sw.maxE, r.EpochMS)
	sw.rows++
	sw.buf = append(sw.buf, segRow{Key: r.Key, Seq: r.Seq, EpochMS: r.EpochMS, Level: r.Level, AttemptID: r.AttemptID, Source: r.Source, Cluster: r.Cluster, Data: r.Data})
	if len(sw.buf) == rowGroupRows {
		return sw.flushGroup()
	}
	return nil
}

func (sw *segWriter) flushGroup() error {
	if len(sw.buf) == 0 {
		return nil
	}
	g := rgInfo{start: sw.rows - int64(len(sw.buf)), count: int64(len(sw.buf))}
	build := len(sw.rgs) >= len(sw.grams)
	if build {
		g.grams = make([]byte, trigramBits/8)
	} else {
		g.grams = sw.grams[len(sw.rgs)]
	}
	g.minSeq, g.maxSeq = sw.buf[0].Seq, sw.buf[0].Seq
	g.minEpoch, g.maxEpoch = sw.buf[0].EpochMS, sw.buf[0].EpochMS
	for i := range sw.buf {
		r := &sw.buf[i]
		g.minSeq, g.maxSeq = min(g.minSeq, r.Seq), max(g.maxSeq, r.Seq)
		g.minEpoch, g.maxEpoch = min(g.minEpoch, r.EpochMS), max(g.maxEpoch, r.EpochMS)
		if build {
			addTrigrams((*[trigramBits / 8]byte)(g.grams), r.Data)
		}
	}
	sw.rgs = append(sw.rgs, g)
	if _, err := sw.w.Write(sw.buf); err != nil {
		return err
	}
	if err := sw.w.Flush(); err != nil {
		return err
	}
	clear(sw.buf)
	sw.buf = sw.buf[:0]
	return nil
}

type segMeta struct {
	First    int64 `json:"first_seq"`
	Last     int64 `json:"last_seq"`
	Rows     int64 `json:"rows"`
	MinEpoch int64 `json:"min_epoch_ms"`
	MaxEpoch int64 `json:"max_epoch_ms"`
	// Written is the store's clock when the rows were written to a segment
	// (the flush; a merge keeps its inputs' newest), so no row in it
	// arrived later. Age retention counts from it. Absent in segments from
	// before it was recorded, where retention falls back to MaxEpoch.
	Written int64 `json:"written_ms,omitempty"`
	// Producers: the producer map as of the segment's flush, in segments
	// written before producers.json held it. Read at Open (when there is
	// no producers.json yet), never written: a copy per segment made
	// segments grow with the number of producers.
	Producers map[string]int64 `json:"producers,omitempty"`
}

// finish writes the footer and fsyncs the file.
func (sw *segWriter) finish(writtenMS int64) error {
	if err := sw.flushGroup(); err != nil {
		return err
	}
	meta, _ := json.Marshal(segMeta{First: sw.first, Last: sw.last, Rows: sw.rows, MinEpoch: sw.minE, MaxEpoch: sw.maxE, Written: writtenMS})
	sw.w.SetKeyValueMetadata("finelog.segment", string(meta))
	sw.w.SetKeyValueMetadata("finelog.keys", packBlob(encodeKeys(sw.keys)))
	sw.w.SetKeyValueMetadata("finelog.rowgroups", packBlob(encodeRGs(sw.rgs)))
	if err := sw.w.Close(); err != nil {
		return err
	}
	if err := sw.bw.Flush(); err != nil {
		return err
	}
	return sw.f.Sync()
}

var (
	// Footer blobs are at most a few MiB (8 KiB of trigram bitmap per row
	// group); a 1 MiB window keeps the encoder's history at ~2 MiB instead of
	// the default 16 MiB held for the life of the process.
	blobEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	blobDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
)

func packBlob(b []byte) string {
	return base64.StdEncoding.EncodeToString(blobEnc.EncodeAll(b, nil))
}

func unpackBlob(s string) ([]byte, error) {
	z, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	return blobDec.DecodeAll(z, nil)
}

func encodeKeys(keys []keyRange) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k.key)
		for _, v := range []int64{k.start, k.count, k.minSeq, k.maxSeq, k.minEpoch, k.maxEpoch} {
			b = binary.AppendVarint(b, v)
		}
		b = binary.AppendUvarint(b, uint64(len(k.samples)))
		prev := k.minSeq
		for _, v := range k.samples {
			b = binary.AppendVarint(b, v-prev)
			prev = v
		}
	}
	return b
}

func decodeKeys(b []byte) ([]keyRange, error) {
	d := decoder{b: b}
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, errors.New("key count out of range")
	}
	keys := make([]keyRange, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := keyRange{key: d.str()}
		k.start, k.count, k.minSeq, k.maxSeq, k.minEpoch, k.maxEpoch = d.varint(), d.varint(), d.varint(), d.varint(), d.varint(), d.varint()
		ns := d.uvarint()
		if ns != uint64((k.count+seqSampleEvery-1)/seqSampleEvery) {
			return nil, fmt.Errorf("key %q: %d seq samples for %d rows", k.key, ns, k.count)
		}
		prev := k.minSeq
		k.samples = make([]int64, 0, ns)
		for j := uint64(0); j < ns && d.err == nil; j++ {
			prev += d.varint()
			k.samples = append(k.samples, prev)
		}
		keys = append(keys, k)
	}
	return keys, d.err
}

func encodeRGs(rgs []rgInfo) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(rgs)))
	for _, g := range rgs {
		for _, v := range []int64{g.start, g.count, g.minSeq, g.maxSeq, g.minEpoch, g.maxEpoch} {
			b = binary.AppendVarint(b, v)
		}
		b = append(b, g.grams...)
	}
	return b
}

func decodeRGs(b []byte) ([]rgInfo, error) {
	d := decoder{b: b}
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, errors.New("row group count out of range")
	}
	rgs := make([]rgInfo, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		var g rgInfo
		g.start, g.count, g.minSeq, g.maxSeq, g.minEpoch, g.maxEpoch = d.varint(), d.varint(), d.varint(), d.varint(), d.varint(), d.varint()
		if d.err == nil {
			if len(d.b) < trigramBits/8 {
				return nil, errors.New("short trigram bitmap")
			}
			g.grams = d.b[: trigramBits/8 : trigramBits/8]
			d.b = d.b[trigramBits/8:]
		}
		rgs = append(rgs, g)
	}
	return rgs, d.err
}

// yieldEvery: a segment write yields the processor after this many rows
// (about a millisecond of work), so request goroutines queued behind a
// flush or merge on a small machine wait that long, not a 10 ms time slice.
const yieldEvery = 1024

// segOut describes a segment about to be written.
type segOut struct {
	estRows, estBytes int64 // size the writer's buffers
	codec             *pageCodec
	// grams, when not nil, holds the trigram bitmap of each row group in
	// order (a flush builds them in memtable order, see memFlush);
	// otherwise the writer builds them from the rows.
	grams [][]byte
	// writtenMS is segMeta.Written: the store's clock at the flush, or the
	// newest of a merge's inputs. Age retention counts from it.
	writtenMS int64
}

// writeSegment writes rows (already sorted by key, seq) through tmp → fsync →
// rename → dir fsync and returns the opened segment.
func (s *Store) writeSegment(next func() (*Row, error), o segOut) (*segment, error) {
	// A counter, not the clock, names the file: a flush and a compaction
	// write at the same time, and a virtual clock may not move between them.
	tmp := path.Join(s.dir, fmt.Sprintf("seg-writing-%d.tmp", s.tmpSeq.Add(1)))
	f, err := s.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", tmp, mapNoSpace(err))
	}
	sw := newSegWriter(f, o.estRows, o.estBytes, o.codec)
	sw.grams = o.grams
	fail := func(err error) (*segment, error) {
		f.Close()
		s.fs.Remove(tmp)
		return nil, mapNoSpace(err)
	}
	for {
		if sw.rows%yieldEvery == yieldEvery-1 {
			runtime.Gosched()
		}
		r, err := next()
		if err != nil {
			return fail(err)
		}
		if r == nil {
			break
		}
		if err := sw.add(r); err != nil {
			return fail(fmt.Errorf("write segment %s: %w", tmp, err))
		}
	}
	if sw.rows == 0 {
		return fail(errors.New("write segment: no rows"))
	}
	if err := sw.finish(o.writtenMS); err != nil {
		return fail(fmt.Errorf("write segment %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		s.fs.Remove(tmp)
		return nil, fmt.Errorf("close segment %s: %w", tmp, err)
	}
	name := segName(sw.first, sw.last)
	if err := s.fs.Rename(tmp, path.Join(s.dir, name)); err != nil {
		s.fs.Remove(tmp)
		return nil, fmt.Errorf("rename segment %s: %w", name, mapNoSpace(err))
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		// The file is complete and fsynced and its name is in the directory;
		// only whether the name survives a crash is unknown. The caller gets
		// the opened segment with the error and decides: it must either
		// install it (a later SyncDir makes the name durable) or remove it,
		// never leave it on disk unaccounted for (see dirSyncError).
		sg, oerr := s.openSegment(name)
		if oerr != nil {
			return nil, fmt.Errorf("sync dir after segment %s: %w", name, mapNoSpace(err))
		}
		return sg, &dirSyncError{name: name, err: mapNoSpace(err)}
	}
	return s.openSegment(name)
}

// dirSyncError: a segment was written and renamed into place, but the
// directory sync after the rename failed. writeSegment returns it together
// with the opened segment.
type dirSyncError struct {
	name string
	err  error
}

func (e *dirSyncError) Error() string {
	return fmt.Sprintf("sync dir after segment %s: %v", e.name, e.err)
}

func (e *dirSyncError) Unwrap() error { return e.err }

// ---- opening ------------------------------------------------------------

func (s *Store) openSegment(name string) (*segment, error) {
	p := path.Join(s.dir, name)
	f, err := s.fs.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open segment %s: %w", p, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat segment %s: %w", p, err)
	}
	sg, err := loadSegment(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("segment %s is unreadable: %w (move it aside to open the store without its rows)", p, err)
	}
	sg.name = name
	if first, last, ok := parseSegName(name); !ok || first != sg.first || last != sg.last {
		f.Close()
		return nil, fmt.Errorf("segment %s: footer says seqs [%d,%d], which does not match its name", p, sg.first, sg.last)
	}
	sg.refs.Store(1)
	return sg, nil
}

func loadSegment(f vfs.File, size int64) (*segment, error) {
	pf, err := parquet.OpenFile(f, size, parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, err
	}
	sg := &segment{f: f, pf: pf, size: size}
	metaS, ok := pf.Lookup("finelog.segment")
	if !ok {
		return nil, errors.New("missing finelog.segment footer metadata")
	}
	var m segMeta
	if err := json.Unmarshal([]byte(metaS), &m); err != nil {
		return nil, fmt.Errorf("finelog.segment metadata: %w", err)
	}
	sg.first, sg.last, sg.rows, sg.minEpoch, sg.maxEpoch, sg.producers = m.First, m.Last, m.Rows, m.MinEpoch, m.MaxEpoch, m.Producers
	sg.written = m.Written
	if sg.written == 0 {
		sg.written = m.MaxEpoch
	}
	if sg.rows != pf.NumRows() || sg.rows != sg.last-sg.first+1 {
		return nil, fmt.Errorf("segment claims %d rows for seqs [%d,%d], file has %d", sg.rows, sg.first, sg.last, pf.NumRows())
	}
	ks, _ := pf.Lookup("finelog.keys")
	kb, err := unpackBlob(ks)
	if err == nil {
		sg.keys, err = decodeKeys(kb)
	}
	if err != nil {
		return nil, fmt.Errorf("finelog.keys metadata: %w", err)
	}
	rs, _ := pf.Lookup("finelog.rowgroups")
	rb, err := unpackBlob(rs)
	if err == nil {
		sg.rgs, err = decodeRGs(rb)
	}
	if err != nil {
		return nil, fmt.Errorf("finelog.rowgroups metadata: %w", err)
	}
	if len(sg.rgs) != len(pf.RowGroups()) {
		return nil, fmt.Errorf("finelog.rowgroups lists %d row groups, file has %d", len(sg.rgs), len(pf.RowGroups()))
	}
	schema := pf.Schema()
	col := func(name string) (int, error) {
		leaf, ok := schema.Lookup(name)
		if !ok {
			return 0, fmt.Errorf("missing column %q", name)
		}
		return leaf.ColumnIndex, nil
	}
	for _, c := range []struct {
		name string
		dst  *int
	}{{"key", &sg.col.key}, {"seq", &sg.col.seq}, {"epoch_ms", &sg.col.epoch}, {"level", &sg.col.level}, {"attempt_id", &sg.col.attempt}, {"source", &sg.col.source}, {"cluster", &sg.col.cluster}, {"data", &sg.col.data}} {
		if *c.dst, err = col(c.name); err != nil {
			return nil, err
		}
	}
	return sg, nil
}

// loadSegments opens every segment in names and resolves leftovers:
//
//   - a segment wholly at or below floor (meta.json's retention floor) is
//     one retention already deleted durably but whose file removal failed or
//     was cut short by a crash. Loading it would bring deleted rows back with
//     a seq gap after them, which a later compaction would merge into a
//     segment that fails the rows == last-first+1 check, so it is deleted
//     and never loaded.
//   - a segment whose seq range lies inside another's is an input an
//     interrupted compaction's merge already covers, so it is deleted.
func (s *Store) loadSegments(names []string, floor int64) ([]*segment, error) {
	type cand struct {
		name        string
		first, last int64
	}
	var cs []cand
	removed := false
	for _, n := range names {
		f, l, ok := parseSegName(n)
		if !ok {
			continue
		}
		if l <= floor {
			err := s.fs.Remove(path.Join(s.dir, n))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				// Not fatal: the file is skipped either way and the next
				// open (or Retain) retries the removal.
				s.log.Warn("recovery: cannot remove segment below the retention floor; skipping it", "segment", n, "floor_seq", floor, "err", err)
				s.garbage = append(s.garbage, n)
				continue
			}
			s.log.Info("recovery: removed segment below the retention floor (retention deleted it; its file removal had not completed)", "segment", n, "floor_seq", floor)
			removed = true
			continue
		}
		if f <= floor {
			// Retention deletes whole segments, so none straddles the
			// floor; one that does predates this check. Its rows above the
			// floor are kept rather than refusing to open.
			s.log.Warn("recovery: segment straddles the retention floor; rows at or below the floor stay readable", "segment", n, "floor_seq", floor)
		}
		cs = append(cs, cand{n, f, l})
	}
	if removed {
		if err := s.fs.SyncDir(s.dir); err != nil {
			return nil, fmt.Errorf("store: sync dir: %w", err)
		}
	}
	// Widest first among equal starts, so covering segments are seen first.
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].first != cs[j].first {
			return cs[i].first < cs[j].first
		}
		return cs[i].last > cs[j].last
	})
	var keep []cand
	var stale []string
	for _, c := range cs {
		if n := len(keep); n > 0 && c.last <= keep[n-1].last {
			stale = append(stale, c.name)
			continue
		}
		if n := len(keep); n > 0 && c.first <= keep[n-1].last {
			return nil, fmt.Errorf("store: segments %s and %s overlap without one containing the other", keep[n-1].name, c.name)
		}
		keep = append(keep, c)
	}
	for _, n := range stale {
		if err := s.fs.Remove(path.Join(s.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: remove merged segment %s: %w", n, err)
		}
	}
	if len(stale) > 0 {
		if err := s.fs.SyncDir(s.dir); err != nil {
			return nil, fmt.Errorf("store: sync dir: %w", err)
		}
	}
	var segs []*segment
	for _, c := range keep {
		sg, err := s.openSegment(c.name)
		if err != nil {
			for _, o := range segs {
				o.close()
			}
			return nil, fmt.Errorf("store: %w", err)
		}
		segs = append(segs, sg)
	}
	return segs, nil
}

func (sg *segment) acquire() { sg.refs.Add(1) }

// release drops a reference; the last one closes the file (the name may be
// gone already: an open handle keeps reading the removed file).
func (sg *segment) release() {
	if sg.refs.Add(-1) == 0 {
		sg.close()
	}
}

func (sg *segment) close() {
	if sg.f != nil {
		sg.f.Close()
	}
}

// ---- reading ------------------------------------------------------------

// rgFor returns the index of the row group holding row.
func (sg *segment) rgFor(row int64) int {
	return sort.Search(len(sg.rgs), func(i int) bool { return sg.rgs[i].start+sg.rgs[i].count > row })
}

// keyRangeIdx returns the index range [lo, hi) of keys in [from, to) (to ""
// meaning unbounded).
func (sg *segment) keysBetween(from string, to string, unbounded bool) (int, int) {
	lo := sort.Search(len(sg.keys), func(i int) bool { return sg.keys[i].key >= from })
	hi := len(sg.keys)
	if !unbounded {
		hi = sort.Search(len(sg.keys), func(i int) bool { return sg.keys[i].key >= to })
	}
	return lo, max(lo, hi)
}

// readRows calls fn for rows [a, b) in file order, skipping row groups for
// which skip returns true. fn returns false to stop. With a substring, only
// rows whose data contains it are passed, and a row group's data column is
// searched first so the other columns are decoded only for hits.
func (sg *segment) readRows(a, b int64, skip func(*rgInfo) bool, sub string, bud *budget, fn func(*rawRow) bool) error {
	buf := make([]parquet.Row, min(512, max(b-a, 1)))
	rgsF := sg.pf.RowGroups()
	for gi := sg.rgFor(a); gi < len(sg.rgs) && a < b; gi++ {
		g := &sg.rgs[gi]
		end := min(b, g.start+g.count)
		if skip != nil && skip(g) {
			a = end
			continue
		}
		var stop bool
		var err error
		if sub != "" {
			stop, err = sg.readGroupSub(rgsF[gi], a-g.start, end-g.start, buf, sub, bud, fn)
		} else {
			stop, err = sg.readGroup(rgsF[gi], a-g.start, end-g.start, buf, fn)
		}
		if err != nil {
			return fmt.Errorf("read segment %s row group %d: %w", sg.name, gi, err)
		}
		if stop {
			return nil
		}
		a = end
	}
	return nil
}

// rowRun is a half-open range [a, b) of a segment's rows.
type rowRun struct{ a, b int64 }

// readRuns reads several row runs, in increasing order, with one row reader
// per row group, seeking forward from run to run. A seq-ordered Scan wants a
// short run from every key, and a fresh reader per run decoded each page
// again for every key in it; a forward seek within the page the reader
// holds re-serves that page. With a substring, each run goes through
// readRows, which prunes by the data column first.
func (sg *segment) readRuns(runs []rowRun, skip func(*rgInfo) bool, sub string, bud *budget, fn func(*rawRow) bool) error {
	if sub != "" {
		for _, r := range runs {
			if err := sg.readRows(r.a, r.b, skip, sub, bud, fn); err != nil {
				return err
			}
			if bud != nil && bud.err != nil {
				return nil
			}
		}
		return nil
	}
	buf := make([]parquet.Row, 512)
	rgsF := sg.pf.RowGroups()
	var rr rawRow
	for i := 0; i < len(runs); {
		gi := sg.rgFor(runs[i].a)
		if gi >= len(sg.rgs) {
			return nil
		}
		g := &sg.rgs[gi]
		end := g.start + g.count
		if skip != nil && skip(g) {
			for i < len(runs) && runs[i].b <= end {
				i++
			}
			if i < len(runs) && runs[i].a < end {
				runs[i].a = end // the rest of this run lies in later groups
			}
			continue
		}
		rows := rgsF[gi].Rows()
		for ; i < len(runs) && runs[i].a < end; i++ {
			a, b := runs[i].a, min(runs[i].b, end)
			if err := rows.SeekToRow(a - g.start); err != nil {
				rows.Close()
				return fmt.Errorf("read segment %s row group %d: %w", sg.name, gi, err)
			}
			for a < b {
				n, err := rows.ReadRows(buf[:min(int64(len(buf)), b-a)])
				for j := 0; j < n; j++ {
					sg.fill(&rr, buf[j])
					if !fn(&rr) {
						rows.Close()
						return nil
					}
				}
				a += int64(n)
				if err != nil && !(errors.Is(err, io.EOF) && a >= b) {
					rows.Close()
					if errors.Is(err, io.EOF) {
						err = fmt.Errorf("row group ended at row %d, expected %d", a-g.start, b-g.start)
					}
					return fmt.Errorf("read segment %s row group %d: %w", sg.name, gi, err)
				}
			}
			if runs[i].b > end {
				runs[i].a = end // continue this run in the next group
				break
			}
		}
		rows.Close()
	}
	return nil
}

// maxSubHits: past this many hits in a row group, decoding it whole is
// cheaper than seeking to each hit.
const maxSubHits = 64

func (sg *segment) readGroupSub(rg parquet.RowGroup, a, b int64, buf []parquet.Row, sub string, bud *budget, fn func(*rawRow) bool) (bool, error) {
	hits, ok, err := sg.dataHits(rg, a, b, []byte(sub), bud)
	if err != nil {
		return false, err
	}
	if bud != nil && bud.err != nil {
		return true, nil
	}
	filter := func(rr *rawRow) bool {
		if !bytes.Contains(rr.data, []byte(sub)) {
			return true
		}
		return fn(rr)
	}
	if !ok || len(hits) > maxSubHits {
		return sg.readGroup(rg, a, b, buf, filter)
	}
	for _, h := range hits {
		stop, err := sg.readGroup(rg, h, h+1, buf, filter)
		if stop || err != nil {
			return stop, err
		}
	}
	return false, nil
}

// dataHits returns the rows in [a, b) of a row group whose data contains
// sub, decoding only the data column. ok is false when the column's pages
// are not in the plain layout this reads (then the caller decodes rows).
// Each value searched counts against bud (nil: no budget); when it runs
// out, dataHits stops and bud.err says why.
func (sg *segment) dataHits(rg parquet.RowGroup, a, b int64, sub []byte, bud *budget) (hits []int64, ok bool, err error) {
	pages := rg.ColumnChunks()[sg.col.data].Pages()
	defer pages.Close()
	if err := pages.SeekToRow(a); err != nil {
		return nil, false, err
	}
	row := a
	for row < b {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false, err
		}
		if p.Dictionary() != nil || p.NumNulls() != 0 || p.NumValues() != p.NumRows() {
			parquet.Release(p)
			return nil, false, nil
		}
		vals := p.Data()
		data, offs := vals.ByteArray()
		n := int(p.NumValues())
		if len(offs) < n+1 {
			parquet.Release(p)
			return nil, false, nil
		}
		for i := 0; i < n && row < b; i++ {
			if bud != nil && !bud.step() {
				parquet.Release(p)
				return hits, true, nil
			}
			if bytes.Contains(data[offs[i]:offs[i+1]], sub) {
				hits = append(hits, row)
			}
			row++
		}
		parquet.Release(p)
	}
	return hits, true, nil
}

func (sg *segment) readGroup(rg parquet.RowGroup, a, b int64, buf []parquet.Row, fn func(*rawRow) bool) (bool, error) {
	rows := rg.Rows()
	defer rows.Close()
	if a > 0 {
		if err := rows.SeekToRow(a); err != nil {
			return false, err
		}
	}
	var rr rawRow
	for a < b {
		want := min(int64(len(buf)), b-a)
		n, err := rows.ReadRows(buf[:want])
		for i := 0; i < n; i++ {
			sg.fill(&rr, buf[i])
			if !fn(&rr) {
				return true, nil
			}
		}
		a += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) && a >= b {
				break
			}
			if errors.Is(err, io.EOF) {
				return false, fmt.Errorf("row group ended at row %d, expected %d", a, b)
			}
			return false, err
		}
	}
	return false, nil
}

// rawRow is a decoded parquet row whose strings still alias the reader's
// buffers; rowCopier.row copies them out for a row that passed the filters.
type rawRow struct {
	key, source, cluster, data []byte
	seq, epoch                 int64
	level, attempt             int32
}

func (sg *segment) fill(rr *rawRow, r parquet.Row) {
	c := &sg.col
	rr.key = r[c.key].ByteArray()
	rr.seq = r[c.seq].Int64()
	rr.epoch = r[c.epoch].Int64()
	rr.level = r[c.level].Int32()
	rr.attempt = r[c.attempt].Int32()
	rr.source = r[c.source].ByteArray()
	rr.cluster = r[c.cluster].ByteArray()
	rr.data = r[c.data].ByteArray()
}

// rowCopier copies decoded rows out of a reader's buffers, reusing the
// previous row's key, source and cluster string when they are the same:
// rows come key by key, so most rows allocate only their data.
type rowCopier struct{ key, source, cluster string }

func (c *rowCopier) row(rr *rawRow) Row {
	if string(rr.key) != c.key { // compared without a copy
		c.key = string(rr.key)
	}
	if string(rr.source) != c.source {
		c.source = string(rr.source)
	}
	if string(rr.cluster) != c.cluster {
		c.cluster = string(rr.cluster)
	}
	return Row{Seq: rr.seq, Key: c.key, Source: c.source, Data: string(rr.data), EpochMS: rr.epoch, AttemptID: rr.attempt, Level: rr.level, Cluster: c.cluster}
}
