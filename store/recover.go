package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/finelog/finelog/internal/vfs"
)

// recover runs at Open: it takes the data dir's lock before anything else,
// loads meta.json, producers.json and the segments, resolves what a crash
// left behind, and replays the WAL into the memtable.
func (s *Store) recover() error {
	if err := s.fs.MkdirAll(s.dir); err != nil {
		return fmt.Errorf("store: create dir %s: %w", s.dir, mapNoSpace(err))
	}
	if err := s.takeLock(); err != nil {
		return err
	}
	names, err := s.fs.List(s.dir)
	if err != nil {
		return fmt.Errorf("store: list %s: %w", s.dir, err)
	}
	// Leftover temporaries are segments or meta files a crash interrupted
	// before rename: never visible, safe to delete.
	for _, n := range names {
		if strings.HasSuffix(n, ".tmp") {
			s.fs.Remove(path.Join(s.dir, n))
		}
	}
	pf, havePF, err := s.readProducers()
	if err != nil {
		return err
	}
	var legacyMarks []map[string]int64 // from before producers.json
	if data, err := vfs.ReadFile(s.fs, path.Join(s.dir, metaName)); err == nil {
		var m storeMeta
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("store: %s is corrupt (%v); it records the retention floor, restore it or remove it to reset it", path.Join(s.dir, metaName), err)
		}
		s.floor = m.FloorSeq
		legacyMarks = append(legacyMarks, m.Producers)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: read %s: %w", metaName, err)
	}
	segs, err := s.loadSegments(names, s.floor)
	if err != nil {
		return err
	}
	s.segs = segs
	base := s.floor
	for _, sg := range segs {
		base = max(base, sg.last)
		legacyMarks = append(legacyMarks, sg.producers)
	}
	nowMS := s.clk.Now().UnixMilli()
	// The marks as of base: producers.json's (as of its as_of_seq) plus
	// those of the WAL records between that seq and base, which a flush
	// keeps until producers.json is written. A store from before
	// producers.json has them in meta.json and segment footers instead.
	markBase := base
	if havePF {
		markBase = min(max(pf.AsOf, s.floor), base)
		for _, e := range pf.Producers {
			s.producers[e.Name] = max(s.producers[e.Name], e.Seq)
			s.producerSeen[e.Name] = e.SeenMS
		}
	} else {
		for _, lm := range legacyMarks {
			for p, v := range lm {
				s.producers[p] = max(s.producers[p], v)
				s.producerSeen[p] = nowMS
			}
		}
	}
	rep, err := replayWAL(s.fs, s.dir, names, base, markBase)
	if err != nil {
		return fmt.Errorf("store: recover %s: %w", s.dir, err)
	}
	for _, rec := range rep.flushed {
		for _, m := range rec.Marks {
			s.producers[m.Producer] = max(s.producers[m.Producer], m.Seq)
			s.producerSeen[m.Producer] = nowMS
		}
	}
	for _, msg := range rep.torn {
		s.log.Info("wal recovery: " + msg + " (a write the crash interrupted; it was never acknowledged)")
	}
	s.wal = wal{fs: s.fs, dir: s.dir, next: rep.maxNum + 1, files: rep.files}
	var firstWAL uint64
	if len(rep.files) > 0 {
		firstWAL = rep.files[0].num
	}
	for p, v := range s.producers {
		s.segMarks[p] = v
	}
	s.mem = newMemtable(base+1, firstWAL, s.opts.MemtableBytes)
	for _, rec := range rep.records {
		s.mem.add(rec.Rows)
		for _, m := range rec.Marks {
			s.producers[m.Producer] = max(s.producers[m.Producer], m.Seq)
			s.producerSeen[m.Producer] = nowMS
			s.markSeq++
			s.mem.addMark(s.markSeq, rec.Last, m)
		}
	}
	s.lastSeq.Store(s.mem.last())
	if s.mem.last() < base {
		s.lastSeq.Store(base)
	}
	// A fresh file: the newest old file may end in a torn record, and
	// appending after it would turn a harmless torn tail into corruption.
	if err := s.wal.rotate(); err != nil {
		return fmt.Errorf("store: %w", mapNoSpace(err))
	}
	if len(rep.files) == 0 {
		s.mem.walNum = s.wal.curNum
	}
	if !havePF || markBase < base {
		// Give the marks as of base their one durable place now, before a
		// flush trims the WAL records or a merge drops the footers that
		// held some of them.
		if err := s.persistSegMarks(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	s.log.Info("store opened", "dir", s.dir, "segments", len(segs), "wal_records", len(rep.records), "last_seq", s.lastSeq.Load())
	return nil
}
