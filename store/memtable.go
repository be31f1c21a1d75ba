package store

import (
	"strings"
	"unsafe"
)

// memtable holds the rows that are durable in the WAL but not yet in a
// segment, in seq order. It is append-only: readers copy slice headers under
// Store.mu and then read without the lock, because appends never modify an
// element below a length a reader already saw.
//
// Rows are stored compactly rather than as Row values: a 48-byte pointer-free
// memRow per row, the data bytes (and after them the encoded attributes)
// packed into blocks, and key, source and cluster interned once per
// memtable. A Row with its own strings costs ~260 bytes for a 150-byte line
// and is full of pointers the GC must trace; this layout costs ~203 and the
// GC skips it, which is most of a busy daemon's heap.
type memtable struct {
	first int64 // seq of row 0 (or of the next row while empty)
	// chunks of fixed-size arrays: appending never moves a row (no slice
	// regrowth copying the whole memtable) and a reader's view of rows < n
	// never races with the writer filling rows >= n.
	chunks []*[memChunk]memRow
	n      int
	// bytes is the memory the memtable holds: rows, data, key index and
	// interned strings (see newMemtable for the one part it leaves out).
	bytes int64
	// blocks hold the rows' data bytes, filled in order; used is how much of
	// the last one is. A block's slice header never changes once appended
	// (len == cap), so readers may index it without Store.mu.
	blocks [][]byte
	used   int
	block  int // size of a new block
	// strs are the interned key, source and cluster strings; ids index it.
	strs  []string
	ids   map[string]uint32
	cache [3]internCache // last key, source, cluster: rows come in runs
	// keys maps a key to the indices of its rows, in seq order, so an EXACT
	// read does not scan the whole memtable.
	keys map[string][]int32
	// walNum is the first WAL file number whose records may be in this
	// memtable; every older file is fully covered by older memtables.
	walNum uint64
	// splitWAL, when set, is a later WAL file from which on every record
	// of seq splitFirst or later is (a follower rotates its WAL when it
	// adopts a segment, without sealing: adopt.go).
	splitFirst int64
	splitWAL   uint64
	// producersAtSeal is the producer map as of the seal: the marks the
	// segment written from this memtable records.
	producersAtSeal map[string]int64
	// marks are the producer marks of the records whose rows are here (or,
	// for a record without rows, that followed this memtable's last row),
	// in commit order: what Tail needs to put each mark back at the seq it
	// became durable with.
	marks []markAt
}

// markAt is a producer mark and where in the seq order it became durable:
// pos is the last seq of its WAL record (the seq before the record's first
// when it had no rows). A mark is applied after the rows up to pos and never
// before: a standby that had the mark without those rows would drop them as
// duplicates when the producer resends them.
type markAt struct {
	id  uint64 // store-wide, increasing in commit order
	pos int64
	ProducerMark
}

// markCost is what a mark costs the memtable beyond its producer name.
const markCost = int64(unsafe.Sizeof(markAt{}))

// addMark records a producer mark durable with seq pos. Caller holds Store.mu.
func (m *memtable) addMark(id uint64, pos int64, pm ProducerMark) {
	m.marks = append(m.marks, markAt{id: id, pos: pos, ProducerMark: pm})
	m.bytes += markCost + int64(len(pm.Producer))
}

// memRow is one row; seq is implicit (memtable.first + index).
type memRow struct {
	epoch                int64
	attempt, level       int32
	key, source, cluster uint32 // indexes into memtable.strs
	blk, off, n          uint32 // data is blocks[blk][off:off+n]
	// attrs is the length of the row's encoded attributes, stored in the
	// block right after its data.
	attrs uint32
}

type internCache struct {
	s     string
	id    uint32
	valid bool
}

const (
	memChunk = 1024
	// Accounting for what a row and an interned string cost beyond their
	// bytes: the memRow, the key index entry, and map and header overhead.
	memRowCost    = int64(unsafe.Sizeof(memRow{})) + 4
	memStringCost = 64
)

// newMemtable starts an empty memtable. Data blocks are 1/32 of the
// memtable bound (1 KiB to 1 MiB): bytes counts the data a row holds, and
// the unfilled end of the last block, which it does not count, is then at
// most ~3% of the bound. A line longer than a block gets a block of its own.
func newMemtable(first int64, walNum uint64, bound int64) *memtable {
	return &memtable{first: first, keys: map[string][]int32{}, ids: map[string]uint32{}, walNum: walNum,
		block: int(min(max(bound/32, 1<<10), 1<<20))}
}

