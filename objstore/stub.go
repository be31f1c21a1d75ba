package objstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/finelog/finelog/internal/vfs"
)

// An open stub keeps, on local disk, the bytes of an evicted segment that
// the store reads to open it (footer, page index, key index): a daemon
// restarted while the bucket is down then still opens every segment, takes
// appends and serves local rows; only reads of remote rows need the bucket.
// It is written durably before the local copy is removed and checked (a
// SHA-256 over it, and the object it was cut from) before it is used; a
// stub that fails either check is ignored and the bucket is asked instead.
type openStub struct {
	object string
	sha256 string
	size   int64
	ranges []stubRange
}

type stubRange struct {
	off  int64
	data []byte
}

const stubMagic = "finelog-open-stub-v1\n"

// stubSuffix names stub files: <segment>.stub in the stub dir.
const stubSuffix = ".stub"

// cutStub reads ranges of f (the local copy of e's object).
func cutStub(f io.ReaderAt, e Entry, ranges [][2]int64) (*openStub, error) {
	s := &openStub{object: e.Object, sha256: e.SHA256, size: e.Size}
	for _, r := range ranges {
		if r[0] < 0 || r[1] < 0 || r[0]+r[1] > e.Size {
			return nil, fmt.Errorf("open range %d+%d outside the %d-byte segment", r[0], r[1], e.Size)
		}
		buf := make([]byte, r[1])
		if _, err := f.ReadAt(buf, r[0]); err != nil && !(errors.Is(err, io.EOF) && r[0]+r[1] == e.Size) {
			return nil, err
		}
		s.ranges = append(s.ranges, stubRange{off: r[0], data: buf})
	}
	return s, nil
}

func (s *openStub) encode() []byte {
	var b bytes.Buffer
	b.WriteString(stubMagic)
	for _, f := range []string{s.object, s.sha256} {
		binary.Write(&b, binary.BigEndian, uint32(len(f)))
		b.WriteString(f)
	}
	binary.Write(&b, binary.BigEndian, s.size)
	binary.Write(&b, binary.BigEndian, uint32(len(s.ranges)))
	for _, r := range s.ranges {
		binary.Write(&b, binary.BigEndian, r.off)
		binary.Write(&b, binary.BigEndian, int64(len(r.data)))
		b.Write(r.data)
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

func decodeStub(data []byte) (*openStub, error) {
	if len(data) < len(stubMagic)+sha256.Size || !bytes.HasPrefix(data, []byte(stubMagic)) {
		return nil, errors.New("not an open stub")
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(want[:], sum) {
		return nil, errors.New("open stub checksum mismatch")
	}
	r := bytes.NewReader(body[len(stubMagic):])
	s := &openStub{}
	for _, f := range []*string{&s.object, &s.sha256} {
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil || int64(n) > int64(r.Len()) {
			return nil, errors.New("open stub truncated")
		}
		buf := make([]byte, n)
		io.ReadFull(r, buf)
		*f = string(buf)
	}
	var count uint32
	if binary.Read(r, binary.BigEndian, &s.size) != nil || binary.Read(r, binary.BigEndian, &count) != nil {
		return nil, errors.New("open stub truncated")
	}
	for range count {
		var off, n int64
		if binary.Read(r, binary.BigEndian, &off) != nil || binary.Read(r, binary.BigEndian, &n) != nil || n < 0 || n > int64(r.Len()) {
			return nil, errors.New("open stub truncated")
		}
		buf := make([]byte, n)
		io.ReadFull(r, buf)
		s.ranges = append(s.ranges, stubRange{off: off, data: buf})
	}
	return s, nil
}

// readAt fills p from the stub when one range holds all of it.
func (s *openStub) readAt(p []byte, off int64) bool {
	for _, r := range s.ranges {
		if off >= r.off && off+int64(len(p)) <= r.off+int64(len(r.data)) {
			copy(p, r.data[off-r.off:])
			return true
		}
	}
	return false
}

func (t *TierFS) stubPath(seg string) string { return filepath.Join(t.stubDir, seg+stubSuffix) }

// writeStub makes the open stub of seg durable (before its local copy
// goes). Without OpenRanges it does nothing.
func (t *TierFS) writeStub(seg string, e Entry) error {
	if t.openRanges == nil || t.stubDir == "" {
		return nil
	}
	f, err := t.FS.Open(filepath.Join(t.dir, seg))
	if err != nil {
		return err
	}
	defer f.Close()
	ranges, err := t.openRanges(f, e.Size)
	if err != nil {
		return fmt.Errorf("open ranges of %s: %w", seg, err)
	}
	s, err := cutStub(f, e, ranges)
	if err != nil {
		return fmt.Errorf("open stub of %s: %w", seg, err)
	}
	if err := t.FS.MkdirAll(t.stubDir); err != nil {
		return err
	}
	return vfs.WriteFileAtomic(t.FS, t.stubPath(seg), s.encode())
}

// loadStub returns seg's open stub if there is one cut from e's object.
func (t *TierFS) loadStub(seg string, e Entry) *openStub {
	if t.stubDir == "" {
		return nil
	}
	data, err := vfs.ReadFile(t.FS, t.stubPath(seg))
	if err != nil {
		return nil
	}
	s, err := decodeStub(data)
	if err != nil || s.object != e.Object || s.sha256 != e.SHA256 || s.size != e.Size {
		return nil
	}
	return s
}

// removeStub deletes seg's open stub (the segment left the store).
func (t *TierFS) removeStub(seg string) {
	if t.stubDir != "" {
		if err := t.FS.Remove(t.stubPath(seg)); err == nil || !errors.Is(err, fs.ErrNotExist) {
			t.FS.SyncDir(t.stubDir)
		}
	}
}

// CollectStubs removes open stubs of segments the manifest no longer
// names (a crash between a segment's removal and its stub's).
func (t *TierFS) CollectStubs() error {
	if t.stubDir == "" {
		return nil
	}
	names, err := t.FS.List(t.stubDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	m := t.tier.Manifest()
	for _, n := range names {
		seg, ok := strings.CutSuffix(n, stubSuffix)
		if !ok {
			if strings.HasSuffix(n, ".tmp") {
				t.FS.Remove(filepath.Join(t.stubDir, n))
			}
			continue
		}
		if _, found := m.FindSegment(seg); !found {
			t.removeStub(seg)
		}
	}
	return nil
}
