package store

import (
	"encoding/json"
	"fmt"
	"path"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/parquet-go/parquet-go"
)

// SegmentInfo describes a sealed segment file: what the object tier
// uploads and what `finelog segments ls` shows.
type SegmentInfo struct {
	Name       string
	Path       string
	Size       int64
	First      int64
	Last       int64
	Rows       int64
	MinEpochMS int64
	MaxEpochMS int64
	WrittenMS  int64
	Producers  map[string]int64
}

// ListSegments reads the footer metadata of every sealed segment in dir, in
// seq order. Only files renamed into place are listed; the store renames a
// segment only after its bytes are fsynced, so every one listed is whole.
// A segment a merge or retention removes between the listing and the read
// is skipped.
func ListSegments(fsys vfs.FS, dir string) ([]SegmentInfo, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("list segments in %s: %w", dir, err)
	}
	var out []SegmentInfo
	for _, n := range names {
		first, last, ok := parseSegName(n)
		if !ok {
			continue
		}
		info, err := readSegmentInfo(fsys, path.Join(dir, n))
		if err != nil {
			if _, serr := fsys.Stat(path.Join(dir, n)); serr != nil {
				continue
			}
			return nil, err
		}
		if info.First != first || info.Last != last {
			return nil, fmt.Errorf("segment %s: footer says seqs [%d,%d], which does not match its name", info.Path, info.First, info.Last)
		}
		info.Name = n
		out = append(out, info)
	}
	return out, nil
}

// ProducersFile is the name, in the store dir, of the file holding the
// producer marks; a store rebuilt elsewhere needs it to keep dropping
// re-sent batches.
const ProducersFile = producersName

// ProducersAsOf returns the seq the producer marks in a ProducersFile's
// bytes are as of: they hold every mark of the rows up to that seq. An
// object tier records a segment only with marks at least as of its last
// seq, so a store rebuilt from the bucket drops a re-sent batch of any
// uploaded row.
func ProducersAsOf(data []byte) (int64, error) {
	var pf producersFile
	if err := json.Unmarshal(data, &pf); err != nil {
		return 0, fmt.Errorf("%s: %w", producersName, err)
	}
	return pf.AsOf, nil
}

// IsSegmentName reports whether name is a sealed segment's file name.
func IsSegmentName(name string) bool {
	_, _, ok := parseSegName(name)
	return ok
}

// DescribeSegment reads one sealed segment's footer metadata.
func DescribeSegment(fsys vfs.FS, p string) (SegmentInfo, error) {
	info, err := readSegmentInfo(fsys, p)
	info.Name = path.Base(p)
	return info, err
}

func readSegmentInfo(fsys vfs.FS, p string) (SegmentInfo, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("open segment %s: %w", p, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("stat segment %s: %w", p, err)
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("segment %s is unreadable: %w", p, err)
	}
	metaS, ok := pf.Lookup("finelog.segment")
	if !ok {
		return SegmentInfo{}, fmt.Errorf("segment %s: missing finelog.segment footer metadata", p)
	}
	var m segMeta
	if err := json.Unmarshal([]byte(metaS), &m); err != nil {
		return SegmentInfo{}, fmt.Errorf("segment %s: finelog.segment metadata: %w", p, err)
	}
	written := m.Written
	if written == 0 {
		written = m.MaxEpoch
	}
	return SegmentInfo{Path: p, Size: st.Size(), First: m.First, Last: m.Last, Rows: m.Rows,
		MinEpochMS: m.MinEpoch, MaxEpochMS: m.MaxEpoch, WrittenMS: written, Producers: m.Producers}, nil
}
