package store

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// levelNames maps a min_level name (case-insensitive) to its value.
var levelNames = map[string]int32{
	"DEBUG": LevelDebug, "INFO": LevelInfo, "WARNING": LevelWarning,
	"ERROR": LevelError, "CRITICAL": LevelCritical,
	// The usual aliases: a viewer or CLI sending "warn" must not silently
	// get no filter.
	"TRACE": LevelDebug, "WARN": LevelWarning, "ERR": LevelError,
	"CRIT": LevelCritical, "FATAL": LevelCritical,
}

// ParseMinLevel returns the level a min_level name means; 0 (no filter) for
// anything that is not a level name.
func ParseMinLevel(name string) int32 { return levelNames[strings.ToUpper(strings.TrimSpace(name))] }

// AttemptID parses the attempt id from a trailing ":<int>" of a key
// ("/user/job/0:3" → 3, using the last colon); 0 when there is none.
func AttemptID(key string) int32 {
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return 0
	}
	v, err := strconv.ParseInt(key[i+1:], 10, 32)
	if err != nil {
		return 0
	}
	return int32(v)
}

// query is a compiled Query.
type query struct {
	scope     Scope
	source    string
	re        *regexp.Regexp
	prefix    string // every matching key starts with it (PREFIX, or REGEX's literal prefix)
	since     int64
	cursor    int64
	maxSeq    int64 // rows with seq > maxSeq are out (Query.UntilCursor, scanSegment's window); 0 = none
	substring string
	data      dataFilter // Query.Regex
	minLevel  int32
	cluster   string
	attrs     Attributes // every pair must be in the row's
	limit     int
	tail      bool
	scan      bool // Scan: every row in seq order, served through the scan window cache
	budget
	// keyMemo remembers a regex's verdict per key: memtable rows repeat
	// their keys, and evaluating the regex per row made one query cost
	// minutes of CPU.
	keyMemo map[string]bool
}

func compileQuery(q Query) (*query, error) {
	c := &query{scope: q.Scope, source: q.Source, since: q.SinceMS, cursor: q.Cursor, maxSeq: max(q.UntilCursor, 0),
		substring: q.Substring, minLevel: ParseMinLevel(q.MinLevel), cluster: q.Cluster, attrs: q.Attributes, tail: q.Tail}
	if err := q.Attributes.Check(); err != nil {
		return nil, fmt.Errorf("attributes filter: %w", err)
	}
	var err error
	if c.data, err = compileDataFilter(q.Regex); err != nil {
		return nil, err
	}
	switch {
	case q.MaxExamined < 0:
		return nil, fmt.Errorf("max examined %d is negative: use 0 for the default budget (%d rows): %w", q.MaxExamined, DefaultMaxExamined, ErrInvalidArgument)
	case q.MaxExamined == 0:
		c.budget.limit = DefaultMaxExamined
	default:
		c.budget.limit = q.MaxExamined
	}
	if c.scope == ScopeUnspecified {
		c.scope = ScopeRegex
	}
	switch c.scope {
	case ScopeExact:
		c.prefix = q.Source
	case ScopePrefix:
		if q.Source == "" {
			return nil, fmt.Errorf("source is required for a PREFIX match: %w", ErrInvalidArgument)
		}
		c.prefix = q.Source
	case ScopeRegex:
		re, err := compileRegex("source", q.Source)
		if err != nil {
			return nil, err
		}
		c.re = re
		c.prefix = regexKeyPrefix(q.Source)
	default:
		return nil, fmt.Errorf("match scope %d is not one of UNSPECIFIED, EXACT, PREFIX, REGEX: %w", q.Scope, ErrInvalidArgument)
	}
	c.limit = q.MaxLines
	if c.limit <= 0 {
		c.limit = DefaultMaxLines
	}
	c.limit = min(c.limit, MaxMaxLines)
	return c, nil
}

