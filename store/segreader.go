package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"

	"github.com/parquet-go/parquet-go"

	"github.com/finelog/finelog/internal/vfs"
)

// Opening segments (and resolving leftovers at recovery) and reading their
// rows: by row range, by runs of ranges, and through the data column for a
// substring.

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
	sg.written, sg.final = m.Written, m.Final
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
	sg.col.attrName, sg.col.attrValue = -1, -1
	if name, ok := schema.Lookup("attributes", "key_value", "key"); ok {
		value, ok := schema.Lookup("attributes", "key_value", "value")
		if !ok || value.ColumnIndex != name.ColumnIndex+1 || name.ColumnIndex != len(schema.Columns())-2 {
			return nil, errors.New("attributes column is not a map of strings in the last columns")
		}
		sg.col.attrName, sg.col.attrValue = name.ColumnIndex, value.ColumnIndex
		loadAttrStats(sg, pf)
	} else {
		for i := range sg.rgs {
			sg.rgs[i].attrs = attrStats{known: true, none: true}
		}
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
			// Retention deletes whole segments, but a follower's floor is
			// its primary's (ApplyFloor), which need not fall where the
			// follower's own flushes cut segments. Reads skip the rows at
			// or below the floor.
			s.log.Debug("recovery: segment straddles the retention floor; its rows at or below the floor are not read", "segment", n, "floor_seq", floor)
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
	// attrs is the row's attributes re-encoded (canonical) into a buffer
	// the next fill reuses.
	attrs          []byte
	seq, epoch     int64
	level, attempt int32
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
	rr.attrs = rr.attrs[:0]
	if c.attrName >= 0 {
		rr.attrs = appendAttrs(rr.attrs, r[c.attrName:])
	}
}

// appendAttrs encodes the attribute map of a parquet row's tail (the name
// values, then the value values) canonically onto dst.
func appendAttrs(dst []byte, vals []parquet.Value) []byte {
	n := 0
	for n < len(vals) && vals[n].Column() == vals[0].Column() {
		n++
	}
	if n == 0 || vals[0].IsNull() || 2*n > len(vals) {
		return dst
	}
	names, values := vals[:n], vals[n:2*n]
	sorted := true
	for i := 1; i < n; i++ {
		if string(names[i-1].ByteArray()) >= string(names[i].ByteArray()) {
			sorted = false
			break
		}
	}
	if !sorted {
		pairs := make([]Attribute, n)
		for i := range names {
			pairs[i] = Attribute{string(names[i].ByteArray()), string(values[i].ByteArray())}
		}
		sort.Slice(pairs, func(i, j int) bool { return pairs[i].Name < pairs[j].Name })
		for _, p := range pairs {
			dst = binary.AppendUvarint(dst, uint64(len(p.Name)))
			dst = append(dst, p.Name...)
			dst = binary.AppendUvarint(dst, uint64(len(p.Value)))
			dst = append(dst, p.Value...)
		}
		return dst
	}
	for i := range names {
		k, v := names[i].ByteArray(), values[i].ByteArray()
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// loadAttrStats fills each row group's attrStats from the attribute name
// column's chunk statistics, when the writer recorded them.
func loadAttrStats(sg *segment, pf *parquet.File) {
	md := pf.Metadata()
	for gi := range sg.rgs {
		if gi >= len(md.RowGroups) {
			return
		}
		cols := md.RowGroups[gi].Columns
		if sg.col.attrName >= len(cols) {
			return
		}
		st := cols[sg.col.attrName].MetaData.Statistics
		g := &sg.rgs[gi]
		switch {
		case st.NullCount == g.count:
			g.attrs = attrStats{known: true, none: true}
		case len(st.MinValue) > 0 && len(st.MaxValue) > 0:
			g.attrs = attrStats{known: true, attrMin: string(st.MinValue), attrMax: string(st.MaxValue)}
		}
	}
}

// mayHaveAttrs reports whether some row of a group with these statistics
// could carry every name of want.
func (s *attrStats) mayHaveAttrs(want Attributes) bool {
	if want == "" || !s.known {
		return true
	}
	if s.none {
		return false
	}
	for k := range want.All() {
		if k < s.attrMin || k > s.attrMax {
			return false
		}
	}
	return true
}

// rowCopier copies decoded rows out of a reader's buffers, reusing the
// previous row's key, source and cluster string when they are the same:
// rows come key by key, so most rows allocate only their data.
type rowCopier struct {
	key, source, cluster string
	attrs                Attributes
}

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
	if string(rr.attrs) != string(c.attrs) {
		c.attrs = Attributes(rr.attrs)
	}
	return Row{Seq: rr.seq, Key: c.key, Source: c.source, Data: string(rr.data), EpochMS: rr.epoch, AttemptID: rr.attempt, Level: rr.level, Cluster: c.cluster, Attributes: c.attrs}
}
