package store

import (
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

// fillWindowAttrs sets the attributes of out[slot[i]] from row need[i] of a
// row group, reading the map's name and value columns (which share their
// levels: one entry per pair, a null entry for a row without attributes).
func (sg *segment) fillWindowAttrs(cols []parquet.ColumnChunk, need []int64, slot []int32, out []Row) error {
	names := attrCursor{pages: cols[sg.col.attrName].Pages()}
	defer names.close()
	values := attrCursor{pages: cols[sg.col.attrValue].Pages()}
	defer values.close()
	var buf []byte
	var last Attributes
	var pair []parquet.Value
	for j, row := range need {
		n, err := names.at(row)
		if err != nil {
			return fmt.Errorf("attribute names: %w", err)
		}
		v, err := values.at(row)
		if err != nil {
			return fmt.Errorf("attribute values: %w", err)
		}
		if len(n) != len(v) {
			return fmt.Errorf("row %d has %d attribute names and %d values", row, len(n), len(v))
		}
		pair = append(append(pair[:0], n...), v...)
		buf = appendAttrs(buf[:0], pair)
		if string(buf) != string(last) {
			last = Attributes(buf)
		}
		out[slot[j]].Attributes = last
	}
	return nil
}

// attrCursor reads one repeated column chunk at ascending rows.
type attrCursor struct {
	pages      parquet.Pages
	start, end int64 // rows of vals: [start, end)
	vals       []parquet.Value
	rowAt      []int32 // rowAt[k]: index in vals where row start+k begins; one more at the end
	loaded     bool
}

// at returns row's entries (names or values), a single null entry for a row
// without attributes.
func (c *attrCursor) at(row int64) ([]parquet.Value, error) {
	if !c.loaded || row < c.start || row >= c.end {
		if err := c.load(row); err != nil {
			return nil, err
		}
	}
	k := row - c.start
	return c.vals[c.rowAt[k]:c.rowAt[k+1]], nil
}

func (c *attrCursor) load(row int64) error {
	if err := c.pages.SeekToRow(row); err != nil {
		return err
	}
	p, err := c.pages.ReadPage()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("column ended before row %d", row)
		}
		return err
	}
	// The values are copied out of the page (Value.Clone below), so it is
	// returned to the pool at once.
	defer parquet.Release(p)
	c.vals = c.vals[:0]
	c.rowAt = c.rowAt[:0]
	vr := p.Values()
	buf := make([]parquet.Value, 256)
	for {
		n, err := vr.ReadValues(buf)
		for _, v := range buf[:n] {
			if v.RepetitionLevel() == 0 {
				c.rowAt = append(c.rowAt, int32(len(c.vals)))
			}
			c.vals = append(c.vals, v.Clone())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if len(c.rowAt) == 0 || c.rowAt[0] != 0 {
		return fmt.Errorf("page at row %d does not start a row", row)
	}
	c.rowAt = append(c.rowAt, int32(len(c.vals)))
	c.start, c.end, c.loaded = row, row+int64(len(c.rowAt)-1), true
	return nil
}

func (c *attrCursor) close() { c.pages.Close() }