// rowBytes is the size of one row as the limits and read budgets count it.
func rowBytes(r *Row) int64 {
	return int64(len(r.Key)+len(r.Source)+len(r.Data)+len(r.Cluster)+len(r.Attributes)) + 48
}

// intern returns the id of s, copying s the first time so the memtable never
// keeps a request's buffer alive.
func (m *memtable) intern(c *internCache, s string) uint32 {
	if c.valid && c.s == s {
		return c.id
	}
	id, ok := m.ids[s]
	if !ok {
		s = strings.Clone(s)
		id = uint32(len(m.strs))
		m.strs = append(m.strs, s)
		m.ids[s] = id
		m.bytes += int64(len(s)) + memStringCost
	}
	*c = internCache{s: m.strs[id], id: id, valid: true}
	return id
}

// addData copies b and then attrs into the current block (or a new one)
// and returns where b starts.
func (m *memtable) addData(b, attrs string) (blk, off uint32) {
	n := len(b) + len(attrs)
	last := len(m.blocks) - 1
	if last < 0 || m.used+n > len(m.blocks[last]) {
		m.blocks = append(m.blocks, make([]byte, max(m.block, n)))
		last++
		m.used = 0
	}
	off = uint32(m.used)
	m.used += copy(m.blocks[last][m.used:], b)
	m.used += copy(m.blocks[last][m.used:], attrs)
	return uint32(last), off
}

// add appends rows, assigning them the next seqs. Caller holds Store.mu.
func (m *memtable) add(rows []Row) {
	for i := range rows {
		r := &rows[i]
		if m.n%memChunk == 0 {
			m.chunks = append(m.chunks, new([memChunk]memRow))
		}
		key := m.intern(&m.cache[0], r.Key)
		blk, off := m.addData(r.Data, string(r.Attributes))
		m.chunks[m.n/memChunk][m.n%memChunk] = memRow{
			epoch: r.EpochMS, attempt: r.AttemptID, level: r.Level,
			key: key, source: m.intern(&m.cache[1], r.Source), cluster: m.intern(&m.cache[2], r.Cluster),
			blk: blk, off: off, n: uint32(len(r.Data)), attrs: uint32(len(r.Attributes)),
		}
		k := m.strs[key]
		m.keys[k] = append(m.keys[k], int32(m.n))
		m.n++
		m.bytes += memRowCost + int64(len(r.Data)+len(r.Attributes))
	}
}

func (m *memtable) last() int64 { return m.first + int64(m.n) - 1 }

// view returns the current rows. Caller holds Store.mu (or owns a sealed
// memtable, which no longer changes).
func (m *memtable) view() rowsView {
	return rowsView{
		first:  m.first,
		chunks: m.chunks[:len(m.chunks):len(m.chunks)],
		blocks: m.blocks[:len(m.blocks):len(m.blocks)],
		strs:   m.strs[:len(m.strs):len(m.strs)],
		n:      m.n,
	}
}

// rowsView is an immutable prefix of a memtable: the bytes of its rows'
// data are never written again.
type rowsView struct {
	first  int64
	chunks []*[memChunk]memRow
	blocks [][]byte
	strs   []string
	n      int
}

// at returns row i. Its Data aliases the memtable's block, which is never
// written again below that row's end, so no copy is needed.
func (v rowsView) at(i int) Row {
	r := &v.chunks[i/memChunk][i%memChunk]
	var data, attrs string
	if r.n > 0 {
		data = unsafe.String(&v.blocks[r.blk][r.off], r.n)
	}
	if r.attrs > 0 {
		attrs = unsafe.String(&v.blocks[r.blk][r.off+r.n], r.attrs)
	}
	return Row{
		Seq: v.first + int64(i), Key: v.strs[r.key], Source: v.strs[r.source], Cluster: v.strs[r.cluster],
		Data: data, EpochMS: r.epoch, AttemptID: r.attempt, Level: r.level, Attributes: Attributes(attrs),
	}
}

// seqAt is row i's seq without building the row.
func (v rowsView) seqAt(i int) int64 { return v.first + int64(i) }
