package store

import (
	"fmt"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// decodeKeyRows returns rows [a, b) of sg, all of them rows of key k, in
// file order (seq order within a key), decoded column by column. Row groups
// skip rejects contribute nothing.
//
// A tail read wants the last rows of one key. Parquet's row reader turns
// every row into a parquet.Row (one Value per column, reallocated as rows
// of different attribute counts pass through it) and then every string is
// copied again per row; the profile of a 1000-row tail had those as most of
// its allocations. Here each column's pages are decoded once, values go
// straight into the Row slots, and data strings share one arena per page
// (pageView.str), so a read allocates per page, not per row.
//
// ok is false when a page has a layout the column cursors do not read; the
// caller then falls back to the row reader.
func (sg *segment) decodeKeyRows(k *keyRange, a, b int64, skip func(*rgInfo) bool) (rows []Row, ok bool, err error) {
	if a >= b {
		return nil, true, nil
	}
	rgsF := sg.pf.RowGroups()
	out := make([]Row, 0, b-a)
	var need []int64
	var slot []int32
	for gi := sg.rgFor(a); gi < len(sg.rgs) && a < b; gi++ {
		g := &sg.rgs[gi]
		end := min(b, g.start+g.count)
		if skip != nil && skip(g) {
			a = end
			continue
		}
		cols := rgsF[gi].ColumnChunks()
		need, slot = need[:0], slot[:0]
		seqs := columnCursor{pages: cols[sg.col.seq].Pages()}
		for row := a; row < end; row++ {
			p, i, err := seqs.at(row - g.start)
			if err != nil {
				seqs.close()
				return nil, false, fmt.Errorf("read segment %s row group %d seq: %w", sg.name, gi, err)
			}
			if p.kind != parquet.Int64 {
				seqs.close()
				return nil, false, nil
			}
			out = append(out, Row{Seq: p.i64[i], Key: k.key})
			need = append(need, row-g.start)
			slot = append(slot, int32(len(out)-1))
		}
		seqs.close()
		if ok, err := sg.fillRows(cols, gi, g, need, slot, out); !ok || err != nil {
			return nil, false, err
		}
		a = end
	}
	return out, true, nil
}

// keyRowsBatch bounds the rows one decodeKeyRows call holds decoded (~1 MiB
// of ~165-byte lines): a filtered tail doubles its chunk until enough rows
// match, and the chunk can reach a hot key's whole range.
const keyRowsBatch = 4096

// keyChunkColumns appends the rows of k in [a, end) that pass q's row
// filters to *out, in seq order, decoding column by column in batches. It
// returns the row from which the caller must read the rest with the row
// reader (end when done; earlier when a page's layout is not one the
// column cursors read), and whether a row at or below q's cursor was seen.
// It stops early when q's budget does (q.err says why).
func (sg *segment) keyChunkColumns(q *query, k *keyRange, a, end int64, skip func(*rgInfo) bool, out *[]Row) (from int64, atCursor bool, err error) {
	// With a row filter a kept row may be one of few in its batch: copy its
	// data out, so it does not hold the batch's page arena alive.
	filtered := q.since > 0 || q.minLevel != 0 || q.cluster != "" || q.attrs != ""
	for from = a; from < end; {
		to := min(end, from+keyRowsBatch)
		rows, ok, err := sg.decodeKeyRows(k, from, to, skip)
		if err != nil || !ok {
			return from, atCursor, err
		}
		kept := *out
		if len(kept) == 0 && !filtered {
			kept = rows[:0] // filter in place: the write index never passes the read one
		}
		for i := range rows {
			r := &rows[i]
			if r.Seq <= q.cursor {
				atCursor = true
				continue
			}
			if !q.step() {
				*out = kept
				return end, atCursor, nil
			}
			if q.memRowOK(r) {
				if filtered {
					r.Data = strings.Clone(r.Data)
				}
				kept = append(kept, *r)
			}
		}
		*out = kept
		from = to
	}
	return end, atCursor, nil
}
