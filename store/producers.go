package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"github.com/finelog/finelog/internal/vfs"
)

// Producer limits. A producer is an idempotent writer (a relay): the store
// keeps its applied mark for dedupe, in memory and in producers.json.
const (
	// MaxProducers bounds how many producers a store remembers: each costs
	// memory and a line in producers.json, which every flush rewrites. A
	// batch that would add one more fails with ErrProducerLimit. Producers
	// idle past RetentionAge are forgotten (Retain), which frees room.
	MaxProducers = 10000
	// MaxProducerBytes bounds a producer name.
	MaxProducerBytes = 256
	// MaxProducerSkip bounds how far one batch may move a producer's mark
	// past the rows it carries: the batch's new mark minus where it starts
	// (the current mark, or FirstSeq-1 for a producer not seen before) minus
	// its rows above that start. A relay skips seqs it filtered out or that
	// its source's retention deleted; a longer run is sent as several
	// batches without rows, each skipping at most this many.
	//
	// Why it is safe: a mark that jumps makes the store drop, as
	// duplicates, every later row of that producer at or below it. With the
	// bound, no single accepted batch (a bug, or a writer using a producer
	// id that is not its own) can make the store silently drop more than
	// MaxProducerSkip of the producer's rows, where an unbounded batch
	// (first_seq 2, last_seq 1000000) could blackhole a producer for good.
	// The server's binding of producers to identities is what keeps other
	// writers off a producer; the bound limits what any one batch can do.
	MaxProducerSkip = 1 << 16
)

var (
	// ErrProducerLimit: the batch names a producer the store does not know
	// and it already remembers MaxProducers. It also wraps
	// ErrInvalidArgument. Nothing was written.
	ErrProducerLimit = errors.New("too many producers")
	// ErrProducerSkip: the batch would move its producer's mark more than
	// MaxProducerSkip past the rows it carries. It also wraps
	// ErrInvalidArgument. Nothing was written.
	ErrProducerSkip = errors.New("producer batch skips too many seqs")
)

// groupMarks are the producer marks as of the earlier batches of one group
// commit, and how many producers those batches added.
type groupMarks struct {
	marks map[string]int64
	fresh int
}

// dedupe decides what of producer batch b is written: the rows above the
// producer's mark, and the new mark. It refuses a batch that overtakes an
// earlier one (ErrProducerGap), skips too far (ErrProducerSkip) or would
// add a producer past MaxProducers (ErrProducerLimit). Called by the
// committer; g carries the marks of the group's earlier batches.
func (s *Store) dedupe(b *Batch, g *groupMarks) (keep []Row, mark, newMark int64, err error) {
	if g.marks == nil {
		g.marks = map[string]int64{}
	}
	mark, known := g.marks[b.Producer]
	inGroup := known
	if !known {
		s.mu.Lock()
		mark, known = s.producers[b.Producer]
		n := len(s.producers)
		s.mu.Unlock()
		if !known && n+g.fresh >= MaxProducers {
			return nil, 0, 0, fmt.Errorf("store: producer %q is new and the store already remembers %d producers (MaxProducers); producers idle past the retention age are forgotten: %w: %w",
				b.Producer, MaxProducers, ErrProducerLimit, ErrInvalidArgument)
		}
	}
	if known && b.FirstSeq > mark+1 {
		return nil, 0, 0, fmt.Errorf("store: %w: producer %q batch covers seqs from %d but only up to %d are applied; retry it after the earlier batches",
			ErrProducerGap, b.Producer, b.FirstSeq, mark)
	}
	start := mark
	if !known {
		switch {
		case b.FirstSeq > 0:
			start = b.FirstSeq - 1
		case len(b.Rows) > 0:
			start = b.Rows[0].Seq - 1
		}
	}
	// Seqs strictly increase (validateBatch), so the rows above a mark are
	// a suffix: kept without copying 5000 rows on the committer.
	keep = b.Rows[rowsAbove(b.Rows, mark):]
	carried := int64(len(b.Rows) - rowsAbove(b.Rows, start))
	if len(keep) == 0 {
		keep = nil
	}
	newMark = mark
	if len(b.Rows) > 0 {
		newMark = max(newMark, b.Rows[len(b.Rows)-1].Seq)
	}
	newMark = max(newMark, b.LastSeq)
	if skip := newMark - start - carried; skip > MaxProducerSkip {
		return nil, 0, 0, fmt.Errorf("store: producer %q batch moves its mark from %d to %d carrying %d rows: %d seqs skipped, limit is %d (MaxProducerSkip); send longer skips as several batches: %w: %w",
			b.Producer, start, newMark, carried, skip, MaxProducerSkip, ErrProducerSkip, ErrInvalidArgument)
	}
	if !inGroup && !known {
		g.fresh++
	}
	g.marks[b.Producer] = newMark
	return keep, mark, newMark, nil
}

