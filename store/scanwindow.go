package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/parquet-go/parquet-go"
)

// decodeSeqWindow returns the rows of sg with seqs lo..hi (dense: rows[i].Seq
// == lo+i), decoded column by column instead of row by row.
//
// A seq window takes a short run from every key, and each run's data lives
// in a 256 KiB page holding ~1500 rows of that key: the page decode is the
// cost. Decoding through parquet's row reader also turned every row of the
// key index's 256-row sample slop into a parquet.Row, and then re-sorted the
// window by seq. Here the cheap seq column (one page per row group) is
// decoded first for the candidate runs, which tells exactly which rows are
// in the window and where each goes in the output; the other columns are
// then read only at those rows, each page at most once per window, and rows
// land directly at their seq's slot (no sort).
//
// ok is false when a page has a layout this does not read (nulls or
// repeated values in a flat column); the caller then falls back to the row
// reader.
func (sg *segment) decodeSeqWindow(ctx context.Context, lo, hi int64) (rows []Row, ok bool, err error) {
	if lo > hi {
		return nil, true, nil
	}
	// Candidate row runs per key, in file order (keys are sorted, so their
	// ranges are too): a superset of the window's rows, from the samples.
	type run struct {
		ki   int
		a, b int64
	}
	var runs []run
	for ki := range sg.keys {
		k := &sg.keys[ki]
		if k.maxSeq < lo || k.minSeq > hi {
			continue
		}
		a, b := k.firstRowAfter(lo-1), k.endRowUpTo(hi)
		if a < b {
			runs = append(runs, run{ki, a, b})
		}
	}
	rgsF := sg.pf.RowGroups()
	out := make([]Row, hi-lo+1)
	filled := int64(0)
	var need []int64 // rows of the current group in the window, ascending
	var slot []int32 // need[i]'s index in out
	if len(runs) == 0 {
		return nil, false, fmt.Errorf("segment %s: no key holds seqs %d..%d", sg.name, lo, hi)
	}
	ri := 0
	for gi := sg.rgFor(runs[0].a); gi < len(sg.rgs) && ri < len(runs); gi++ {
		g := &sg.rgs[gi]
		gEnd := g.start + g.count
		if runs[ri].a >= gEnd {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		if g.maxSeq < lo || g.minSeq > hi {
			// Skip the runs' parts in this group.
			for ri < len(runs) && runs[ri].b <= gEnd {
				ri++
			}
			if ri < len(runs) && runs[ri].a < gEnd {
				runs[ri].a = gEnd
			}
			continue
		}
		cols := rgsF[gi].ColumnChunks()
		need, slot = need[:0], slot[:0]
		seqs := columnCursor{pages: cols[sg.col.seq].Pages()}
		for ri < len(runs) && runs[ri].a < gEnd {
			r := &runs[ri]
			key := sg.keys[r.ki].key
			end := min(r.b, gEnd)
			for row := r.a; row < end; row++ {
				p, i, err := seqs.at(row - g.start)
				if err != nil {
					seqs.close()
					return nil, false, fmt.Errorf("read segment %s row group %d seq: %w", sg.name, gi, err)
				}
				if p.kind != parquet.Int64 {
					seqs.close()
					return nil, false, nil
				}
				seq := p.i64[i]
				if seq < lo || seq > hi {
					continue
				}
				s := &out[seq-lo]
				if s.Seq != 0 {
					seqs.close()
					return nil, false, fmt.Errorf("segment %s: seq %d appears twice", sg.name, seq)
				}
				s.Seq, s.Key = seq, key
				need = append(need, row-g.start)
				slot = append(slot, int32(seq-lo))
			}
			if r.b > gEnd {
				r.a = gEnd // the rest of this run lies in later groups
				break
			}
			ri++
		}
		seqs.close()
		if len(need) == 0 {
			continue
		}
		filled += int64(len(need))
		if ok, err := sg.fillRows(cols, gi, g, need, slot, out); !ok || err != nil {
			return nil, false, err
		}
	}
	if filled != hi-lo+1 {
		return nil, false, fmt.Errorf("segment %s: seqs %d..%d should be dense, read %d rows", sg.name, lo, hi, filled)
	}
	return out, true, nil
}

// fillWindowColumns sets every column but seq and key of out[slot[i]] from
// row need[i] of a row group.
func (sg *segment) fillWindowColumns(cols []parquet.ColumnChunk, need []int64, slot []int32, out []Row) (bool, error) {
	c := &sg.col
	for _, col := range []int{c.epoch, c.level, c.attempt, c.source, c.cluster, c.data} {
		cur := columnCursor{pages: cols[col].Pages()}
		var last string // dictionary columns repeat: share the string
		for j, row := range need {
			p, i, err := cur.at(row)
			if err != nil {
				cur.close()
				return false, err
			}
			r := &out[slot[j]]
			switch col {
			case c.epoch:
				if p.kind != parquet.Int64 {
					cur.close()
					return false, nil
				}
				r.EpochMS = p.i64[i]
			case c.level, c.attempt:
				if p.kind != parquet.Int32 {
					cur.close()
					return false, nil
				}
				if col == c.level {
					r.Level = p.i32[i]
				} else {
					r.AttemptID = p.i32[i]
				}
			default:
				b, ok := p.bytesAt(i)
				if !ok {
					cur.close()
					return false, nil
				}
				var s string
				if col == c.data {
					s = p.str(i, need[j:], cur.start, cur.end)
				} else {
					if string(b) != last {
						last = string(b)
					}
					s = last
				}
				switch col {
				case c.source:
					r.Source = s
				case c.cluster:
					r.Cluster = s
				default:
					r.Data = s
				}
			}
		}
		cur.close()
	}
	return true, nil
}

// columnCursor reads one column chunk at ascending rows, decoding each page
// it lands on once.
type columnCursor struct {
	pages      parquet.Pages
	start, end int64 // rows of the current page: [start, end)
	p          pageView
	loaded     bool
	page       parquet.Page // released when the cursor moves on: every value taken from it was copied
}

// pageView is a decoded page's values in the typed form they are read in.
type pageView struct {
	kind  parquet.Kind
	i64   []int64
	i32   []int32
	data  []byte
	offs  []uint32
	dict  parquet.Dictionary
	idx   []int32
	arena []byte // copies of data values handed out as strings (str)
	used  int    // prefix of arena handed out
}

func (c *columnCursor) at(row int64) (*pageView, int, error) {
	if c.loaded && row >= c.start && row < c.end {
		return &c.p, int(row - c.start), nil
	}
	if err := c.pages.SeekToRow(row); err != nil {
		return nil, 0, err
	}
	c.release()
	p, err := c.pages.ReadPage()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("column ended before row %d", row)
		}
		return nil, 0, err
	}
	c.page = p
	if p.NumNulls() != 0 || p.NumValues() != p.NumRows() || p.NumRows() == 0 {
		// Nulls or repeated values: not this reader's layout.
		c.p, c.loaded = pageView{kind: -1}, true
		c.start, c.end = row, row+max(p.NumRows(), 1)
		return &c.p, 0, nil
	}
	c.start, c.end, c.loaded = row, row+p.NumRows(), true
	c.p = pageView{kind: p.Type().Kind()}
	vals := p.Data()
	if d := p.Dictionary(); d != nil {
		c.p.dict, c.p.idx = d, vals.Int32()
		return &c.p, 0, nil
	}
	switch c.p.kind {
	case parquet.Int64:
		c.p.i64 = vals.Int64()
	case parquet.Int32:
		c.p.i32 = vals.Int32()
	case parquet.ByteArray:
		c.p.data, c.p.offs = vals.ByteArray()
		if len(c.p.offs) < int(p.NumValues())+1 {
			c.p.kind = -1
		}
	}
	return &c.p, 0, nil
}