// anchoredLiteralPrefix returns a literal every match of an unanchored regex
// must start with, which is only the case when the regex begins with ^ (an
// unanchored search can match anywhere). Without ^ it is "".
func anchoredLiteralPrefix(src string) string {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) == 0 || re.Sub[0].Op != syntax.OpBeginText {
		return ""
	}
	var b strings.Builder
	for _, sub := range re.Sub[1:] {
		if sub.Op != syntax.OpLiteral || sub.Flags&syntax.FoldCase != 0 {
			break
		}
		b.WriteString(string(sub.Rune))
	}
	return b.String()
}

func (q *query) keyMatch(k string) bool {
	switch q.scope {
	case ScopeExact:
		return k == q.source
	case ScopePrefix:
		return strings.HasPrefix(k, q.source)
	default:
		if !strings.HasPrefix(k, q.prefix) {
			return false
		}
		if q.keyMemo == nil {
			q.keyMemo = map[string]bool{}
		}
		ok, seen := q.keyMemo[k]
		if !seen {
			ok = q.re.MatchString(k)
			q.keyMemo[k] = ok
		}
		return ok
	}
}

// rowOK applies every filter except the key.
func (q *query) rowOK(seq, epoch int64, level int32, cluster, attrs, data []byte) bool {
	if seq <= q.cursor || (q.maxSeq > 0 && seq > q.maxSeq) {
		return false
	}
	if q.since > 0 && epoch <= q.since {
		return false
	}
	if q.minLevel != 0 && level != LevelUnknown && level < q.minLevel {
		return false
	}
	if q.cluster != "" && string(cluster) != q.cluster {
		return false
	}
	if q.attrs != "" && !Attributes(unsafe.String(unsafe.SliceData(attrs), len(attrs))).contains(q.attrs) {
		return false
	}
	if q.substring != "" && !bytes.Contains(data, []byte(q.substring)) {
		return false
	}
	return q.data.match(data)
}

func (q *query) memRowOK(r *Row) bool {
	if r.Seq <= q.cursor || (q.maxSeq > 0 && r.Seq > q.maxSeq) {
		return false
	}
	if q.since > 0 && r.EpochMS <= q.since {
		return false
	}
	if q.minLevel != 0 && r.Level != LevelUnknown && r.Level < q.minLevel {
		return false
	}
	if q.cluster != "" && r.Cluster != q.cluster {
		return false
	}
	if q.attrs != "" && !r.Attributes.contains(q.attrs) {
		return false
	}
	return (q.substring == "" || strings.Contains(r.Data, q.substring)) && q.data.matchString(r.Data)
}

// snapshot is a consistent view for one read: memtable prefixes and
// referenced segments, captured under mu and read without it.
type snapshot struct {
	segs   []*segment
	mems   []rowsView // oldest first (sealed..., active)
	keyIdx [][]int32
}

func (s *Store) snapshot(q *query) *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := &snapshot{segs: append([]*segment(nil), s.segs...)}
	if q != nil {
		// Rows at or below the floor are deleted even where a segment
		// that straddles it (a follower's, ApplyFloor) still holds them.
		q.cursor = max(q.cursor, s.floor)
	}
	for _, sg := range sn.segs {
		sg.acquire()
	}
	add := func(m *memtable) {
		sn.mems = append(sn.mems, m.view())
		if q != nil && q.scope == ScopeExact {
			idx := m.keys[q.source]
			sn.keyIdx = append(sn.keyIdx, idx[:len(idx):len(idx)])
		} else {
			sn.keyIdx = append(sn.keyIdx, nil)
		}
	}
	for _, m := range s.sealed {
		add(m)
	}
	add(s.mem)
	return sn
}

func (sn *snapshot) release() {
	for _, sg := range sn.segs {
		sg.release()
	}
}

