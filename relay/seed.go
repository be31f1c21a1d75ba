package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/finelog/finelog/internal/vfs"
)

// ErrCorruptSeed means the seed file exists but cannot be read or parsed.
// The seed is the only record of where forwarding starts while the target
// has never answered, so the relay stops rather than guess: guessing the
// source's current end would skip every row stored since the relay was
// enabled.
var ErrCorruptSeed = errors.New("relay seed file is corrupt or unreadable")

// seedVersion is bumped if the meaning of a field changes; a file with
// another version is refused rather than misread.
const seedVersion = 1

// Seed is where the relay started forwarding, fixed durably when the relay
// was first enabled on this store for Target, before Target was ever
// contacted: every source seq above Cursor is to be forwarded. It is used
// when the target first answers and does not know this producer; a target
// that knows the producer says itself where to resume.
type Seed struct {
	Version  int    `json:"version"`
	Target   string `json:"target"`
	Producer string `json:"producer"`
	Cursor   int64  `json:"cursor"`
	// From says how Cursor was chosen (for operators reading the file).
	From string `json:"from"`
	// CreatedUnixMS is the injected clock's time when the relay was
	// enabled (for operators; never used in a decision).
	CreatedUnixMS int64 `json:"created_unix_ms"`
}

// corruptSeed wraps a seed problem with the file and what to do.
func corruptSeed(path, problem string) error {
	return fmt.Errorf("%w: %s %s; it records where forwarding started when the relay was enabled. Fix it, or remove it to start forwarding at the source's current end (rows stored since the relay was enabled and not yet forwarded would then be skipped)",
		ErrCorruptSeed, path, problem)
}

// readSeed returns (nil, nil) when there is no file. It makes the name it
// read durable: the relay acts on it, and a seed whose rename was not yet
// synced must not vanish in a crash after that.
func readSeed(fsys vfs.FS, path string) (*Seed, error) {
	data, err := vfs.ReadFile(fsys, path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, corruptSeed(path, fmt.Sprintf("cannot be read (%v)", err))
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		// Not the file's fault: retried with backoff.
		return nil, stateError{fmt.Errorf("make relay seed %s durable: %w", path, err)}
	}
	var s Seed
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, corruptSeed(path, fmt.Sprintf("is not valid JSON (%d bytes: %v)", len(data), err))
	}
	if problem := headerProblem(s.Version, seedVersion, s.Target, s.Producer, s.Cursor); problem != "" {
		return nil, corruptSeed(path, problem)
	}
	return &s, nil
}

func writeSeed(fsys vfs.FS, path string, s Seed) error {
	s.Version = seedVersion
	return writeStateFile(fsys, path, "seed", s)
}
