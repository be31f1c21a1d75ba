package store

// memtable holds the rows that are durable in the WAL but not yet in a
// segment, in seq order. It is append-only: readers copy slice headers under
// Store.mu and then read without the lock, because appends never modify an
// element below a length a reader already saw.
type memtable struct {
	first int64 // seq of rows[0] (or of the next row while empty)
	rows  []Row
	bytes int64
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

// add appends rows whose seqs continue the memtable. Caller holds Store.mu.
func (m *memtable) add(rows []Row) {
	for i := range rows {
		idx := int32(len(m.rows))
		m.rows = append(m.rows, rows[i])
		m.keys[rows[i].Key] = append(m.keys[rows[i].Key], idx)
		m.bytes += rowBytes(&rows[i])
	}
}

func (m *memtable) last() int64 { return m.first + int64(len(m.rows)) - 1 }

// memView is a reader's consistent prefix of a memtable.
type memView struct {
	rows []Row
	// byKey, when non-nil, lists the row indices of the matching keys (only
	// filled for EXACT reads).
	byKey []int32
	exact bool
}