// rowsAbove is the index of the first row with a seq above seq.
func rowsAbove(rows []Row, seq int64) int {
	return sort.Search(len(rows), func(i int) bool { return rows[i].Seq > seq })
}

// producersName is the one durable home of the producer marks: the marks as
// of seq as_of_seq (the newest segment's last seq when it was written).
// Marks of later records are in the WAL. Segment footers written before it
// existed carry marks too; they are still read.
const producersName = "producers.json"

type producersFile struct {
	AsOf      int64           `json:"as_of_seq"`
	Producers []producerEntry `json:"producers"`
}

type producerEntry struct {
	Name   string `json:"name"`
	Seq    int64  `json:"seq"`
	SeenMS int64  `json:"seen_ms"`
}

// readProducers loads producers.json; ok is false when there is none.
func (s *Store) readProducers() (pf producersFile, ok bool, err error) {
	p := path.Join(s.dir, producersName)
	data, err := vfs.ReadFile(s.fs, p)
	if errors.Is(err, fs.ErrNotExist) {
		return pf, false, nil
	}
	if err != nil {
		return pf, false, fmt.Errorf("store: read %s: %w", p, err)
	}
	if err := json.Unmarshal(data, &pf); err != nil {
		// Only a disk that lost a synced write gets here. Refusing to open
		// would keep every row unreadable over dedupe state; without it a
		// relay may resend rows this store holds (duplicates), never lose
		// any.
		s.log.Error("store: producers.json is corrupt; rebuilding producer marks from the WAL and older segment footers: relays may resend rows this store already holds",
			"file", p, "err", err)
		return producersFile{}, false, nil
	}
	return pf, true, nil
}

// writeProducers makes marks (the producer marks as of seq asOf) the
// durable producer map. Caller holds flushMu.
func (s *Store) writeProducers(asOf int64, marks, seen map[string]int64) error {
	pf := producersFile{AsOf: asOf, Producers: make([]producerEntry, 0, len(marks))}
	for p, v := range marks {
		pf.Producers = append(pf.Producers, producerEntry{Name: p, Seq: v, SeenMS: seen[p]})
	}
	sort.Slice(pf.Producers, func(i, j int) bool { return pf.Producers[i].Name < pf.Producers[j].Name })
	data, err := json.Marshal(pf)
	if err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(s.fs, path.Join(s.dir, producersName), data); err != nil {
		return fmt.Errorf("write %s: %w", producersName, mapNoSpace(err))
	}
	return nil
}

// persistSegMarks writes the marks as of the newest segment. Caller holds
// flushMu.
func (s *Store) persistSegMarks() error {
	s.mu.Lock()
	asOf := s.floor
	if n := len(s.segs); n > 0 {
		asOf = max(asOf, s.segs[n-1].last)
	}
	marks := make(map[string]int64, len(s.segMarks))
	seen := make(map[string]int64, len(s.segMarks))
	for p, v := range s.segMarks {
		marks[p] = v
		seen[p] = s.producerSeen[p]
	}
	s.mu.Unlock()
	return s.writeProducers(asOf, marks, seen)
}

// expireProducers forgets producers that sent nothing for longer than
// RetentionAge, and reports whether it forgot any. A producer that comes
// back after that is new again: its first batch is taken from wherever it
// starts. Caller holds flushMu.
func (s *Store) expireProducers() bool {
	if s.opts.RetentionAge <= 0 {
		return false
	}
	cutoff := s.clk.Now().Add(-s.opts.RetentionAge).UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []string
	for p := range s.producers {
		if s.producerSeen[p] < cutoff {
			gone = append(gone, p)
		}
	}
	sort.Strings(gone)
	for _, p := range gone {
		delete(s.producers, p)
		delete(s.segMarks, p)
		delete(s.producerSeen, p)
	}
	if len(gone) > 0 {
		s.log.Info("forgot producers idle past the retention age", "producers", len(gone), "first", gone[0], "retention_age", s.opts.RetentionAge.String())
	}
	return len(gone) > 0
}

// ProducerApplied returns an idempotent producer's durable high-water mark.
func (s *Store) ProducerApplied(producer string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.producers[producer]
	return v, ok
}
