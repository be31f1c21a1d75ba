package relay

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/finelog/finelog/internal/vfs"
)

// PinName is the retention pin the relay holds on its source store.
const PinName = "relay"

// LoadProducerID returns the producer id stored at path, creating
// "<cluster>/<16 random hex digits>" durably on first use. The random part
// makes a store that was wiped and recreated (seqs from 1 again) a new
// producer, so the target does not drop its rows as already applied. The
// file lives beside the watermark and goes when the data dir does.
func LoadProducerID(fsys vfs.FS, path, cluster string) (string, error) {
	// Durable read: a first write whose directory sync failed leaves the
	// file visible; a crash must not then swap the id under the watermark.
	data, err := vfs.ReadFileDurable(fsys, path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(data))
		if id == "" || !strings.HasPrefix(id, cluster+"/") {
			return "", fmt.Errorf("relay producer id file %s holds %q, want %q followed by an id; was --cluster changed? Remove the file (and the watermark beside it) to start as a new producer", path, id, cluster+"/")
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read relay producer id %s: %w", path, err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate relay producer id: %w", err)
	}
	id := cluster + "/" + hex.EncodeToString(b[:])
	if err := vfs.WriteFileAtomic(fsys, path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("write relay producer id %s: %w", path, err)
	}
	return id, nil
}
