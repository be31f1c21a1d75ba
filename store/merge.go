package store

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/parquet-go/parquet-go"
)

// mergeIter merges segments into one (key, seq) stream for compaction.
//
// A merge's inputs are adjacent segments in seq order, so for any key all
// of its rows in one input come before all of its rows in the next: the
// merged stream is, key by key, each input's run of that key in input
// order. The iterator compares keys once per run, not (key, seq) per row,
// and reads each input front to back, column by column (segCursor).
type mergeIter struct {
	ins []*segCursor
	cur int    // input whose run of key is being streamed; -1 between keys
	key string // the key being merged
	out Row
}

// mergeChunk is how many rows a cursor on the row-reader path decodes at a
// time.
const mergeChunk = 256

// newMergeIter checks what the key-run merge relies on: inputs in seq
// order with disjoint ranges, each key index tiling its segment's rows.
func newMergeIter(run []*segment) (*mergeIter, error) {
	m := &mergeIter{cur: -1}
	for i, sg := range run {
		if i > 0 && run[i-1].last >= sg.first {
			return nil, fmt.Errorf("merge: segment %s does not follow %s in seq order", sg.name, run[i-1].name)
		}
		var next int64
		for ki := range sg.keys {
			k := &sg.keys[ki]
			if k.start != next || k.count <= 0 || (ki > 0 && sg.keys[ki-1].key >= k.key) {
				return nil, fmt.Errorf("merge: segment %s: key index does not list its rows in key order", sg.name)
			}
			next += k.count
		}
		if next != sg.rows {
			return nil, fmt.Errorf("merge: segment %s: key index covers %d of %d rows", sg.name, next, sg.rows)
		}
		m.ins = append(m.ins, &segCursor{sg: sg, gi: -1})
	}
	return m, nil
}

// close releases the open readers; a merge calls it however it ends.
func (m *mergeIter) close() {
	for _, c := range m.ins {
		c.closeGroup()
	}
}

// next returns the smallest (key, seq) row of all inputs, or nil at the end.
// The row is valid until the next call; its strings stay valid after.
func (m *mergeIter) next() (*Row, error) {
	for {
		if m.cur >= 0 {
			c := m.ins[m.cur]
			if c.left > 0 {
				if err := c.read(&m.out); err != nil {
					return nil, err
				}
				if c.left--; c.left == 0 {
					c.ki++
				}
				return &m.out, nil
			}
			// This input's run is done: the next input with the same key.
			for m.cur++; m.cur < len(m.ins); m.cur++ {
				if c := m.ins[m.cur]; c.ki < len(c.sg.keys) && c.sg.keys[c.ki].key == m.key {
					c.left = c.sg.keys[c.ki].count
					break
				}
			}
			if m.cur < len(m.ins) {
				continue
			}
		}
		// The next key: the smallest current key of all inputs, streamed
		// from the first input that has it.
		m.cur = -1
		for i, c := range m.ins {
			if c.ki >= len(c.sg.keys) {
				continue
			}
			if k := c.sg.keys[c.ki].key; m.cur < 0 || k < m.key {
				m.cur, m.key = i, k
			}
		}
		if m.cur < 0 {
			return nil, nil
		}
		c := m.ins[m.cur]
		c.left = c.sg.keys[c.ki].count
	}
}

// segCursor reads one merge input's rows in file order.
type segCursor struct {
	sg   *segment
	ki   int   // key of the next row (index in sg.keys)
	left int64 // rows of key ki the merge has yet to take from this input
	row  int64 // next row of the segment

	// The column path: cursors over the open row group gi's columns.
	gi                int
	gEnd              int64 // end row of group gi
	seq, epoch, level columnCursor
	attempt, source   columnCursor
	cluster, data     columnCursor
	names, values     *attrCursor // nil: group gi has no attributes
	arena             []byte      // copy of the data page the rows' strings point into
	arenaAt           int64       // the data page's first row
	lastSource        string
	lastCluster       string
	lastAttrs         Attributes
	attrBuf           []byte
	pair              []parquet.Value

	// The row-reader path, taken from the first row whose page layout the
	// column cursors do not read.
	rowPath bool
	rd      parquet.Rows
	rdLeft  int64 // rows of the open group not yet read
	rdGroup int   // next row group to open
	buf     []parquet.Row
	rows    []Row
	pos     int
	cp      rowCopier
}

