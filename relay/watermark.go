package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/finelog/finelog/internal/vfs"
)

// ErrCorruptWatermark means the watermark file exists but cannot be read or
// parsed. The relay stops rather than guess where to resume: guessing
// forward would skip rows, guessing backward would need the operator to know
// the target dedups. Fix or remove the file (removing it reseeds from the
// target's applied mark for this producer).
var ErrCorruptWatermark = errors.New("relay watermark is corrupt or unreadable")

// watermarkVersion is bumped if the meaning of a field changes; a file with
// another version is treated as corrupt rather than misread.
const watermarkVersion = 1

// Watermark is the relay's durable state: every source seq at or below
// Cursor has been acked by Target, dead-lettered, or skipped by the loop
// guard. It is written only after the target acked.
type Watermark struct {
	Version  int    `json:"version"`
	Target   string `json:"target"`
	Producer string `json:"producer"`
	Cursor   int64  `json:"cursor"`
	// Counters since this watermark was first seeded (they survive restarts).
	Forwarded    int64 `json:"forwarded"`
	DeadLettered int64 `json:"dead_lettered"`
	Filtered     int64 `json:"filtered"`
	SourceGap    int64 `json:"source_gap"`
	// TargetApplied is the highest LastSeq the target has acked for this
	// producer (a lower bound of its applied mark). If the target later
	// reports less, it lost rows it acked.
	TargetApplied int64 `json:"target_applied,omitempty"`
	// UpdatedUnixMS is the injected clock's time at the last write (for
	// operators reading the file; never used in a decision).
	UpdatedUnixMS int64 `json:"updated_unix_ms"`
}

// readWatermark returns (nil, nil) when there is no file.
func readWatermark(fsys vfs.FS, path string) (*Watermark, error) {
	data, err := vfs.ReadFile(fsys, path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: read %s: %v", ErrCorruptWatermark, path, err)
	}
	var w Watermark
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: parse %s (%d bytes): %v", ErrCorruptWatermark, path, len(data), err)
	}
	if problem := headerProblem(w.Version, watermarkVersion, w.Target, w.Producer, w.Cursor); problem != "" {
		return nil, fmt.Errorf("%w: %s %s", ErrCorruptWatermark, path, problem)
	}
	// The relay acts on this watermark, so its name must be durable: a
	// write whose directory sync failed leaves it visible but able to
	// vanish in a crash, and a relay that resumed from it would then
	// restart from the target's mark and miss the gaps it had seen (W6).
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return nil, stateError{fmt.Errorf("make relay watermark %s durable: %w", path, err)}
	}
	return &w, nil
}

func writeWatermark(fsys vfs.FS, path string, w Watermark) error {
	w.Version = watermarkVersion
	return writeStateFile(fsys, path, "watermark", w)
}
