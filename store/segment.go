package store

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
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
//	data       BYTE_ARRAY (UTF8)  delta byte array: each line as its shared
//	                              prefix with the line before (same key)
//	                              and the rest; zstd does the work
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
	final       bool  // segMeta.Final
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
	// attrs summarizes the group's attribute names from the parquet
	// column statistics (not stored in finelog.rowgroups): none means no
	// row has any, else every name is within [attrMin, attrMax].
	attrs attrStats
}

type attrStats struct {
	known            bool // false: no statistics, nothing can be pruned
	none             bool
	attrMin, attrMax string
}

// colIndex holds each column's index. attrName and attrValue are -1 in a
// segment written before rows had attributes. They are the last columns,
// so a parquet.Row holds every other column at its index.
type colIndex struct {
	key, seq, epoch, level, attempt, source, cluster, data int
	attrName, attrValue                                    int
}

// segRow is the parquet schema of a segment row.
type segRow struct {
	Key       string `parquet:"key,dict"`
	Seq       int64  `parquet:"seq,delta"`
	EpochMS   int64  `parquet:"epoch_ms,delta"`
	Level     int32  `parquet:"level"`
	AttemptID int32  `parquet:"attempt_id"`
	Source    string `parquet:"source,dict"`
	Cluster   string `parquet:"cluster,dict"`
	// Data is DELTA_BYTE_ARRAY: a key's rows sit together in seq order, and
	// a line shares a prefix with the one before it (timestamp digits, the
	// task's name), so each row stores that prefix's length and its suffix.
	// On the bench's lines that settles at ~1.1 B/row less than PLAIN, at
	// the same read and a little less write CPU (docs/store.md, "Segments").
	// PLAIN did better than parquet-go's DELTA_LENGTH_BYTE_ARRAY, which
	// keeps every byte and only moves the lengths into a block of their
	// own. Segments written PLAIN before read as they are.
	Data string `parquet:"data,delta"`
	// Attributes is a plain parquet MAP so DuckDB and other engines read it
	// (attributes['trace_id']); it must stay the last field (see colIndex).
	Attributes map[string]string `parquet:"attributes"`
}

const (
	segPrefix, segSuffix = "seg-", ".parquet"
	// rowGroupRows trades pruning granularity (a substring hit decodes one
	// whole row group) against per-group overhead and compression.
	rowGroupRows = 16384
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
	// Final: a merge wrote the segment for the final tier (its inputs
	// reached half the target size). Compaction never picks it again, even
	// when the better codec made it smaller than half the target.
	Final bool `json:"final,omitempty"`
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