// Fetch answers a FetchLogs query (see DESIGN.md for the rules).
func (s *Store) Fetch(ctx context.Context, q Query) (Result, error) {
	cq, err := compileQuery(q)
	if err != nil {
		return Result{}, err
	}
	if s.isClosed() {
		return Result{}, ErrClosed
	}
	rows, err := s.read(ctx, cq)
	if err != nil {
		return Result{Examined: cq.examined}, err
	}
	res := Result{Rows: rows, Cursor: q.Cursor, MaxLines: cq.limit, Examined: cq.examined}
	if len(rows) > 0 {
		res.Cursor = rows[len(rows)-1].Seq
	}
	return res, nil
}

// Scan returns rows with seq > after in seq order across all keys, at most
// maxRows (<= 0: DefaultMaxLines) and about maxBytes (<= 0: unlimited; at
// least one row is returned even if it alone is larger).
func (s *Store) Scan(ctx context.Context, after int64, maxRows int, maxBytes int) ([]Row, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if maxRows <= 0 {
		maxRows = DefaultMaxLines
	}
	// No seq window (after, after+maxRows]: seqs are dense only above the
	// retention floor, and a reader behind it (a relay whose pin cap was
	// exceeded) must get the first rows that still exist, not nothing. read
	// skips sources wholly at or below after, and scanSegment starts each
	// segment at max(after, first-1) and stops after the remaining count,
	// so gaps between sources cost nothing.
	q := &query{scope: ScopePrefix, cursor: after, limit: maxRows, scan: true}
	rows, err := s.read(ctx, q)
	if err != nil {
		return nil, err
	}
	if maxBytes > 0 {
		total := 0
		for i := range rows {
			total += int(rowBytes(&rows[i]))
			if total > maxBytes && i > 0 {
				rows = rows[:i]
				break
			}
		}
	}
	return rows, nil
}