func (c *segCursor) closeGroup() {
	if c.gi >= 0 && !c.rowPath {
		for _, cc := range []*columnCursor{&c.seq, &c.epoch, &c.level, &c.attempt, &c.source, &c.cluster, &c.data} {
			cc.close()
		}
		if c.names != nil {
			c.names.close()
			c.values.close()
			c.names, c.values = nil, nil
		}
	}
	if c.rd != nil {
		c.rd.Close()
		c.rd = nil
	}
}

// read decodes the next row of the segment into r.
func (c *segCursor) read(r *Row) error {
	if !c.rowPath {
		ok, err := c.readColumns(r)
		if err != nil || ok {
			return err
		}
		if err := c.toRowPath(); err != nil {
			return err
		}
	}
	if c.pos >= len(c.rows) {
		if err := c.fill(); err != nil {
			return err
		}
		if len(c.rows) == 0 {
			return fmt.Errorf("read segment %s: ended at row %d of %d", c.sg.name, c.row, c.sg.rows)
		}
	}
	*r = c.rows[c.pos]
	c.pos++
	c.row++
	return nil
}

// readColumns reads row c.row column by column; false (nil error) when a
// page's layout is not one the column cursors read.
func (c *segCursor) readColumns(r *Row) (bool, error) {
	sg := c.sg
	if c.gi < 0 || c.row >= c.gEnd {
		c.closeGroup()
		c.gi++
		if c.gi >= len(sg.rgs) {
			return false, fmt.Errorf("read segment %s: no row group holds row %d", sg.name, c.row)
		}
		g := &sg.rgs[c.gi]
		c.gEnd = g.start + g.count
		cols := sg.pf.RowGroups()[c.gi].ColumnChunks()
		cs := &sg.col
		c.seq, c.epoch, c.level = columnCursor{pages: cols[cs.seq].Pages()}, columnCursor{pages: cols[cs.epoch].Pages()}, columnCursor{pages: cols[cs.level].Pages()}
		c.attempt, c.source = columnCursor{pages: cols[cs.attempt].Pages()}, columnCursor{pages: cols[cs.source].Pages()}
		c.cluster, c.data = columnCursor{pages: cols[cs.cluster].Pages()}, columnCursor{pages: cols[cs.data].Pages()}
		c.arena, c.arenaAt = nil, -1
		if cs.attrName >= 0 && !(g.attrs.known && g.attrs.none) {
			c.names, c.values = &attrCursor{pages: cols[cs.attrName].Pages()}, &attrCursor{pages: cols[cs.attrValue].Pages()}
		}
	}
	rel := c.row - sg.rgs[c.gi].start
	var err error
	wrap := func(col string) error {
		return fmt.Errorf("read segment %s row group %d %s: %w", sg.name, c.gi, col, err)
	}
	var p *pageView
	var i int
	if p, i, err = c.seq.at(rel); err != nil {
		return false, wrap("seq")
	} else if p.kind != parquet.Int64 {
		return false, nil
	}
	seq := p.i64[i]
	if p, i, err = c.epoch.at(rel); err != nil {
		return false, wrap("epoch_ms")
	} else if p.kind != parquet.Int64 {
		return false, nil
	}
	epoch := p.i64[i]
	if p, i, err = c.level.at(rel); err != nil {
		return false, wrap("level")
	} else if p.kind != parquet.Int32 || p.i32 == nil {
		return false, nil
	}
	level := p.i32[i]
	if p, i, err = c.attempt.at(rel); err != nil {
		return false, wrap("attempt_id")
	} else if p.kind != parquet.Int32 || p.i32 == nil {
		return false, nil
	}
	attempt := p.i32[i]
	if p, i, err = c.source.at(rel); err != nil {
		return false, wrap("source")
	}
	b, ok := p.bytesAt(i)
	if !ok {
		return false, nil
	}
	if string(b) != c.lastSource {
		c.lastSource = string(b)
	}
	if p, i, err = c.cluster.at(rel); err != nil {
		return false, wrap("cluster")
	}
	if b, ok = p.bytesAt(i); !ok {
		return false, nil
	}
	if string(b) != c.lastCluster {
		c.lastCluster = string(b)
	}
	if p, i, err = c.data.at(rel); err != nil {
		return false, wrap("data")
	}
	if p.dict != nil || p.kind != parquet.ByteArray {
		return false, nil
	}
	if c.data.start != c.arenaAt {
		// The page goes back to parquet's pool when the cursor moves on,
		// and the rows wait in the writer's buffer for up to a row group:
		// their strings point into one copy of the page, not a copy each.
		c.arena, c.arenaAt = append([]byte(nil), p.data...), c.data.start
	}
	data := ""
	if a, e := p.offs[i], p.offs[i+1]; e > a {
		data = unsafe.String(&c.arena[a], int(e-a))
	}
	attrs := Attributes("")
	if c.names != nil {
		n, err := c.names.at(rel)
		if err != nil {
			return false, fmt.Errorf("read segment %s row group %d attribute names: %w", sg.name, c.gi, err)
		}
		v, err := c.values.at(rel)
		if err != nil {
			return false, fmt.Errorf("read segment %s row group %d attribute values: %w", sg.name, c.gi, err)
		}
		if len(n) != len(v) {
			return false, fmt.Errorf("read segment %s row group %d: row %d has %d attribute names and %d values", sg.name, c.gi, rel, len(n), len(v))
		}
		c.pair = append(append(c.pair[:0], n...), v...)
		c.attrBuf = appendAttrs(c.attrBuf[:0], c.pair)
		if string(c.attrBuf) != string(c.lastAttrs) {
			c.lastAttrs = Attributes(c.attrBuf)
		}
		attrs = c.lastAttrs
	}
	*r = Row{Key: sg.keys[c.ki].key, Seq: seq, EpochMS: epoch, Level: level, AttemptID: attempt,
		Source: c.lastSource, Cluster: c.lastCluster, Data: data, Attributes: attrs}
	c.row++
	return true, nil
}