func (c *columnCursor) release() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page, c.loaded = nil, false
	}
}

func (c *columnCursor) close() {
	c.release()
	c.pages.Close()
}

// bytesAt returns value i of a byte array page (plain or dictionary).
func (p *pageView) bytesAt(i int) ([]byte, bool) {
	switch {
	case p.dict != nil:
		if i >= len(p.idx) {
			return nil, false
		}
		return p.dict.Index(p.idx[i]).ByteArray(), true
	case p.kind == parquet.ByteArray:
		return p.data[p.offs[i]:p.offs[i+1]], true
	}
	return nil, false
}

// str returns value i as a string backed by an arena shared with the other
// wanted rows of the same page (rest: the wanted rows from this one on,
// page rows [start, end)), so a window allocates per page, not per row.
func (p *pageView) str(i int, rest []int64, start, end int64) string {
	if p.arena == nil {
		n := 0
		for _, row := range rest {
			if row >= end || p.dict != nil {
				break
			}
			j := int(row - start)
			n += int(p.offs[j+1] - p.offs[j])
		}
		p.arena = make([]byte, 0, max(n, 1))
	}
	b, _ := p.bytesAt(i)
	if len(b) == 0 {
		return ""
	}
	if p.used+len(b) > cap(p.arena) {
		return string(b)
	}
	p.arena = append(p.arena, b...)
	s := unsafe.String(&p.arena[p.used], len(b))
	p.used += len(b)
	return s
}

// fillRows fills every column but seq of the rows at need (row offsets in
// row group gi, in order) into out[slot[i]], attributes only where the
// row group's statistics say some row has them. false with a nil error:
// a page layout the column reader does not read (the caller falls back).
func (sg *segment) fillRows(cols []parquet.ColumnChunk, gi int, g *rgInfo, need []int64, slot []int32, out []Row) (bool, error) {
	if ok, err := sg.fillWindowColumns(cols, need, slot, out); !ok || err != nil {
		if err != nil {
			err = fmt.Errorf("read segment %s row group %d: %w", sg.name, gi, err)
		}
		return false, err
	}
	if sg.col.attrName >= 0 && !(g.attrs.known && g.attrs.none) {
		if err := sg.fillWindowAttrs(cols, need, slot, out); err != nil {
			return false, fmt.Errorf("read segment %s row group %d: %w", sg.name, gi, err)
		}
	}
	return true, nil
}
