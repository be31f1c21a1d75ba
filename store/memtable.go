package store

// memtable holds the rows that are durable in the WAL but not yet in a
// segment, in seq order. It is append-only: readers copy slice headers under
// Store.mu and then read without the lock, because appends never modify an
// element below a length a reader already saw.
type memtable struct {
	first int64 // seq of row 0 (or of the next row while empty)
	// chunks of fixed-size arrays: appending never moves a row (no slice
	// regrowth copying the whole memtable) and a reader's view of rows < n
	// never races with the writer filling rows >= n.
	chunks []*[memChunk]Row
	n      int
	bytes  int64
	// keys maps a key to the indices of its rows, in seq order, so an EXACT
	// read does not scan the whole memtable.
	keys map[string][]int32
	// walNum is the first WAL file number whose records may be in this
	// memtable; every older file is fully covered by older memtables.
	walNum uint64
	// producersAtSeal is the producer map as of the seal: the marks the
	// segment written from this memtable records.
	producersAtSeal map[string]int64
}

func newMemtable(first int64, walNum uint64) *memtable {
	return &memtable{first: first, keys: map[string][]int32{}, walNum: walNum}
}

// rowBytes is the memory and size accounting for one row.
func rowBytes(r *Row) int64 {
	return int64(len(r.Key)+len(r.Source)+len(r.Data)+len(r.Cluster)) + 48
}

// add appends rows, assigning them the next seqs. Caller holds Store.mu.
func (m *memtable) add(rows []Row) {
	for i := range rows {
		if m.n%memChunk == 0 {
			m.chunks = append(m.chunks, new([memChunk]Row))
		}
		m.chunks[m.n/memChunk][m.n%memChunk] = rows[i]
		m.chunks[m.n/memChunk][m.n%memChunk].Seq = m.first + int64(m.n)
		m.keys[rows[i].Key] = append(m.keys[rows[i].Key], int32(m.n))
		m.n++
		m.bytes += rowBytes(&rows[i])
	}
}

func (m *memtable) last() int64 { return m.first + int64(m.n) - 1 }

// view returns the current rows. Caller holds Store.mu (or owns a sealed
// memtable, which no longer changes).
func (m *memtable) view() rowsView {
	return rowsView{chunks: m.chunks[:len(m.chunks):len(m.chunks)], n: m.n}
}

const memChunk = 4096

// rowsView is an immutable prefix of a memtable.
type rowsView struct {
	chunks []*[memChunk]Row
	n      int
}

func (v rowsView) at(i int) *Row { return &v.chunks[i/memChunk][i%memChunk] }