// toRowPath switches the cursor to parquet's row reader from row c.row on.
func (c *segCursor) toRowPath() error {
	gi := c.gi
	c.closeGroup()
	c.rowPath = true
	c.buf = make([]parquet.Row, mergeChunk)
	g := &c.sg.rgs[gi]
	c.rd = c.sg.pf.RowGroups()[gi].Rows()
	if err := c.rd.SeekToRow(c.row - g.start); err != nil {
		return fmt.Errorf("read segment %s row group %d: seek to row %d: %w", c.sg.name, gi, c.row-g.start, err)
	}
	c.rdLeft = g.start + g.count - c.row
	c.rdGroup = gi + 1
	return nil
}

// fill decodes the row-reader path's next chunk into c.rows; at the end of
// the segment c.rows is left empty.
func (c *segCursor) fill() error {
	c.rows, c.pos = c.rows[:0], 0
	for len(c.rows) == 0 {
		if c.rd == nil {
			if c.rdGroup >= len(c.sg.rgs) {
				return nil
			}
			c.rd = c.sg.pf.RowGroups()[c.rdGroup].Rows()
			c.rdLeft = c.sg.rgs[c.rdGroup].count
			c.rdGroup++
		}
		n, err := c.rd.ReadRows(c.buf[:min(int64(len(c.buf)), c.rdLeft)])
		c.rdLeft -= int64(n)
		for i := 0; i < n; i++ {
			var rr rawRow
			c.sg.fill(&rr, c.buf[i])
			c.rows = append(c.rows, c.cp.row(&rr))
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read segment %s row group %d: %w", c.sg.name, c.rdGroup-1, err)
		}
		if c.rdLeft == 0 {
			c.rd.Close()
			c.rd = nil
		} else if n == 0 {
			return fmt.Errorf("read segment %s row group %d: ended %d rows early", c.sg.name, c.rdGroup-1, c.rdLeft)
		}
	}
	return nil
}