// read walks sources in seq order (forward) or reverse seq order (tail),
// stopping as soon as limit rows are collected. Sources are seq-disjoint:
// segments, then sealed memtables, then the active memtable.
func (s *Store) read(ctx context.Context, q *query) ([]Row, error) {
	q.ctx = ctx
	if !q.check() {
		return nil, q.err
	}
	sn := s.snapshot(q)
	defer sn.release()
	var out []Row
	if !q.tail {
		for _, sg := range sn.segs {
			if len(out) >= q.limit {
				break
			}
			if sg.last <= q.cursor || (q.maxSeq > 0 && sg.first > q.maxSeq) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			var rows []Row
			var err error
			if q.scan {
				rows, err = s.scanSegment(ctx, &s.scan, sg, max(q.cursor, sg.first-1), q.limit-len(out))
			} else {
				rows, err = sg.collect(q, q.limit-len(out))
			}
			if err != nil {
				return nil, err
			}
			out = appendRows(out, rows)
		}
		for i := range sn.mems {
			if len(out) >= q.limit {
				break
			}
			out = appendRows(out, memCollect(q, sn.mems[i], sn.keyIdx[i], q.limit-len(out)))
			if q.err != nil {
				return nil, q.err
			}
		}
		return out, nil
	}
	// Tail: newest sources first, each returning its newest rows in order.
	var parts [][]Row
	need := q.limit
	for i := len(sn.mems) - 1; i >= 0 && need > 0; i-- {
		rows := memCollect(q, sn.mems[i], sn.keyIdx[i], need)
		if q.err != nil {
			return nil, q.err
		}
		parts = append(parts, rows)
		need -= len(rows)
	}
	for i := len(sn.segs) - 1; i >= 0 && need > 0; i-- {
		sg := sn.segs[i]
		if sg.last <= q.cursor {
			break
		}
		if q.maxSeq > 0 && sg.first > q.maxSeq {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rows, err := sg.collect(q, need)
		if err != nil {
			return nil, err
		}
		parts = append(parts, rows)
		need -= len(rows)
	}
	return joinParts(parts), nil
}

// joinParts concatenates parts newest first into seq order. A tail is
// usually answered by one source: that part is returned as is, and
// otherwise the result is allocated once.
func joinParts(parts [][]Row) []Row {
	n, last := 0, -1
	for i, p := range parts {
		n += len(p)
		if len(p) > 0 {
			last = i
		}
	}
	if n == 0 {
		return nil
	}
	if len(parts[last]) == n {
		return parts[last]
	}
	out := make([]Row, 0, n)
	for i := len(parts) - 1; i >= 0; i-- {
		out = append(out, parts[i]...)
	}
	return out
}

// memCollect returns up to limit matching rows of a memtable prefix: the
// first ones, or the last ones for a tail read, in seq order. It stops early
// when q's budget does (q.err says why).
func memCollect(q *query, rows rowsView, idx []int32, limit int) []Row {
	var out []Row
	if q.scope == ScopeExact {
		out = make([]Row, 0, rowsHint(limit, len(idx)))
		if q.tail {
			for i := len(idx) - 1; i >= 0 && len(out) < limit && q.step(); i-- {
				if r := rows.at(int(idx[i])); q.memRowOK(&r) {
					out = append(out, r)
				}
			}
			reverse(out)
			return out
		}
		// Skip to the cursor: idx is in seq order and seq = first + index.
		start := 0
		if rows.n > 0 {
			start = sort.Search(len(idx), func(i int) bool { return rows.seqAt(int(idx[i])) > q.cursor })
		}
		for _, i := range idx[start:] {
			if len(out) >= limit || !q.step() {
				break
			}
			if r := rows.at(int(i)); q.memRowOK(&r) {
				out = append(out, r)
			}
		}
		return out
	}
	if q.tail {
		out = make([]Row, 0, rowsHint(limit, rows.n))
		end := rows.n - 1
		if q.maxSeq > 0 && rows.n > 0 {
			end = int(min(int64(end), q.maxSeq-rows.first))
		}
		for i := end; i >= 0 && len(out) < limit && q.step(); i-- {
			if rows.seqAt(i) <= q.cursor {
				break
			}
			if r := rows.at(i); q.memRowOK(&r) && q.keyMatch(r.Key) {
				out = append(out, r)
			}
		}
		reverse(out)
		return out
	}
	start := 0
	if rows.n > 0 && q.cursor >= rows.first {
		start = int(min(q.cursor-rows.first+1, int64(rows.n)))
	}
	out = make([]Row, 0, rowsHint(limit, rows.n-start))
	for i := start; i < rows.n && len(out) < limit && q.step(); i++ {
		if q.maxSeq > 0 && rows.seqAt(i) > q.maxSeq {
			break
		}
		if r := rows.at(i); q.memRowOK(&r) && q.keyMatch(r.Key) {
			out = append(out, r)
		}
	}
	return out
}

// maxRowsHint caps the result capacity memCollect sizes up front: a filter
// may keep few of many candidates, so a larger result grows as it fills.
const maxRowsHint = 8192

// rowsHint is the capacity for a result of at most limit rows out of n
// candidates: growing it by doubling was most of a catch-up read's CPU (a
// relay reading 5000-row batches from the memtables).
func rowsHint(limit, n int) int {
	return max(0, min(limit, n, maxRowsHint))
}

// appendRows is append(out, rows...) that takes rows as they are when out
// is empty: most reads are served from one source.
func appendRows(out, rows []Row) []Row {
	switch {
	case len(rows) == 0:
		return out
	case len(out) == 0:
		return rows
	}
	return append(out, rows...)
}

func reverse(rows []Row) {
	for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
		rows[i], rows[j] = rows[j], rows[i]
	}
}

