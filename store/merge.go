package store

import (
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

// mergeIter merges segments (each sorted by key, seq) into one (key, seq)
// stream for compaction. Each input is streamed a few hundred rows at a
// time through one open row reader per row group, so a merge holds
// mergeChunk rows per input, not whole row groups: with a dozen inputs the
// difference was ~60 MiB of a daemon's peak heap.
type mergeIter struct {
	ins []*segCursor
	out Row
}

// mergeChunk is how many rows a cursor decodes at a time.
const mergeChunk = 256

type segCursor struct {
	sg   *segment
	gi   int          // next row group to open
	rd   parquet.Rows // open reader of row group gi-1, nil between groups
	left int64        // rows of the open group not yet read
	buf  []parquet.Row
	rows []Row
	pos  int
	cp   rowCopier
}

func newMergeIter(run []*segment) *mergeIter {
	m := &mergeIter{}
	for _, sg := range run {
		m.ins = append(m.ins, &segCursor{sg: sg, buf: make([]parquet.Row, mergeChunk)})
	}
	return m
}

// close releases the open row readers; a merge calls it however it ends.
func (m *mergeIter) close() {
	for _, c := range m.ins {
		c.closeGroup()
	}
}

func (c *segCursor) closeGroup() {
	if c.rd != nil {
		c.rd.Close()
		c.rd = nil
	}
}

// fill decodes the cursor's next chunk into c.rows; at the end of the
// segment c.rows is left empty.
func (c *segCursor) fill() error {
	c.rows, c.pos = c.rows[:0], 0
	for len(c.rows) == 0 {
		if c.rd == nil {
			if c.gi >= len(c.sg.rgs) {
				return nil
			}
			c.rd = c.sg.pf.RowGroups()[c.gi].Rows()
			c.left = c.sg.rgs[c.gi].count
			c.gi++
		}
		n, err := c.rd.ReadRows(c.buf[:min(int64(len(c.buf)), c.left)])
		c.left -= int64(n)
		for i := 0; i < n; i++ {
			var rr rawRow
			c.sg.fill(&rr, c.buf[i])
			c.rows = append(c.rows, c.cp.row(&rr))
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read segment %s row group %d: %w", c.sg.name, c.gi-1, err)
		}
		if c.left == 0 {
			c.closeGroup()
		} else if n == 0 {
			return fmt.Errorf("read segment %s row group %d: ended %d rows early", c.sg.name, c.gi-1, c.left)
		}
	}
	return nil
}

// next returns the smallest (key, seq) row of all inputs, or nil at the end.
// The row is valid until the next call.
func (m *mergeIter) next() (*Row, error) {
	var best *segCursor
	for _, c := range m.ins {
		if c.pos >= len(c.rows) {
			if c.rd == nil && c.gi >= len(c.sg.rgs) {
				continue // exhausted
			}
			if err := c.fill(); err != nil {
				return nil, err
			}
			if len(c.rows) == 0 {
				continue
			}
		}
		if best == nil {
			best = c
			continue
		}
		r, b := &c.rows[c.pos], &best.rows[best.pos]
		if r.Key < b.Key || (r.Key == b.Key && r.Seq < b.Seq) {
			best = c
		}
	}
	if best == nil {
		return nil, nil
	}
	m.out = best.rows[best.pos]
	best.pos++
	return &m.out, nil
}
