package objstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Entry is one uploaded segment in the manifest. An entry is added only
// after its object was uploaded and verified, so every entry names an object
// that holds exactly Size bytes with digest SHA256.
type Entry struct {
	// Segment is the store's file name for it.
	Segment string `json:"segment"`
	// Object is the object name under the bucket prefix.
	Object     string `json:"object"`
	First      int64  `json:"first_seq"`
	Last       int64  `json:"last_seq"`
	Rows       int64  `json:"rows"`
	MinEpochMS int64  `json:"min_epoch_ms"`
	MaxEpochMS int64  `json:"max_epoch_ms"`
	WrittenMS  int64  `json:"written_ms,omitempty"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
	// Producers are the segment's idempotent-batch high-water marks, so a
	// store rebuilt from the bucket still drops a relay's re-sent batch.
	Producers  map[string]int64 `json:"producers,omitempty"`
	UploadedMS int64            `json:"uploaded_ms"`
}

// Manifest lists the segments that live in the bucket. Generation grows by
// one with every change, so of two copies the higher one is newer.
type Manifest struct {
	Generation uint64  `json:"generation"`
	Entries    []Entry `json:"entries"`
	// Files are small store files kept with the manifest (the store's
	// producer marks), restored when the store is rebuilt from the bucket.
	Files map[string][]byte `json:"files,omitempty"`
}

const manifestFormat = "finelog-manifest-v1"

type manifestFile struct {
	Format string `json:"format"`
	Manifest
	// Checksum is the SHA-256 of the file encoded with Checksum empty: a
	// damaged copy is refused instead of silently dropping segments.
	Checksum string `json:"checksum"`
}

// Encode renders m as checksummed JSON.
func (m Manifest) Encode() []byte {
	f := manifestFile{Format: manifestFormat, Manifest: m}
	if f.Entries == nil {
		f.Entries = []Entry{}
	}
	body, _ := json.Marshal(f)
	sum := sha256.Sum256(body)
	f.Checksum = hex.EncodeToString(sum[:])
	out, _ := json.MarshalIndent(f, "", " ")
	return append(out, '\n')
}

// DecodeManifest parses and checks an encoded manifest. where names the
// copy (a path or an object) for the error message.
func DecodeManifest(where string, data []byte) (Manifest, error) {
	var f manifestFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Manifest{}, fmt.Errorf("manifest %s: %v", where, err)
	}
	if f.Format != manifestFormat {
		return Manifest{}, fmt.Errorf("manifest %s: format %q, want %q", where, f.Format, manifestFormat)
	}
	want := f.Checksum
	f.Checksum = ""
	body, _ := json.Marshal(f)
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != want {
		return Manifest{}, fmt.Errorf("manifest %s: checksum mismatch (the copy is damaged)", where)
	}
	return f.Manifest, nil
}

// With returns the next generation: e added, and every entry whose seq
// range lies inside e's removed (a merge's output replaces its inputs; a
// re-upload of the same segment replaces itself). It returns the objects
// no longer referenced.
func (m Manifest) With(e Entry) (Manifest, []string) {
	next := Manifest{Generation: m.Generation + 1, Files: m.Files}
	var dropped []string
	for _, x := range m.Entries {
		if x.First >= e.First && x.Last <= e.Last {
			if x.Object != e.Object {
				dropped = append(dropped, x.Object)
			}
			continue
		}
		next.Entries = append(next.Entries, x)
	}
	next.Entries = append(next.Entries, e)
	sort.Slice(next.Entries, func(i, j int) bool { return next.Entries[i].First < next.Entries[j].First })
	return next, dropped
}

// Without returns the next generation with the named objects removed.
func (m Manifest) Without(objects []string) Manifest {
	next := Manifest{Generation: m.Generation + 1, Files: m.Files}
	for _, x := range m.Entries {
		if !slices.Contains(objects, x.Object) {
			next.Entries = append(next.Entries, x)
		}
	}
	return next
}

// Find returns the entry for object.
func (m Manifest) Find(object string) (Entry, bool) {
	for _, e := range m.Entries {
		if e.Object == object {
			return e, true
		}
	}
	return Entry{}, false
}

// Covers reports whether an entry holds every row of [first, last].
func (m Manifest) Covers(first, last int64) bool {
	for _, e := range m.Entries {
		if e.First <= first && last <= e.Last {
			return true
		}
	}
	return false
}

// HighestSeq is the largest uploaded seq (0 when empty): a store rebuilt
// from the bucket continues after it.
func (m Manifest) HighestSeq() int64 {
	var h int64
	for _, e := range m.Entries {
		h = max(h, e.Last)
	}
	return h
}

// Producers merges every entry's producer marks, keeping the highest.
func (m Manifest) Producers() map[string]int64 {
	out := map[string]int64{}
	for _, e := range m.Entries {
		for p, s := range e.Producers {
			out[p] = max(out[p], s)
		}
	}
	return out
}

// Bytes is the total object size.
func (m Manifest) Bytes() int64 {
	var n int64
	for _, e := range m.Entries {
		n += e.Size
	}
	return n
}

// Object names in the bucket, under the location's prefix.
const (
	segmentsDir = "segments/"
	manifestDir = "manifest/"
)

// SegmentObject is the object name a segment file with digest sum is
// uploaded under. The digest in the name means a segment rewritten with the
// same seq range (a flush redone after a crash) never overwrites an object
// the manifest already names with other bytes: the new object replaces the
// old entry, and the old object is deleted after that is published.
func SegmentObject(segment string, sum Sum) string {
	return segmentsDir + strings.TrimSuffix(segment, ".parquet") + "-" + sum.SHA256Hex()[:16] + ".parquet"
}

// FindSegment returns the entry uploaded from the named segment file.
func (m Manifest) FindSegment(segment string) (Entry, bool) {
	for _, e := range m.Entries {
		if e.Segment == segment {
			return e, true
		}
	}
	return Entry{}, false
}

func manifestObject(gen uint64) string { return fmt.Sprintf("%s%020d.json", manifestDir, gen) }

func manifestGen(object string) (uint64, bool) {
	s, ok := strings.CutPrefix(object, manifestDir)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".json")
	if !ok {
		return 0, false
	}
	g, err := strconv.ParseUint(s, 10, 64)
	return g, err == nil
}