// collect returns up to limit matching rows of the segment (the lowest seqs,
// or the highest for a tail read) in seq order.
func (sg *segment) collect(q *query, limit int) ([]Row, error) {
	lo, hi := 0, len(sg.keys)
	switch {
	case q.scope == ScopeExact:
		lo, hi = sg.keysBetween(q.source, q.source+"\x00", false)
	case q.prefix != "":
		if end, ok := prefixEnd(q.prefix); ok {
			lo, hi = sg.keysBetween(q.prefix, end, false)
		} else {
			lo, hi = sg.keysBetween(q.prefix, "", true)
		}
	}
	skip := func(g *rgInfo) bool {
		if g.maxSeq <= q.cursor || (q.maxSeq > 0 && g.minSeq > q.maxSeq) {
			return true
		}
		if q.since > 0 && g.maxEpoch <= q.since {
			return true
		}
		if !g.attrs.mayHaveAttrs(q.attrs) {
			return true
		}
		return q.substring != "" && !mayContain(g.grams, q.substring)
	}
	if q.scope == ScopeExact {
		var out []Row
		for ki := lo; ki < hi; ki++ {
			k := &sg.keys[ki]
			if k.key != q.source || k.maxSeq <= q.cursor || (q.since > 0 && k.maxEpoch <= q.since) {
				continue
			}
			rows, err := sg.collectKey(q, k, limit, skip)
			if err != nil {
				return nil, err
			}
			if out == nil {
				out = rows // the usual single range: no copy
			} else {
				out = append(out, rows...)
			}
		}
		return out, nil
	}
	// Several keys: their row ranges are adjacent runs of the file, so read
	// each run once (row group pruning still applies) and keep the wanted
	// end by seq. Reading per key instead would re-decode shared pages.
	var runs []rowRun
	for ki := lo; ki < hi; ki++ {
		k := &sg.keys[ki]
		if k.maxSeq <= q.cursor || (q.maxSeq > 0 && k.minSeq > q.maxSeq) || (q.since > 0 && k.maxEpoch <= q.since) {
			continue
		}
		if !q.step() {
			return nil, q.err
		}
		if !q.keyMatch(k.key) {
			continue
		}
		a, b := k.firstRowAfter(q.cursor), k.start+k.count
		if q.maxSeq > 0 {
			b = k.endRowUpTo(q.maxSeq)
		}
		if a >= b {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].b == a {
			runs[n-1].b = b
		} else {
			runs = append(runs, rowRun{a, b})
		}
	}
	var out []Row
	trim := func() {
		sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
		if len(out) > limit {
			if q.tail {
				out = append(out[:0], out[len(out)-limit:]...)
			} else {
				out = out[:limit]
			}
		}
	}
	var cp rowCopier
	err := sg.readRuns(runs, skip, q.substring, &q.budget, func(rr *rawRow) bool {
		if !q.step() {
			return false
		}
		if q.rowOK(rr.seq, rr.epoch, rr.level, rr.cluster, rr.attrs, rr.data) {
			out = append(out, cp.row(rr))
			if len(out) >= 4*limit+1024 {
				trim()
			}
		}
		return true
	})
	if err == nil {
		err = q.err
	}
	if err != nil {
		return nil, err
	}
	trim()
	return out, nil
}

