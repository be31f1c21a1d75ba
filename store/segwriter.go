package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"

	"github.com/finelog/finelog/internal/vfs"
)

// Writing segments: rows in (key, seq) order streamed into parquet row
// groups, footer indexes, then tmp → fsync → rename → dir fsync.

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
		// Page statistics of the data column are two whole lines (min and
		// max) in every page header and nothing reads them: the trigram
		// bitmaps prune substring reads. They cost ~0.6 B/row on disk.
		parquet.SkipPageStatistics("data"),
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
	// The buffer's slots keep their attribute maps from the previous row
	// group: a flush of a large memtable with attributes would otherwise
	// allocate a map per row.
	n := len(sw.buf)
	if n < cap(sw.buf) {
		sw.buf = sw.buf[:n+1]
	} else {
		sw.buf = append(sw.buf, segRow{})
	}
	m := sw.buf[n].Attributes
	clear(m)
	for k, v := range r.Attributes.All() {
		if m == nil {
			m = make(map[string]string, 8)
		}
		m[k] = v
	}
	sw.buf[n] = segRow{Key: r.Key, Seq: r.Seq, EpochMS: r.EpochMS, Level: r.Level, AttemptID: r.AttemptID, Source: r.Source, Cluster: r.Cluster, Data: r.Data, Attributes: m}
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
	for i := range sw.buf {
		// Drop the strings (they may alias memtable blocks or a merge's
		// buffers) but keep the map for the next group.
		m := sw.buf[i].Attributes
		clear(m)
		sw.buf[i] = segRow{Attributes: m}
	}
	sw.buf = sw.buf[:0]
	return nil
}

// finish writes the footer and fsyncs the file.
func (sw *segWriter) finish(o segOut) error {
	if err := sw.flushGroup(); err != nil {
		return err
	}
	meta, _ := json.Marshal(segMeta{First: sw.first, Last: sw.last, Rows: sw.rows, MinEpoch: sw.minE, MaxEpoch: sw.maxE, Written: o.writtenMS, Final: o.final})
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
	final     bool // segMeta.Final
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
	if err := sw.finish(o); err != nil {
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