// collectKey reads one key's row range: forward from its start, or for a
// tail read backward in growing chunks from its end, until limit rows match.
func (sg *segment) collectKey(q *query, k *keyRange, limit int, skip func(*rgInfo) bool) ([]Row, error) {
	var out []Row
	var cp rowCopier
	match := func(rr *rawRow) bool {
		if !q.step() {
			return false
		}
		if q.rowOK(rr.seq, rr.epoch, rr.level, rr.cluster, rr.attrs, rr.data) {
			out = append(out, cp.row(rr))
		}
		return true
	}
	end := k.start + k.count
	if q.maxSeq > 0 {
		end = k.endRowUpTo(q.maxSeq)
	}
	begin := k.firstRowAfter(q.cursor)
	if !q.tail {
		err := sg.readRows(begin, end, skip, q.substring, &q.budget, func(rr *rawRow) bool {
			if q.maxSeq > 0 && rr.seq > q.maxSeq {
				return false
			}
			return match(rr) && len(out) < limit
		})
		if err == nil {
			err = q.err
		}
		return out, err
	}
	chunk := int64(limit)
	var parts [][]Row
	got := 0
	// Without a data filter every row of the chunk is decoded anyway, so
	// decode it column by column; a substring or regex keeps the row
	// reader, which prunes by the data column first.
	columnar := q.substring == "" && q.data.re == nil
	for end > begin && got < limit {
		a := max(begin, end-chunk)
		out = nil
		stopAtCursor := false
		from := a // rows [from, end) still to read with the row reader
		var err error
		if columnar {
			from, stopAtCursor, err = sg.keyChunkColumns(q, k, a, end, skip, &out)
		}
		if err == nil && from < end {
			err = sg.readRows(from, end, skip, q.substring, &q.budget, func(rr *rawRow) bool {
				if rr.seq <= q.cursor {
					stopAtCursor = true
					return true
				}
				return match(rr)
			})
		}
		if err == nil {
			err = q.err
		}
		if err != nil {
			return nil, err
		}
		if len(out) > limit-got {
			out = out[len(out)-(limit-got):]
		}
		parts = append(parts, out)
		got += len(out)
		end = a
		chunk *= 2
		if stopAtCursor {
			break
		}
	}
	return joinParts(parts), nil
}

// prefixEnd returns the smallest string greater than every string with the
// given prefix.
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// scanWindow is how many seqs a Scan decodes from a segment at once. Segments
// are key-sorted, so rows in seq order are spread over every key's range and
// each key costs a data page decode (256 KiB, ~1500 rows of that key) per
// window whatever the window's width; decoding a wide window once and serving
// the following Scans (the relay catching up moves forward through it) from
// the cache amortises that. 131072 rows of ~165-byte lines hold ~35 MiB (Row
// headers and data); this is the most one scanCache holds. At 65536 the
// per-window page decodes capped a seq scan at ~240k rows/s.
const scanWindow = 131072

// scanCache holds the last decoded Scan window of one segment.
type scanCache struct {
	mu     sync.Mutex
	seg    *segment
	lo, hi int64 // seqs held: rows[i].Seq == lo+i
	rows   []Row
}

// scanSegment returns up to n rows of sg with seq > after, in seq order,
// through the window cache c (Scan's, or a RecordStream's own: two readers at
// different places sharing one window would each evict the other's).
func (s *Store) scanSegment(ctx context.Context, c *scanCache, sg *segment, after int64, n int) ([]Row, error) {
	want := min(after+int64(n), sg.last)
	c.mu.Lock()
	if c.seg == sg && c.lo <= after+1 && want <= c.hi {
		out := append([]Row(nil), c.rows[after+1-c.lo:want+1-c.lo]...)
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	lo, hi := after+1, min(sg.last, after+int64(max(n, scanWindow)))
	rows, ok, err := sg.decodeSeqWindow(ctx, lo, hi)
	if err != nil {
		return nil, err
	}
	if !ok {
		q := &query{scope: ScopePrefix, cursor: after, maxSeq: hi, limit: int(hi - lo + 1), budget: budget{ctx: ctx}}
		if rows, err = sg.collect(q, q.limit); err != nil {
			return nil, err
		}
	}
	if int64(len(rows)) != hi-lo+1 || (len(rows) > 0 && rows[0].Seq != lo) {
		return nil, fmt.Errorf("segment %s: seqs %d..%d should be dense, read %d rows", sg.name, lo, hi, len(rows))
	}
	out := append([]Row(nil), rows[:want+1-lo]...)
	sg.acquire()
	c.mu.Lock()
	old := c.seg
	c.seg, c.lo, c.hi, c.rows = sg, lo, hi, rows
	c.mu.Unlock()
	if old != nil {
		old.release()
	}
	return out, nil
}

func (c *scanCache) drop() {
	c.mu.Lock()
	old := c.seg
	c.seg, c.rows = nil, nil
	c.mu.Unlock()
	if old != nil {
		old.release()
	}
}
