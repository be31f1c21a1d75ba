package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// DeadLetter is one line of the dead-letter file: a row the target rejected
// as invalid, with the target's reason. The relay never drops a row without
// writing one of these first.
type DeadLetter struct {
	Target   string    `json:"target"`
	Producer string    `json:"producer"`
	Reason   string    `json:"reason"`
	AtUnixMS int64     `json:"at_unix_ms"`
	Row      store.Row `json:"row"`
}

// appendDeadLetters appends one JSON line per record and fsyncs, so the
// records are durable before the watermark (or the target's applied mark)
// can move past the rows.
func appendDeadLetters(fsys vfs.FS, path string, recs []DeadLetter) error {
	var buf []byte
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode dead letter: %w", err)
		}
		buf = append(buf, line...)
		buf = append(buf, '\n')
	}
	info, err := fsys.Stat(path)
	var f vfs.File
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f, err = fsys.Create(path)
		if err != nil {
			return fmt.Errorf("create dead-letter file %s: %w", path, err)
		}
		created = true
	case err != nil:
		return fmt.Errorf("stat dead-letter file %s: %w", path, err)
	default:
		f, err = fsys.OpenAppend(path)
		if err != nil {
			return fmt.Errorf("open dead-letter file %s: %w", path, err)
		}
		// A crash can leave a torn last line; start on a fresh line so every
		// later record still parses.
		if n := info.Size(); n > 0 {
			last := make([]byte, 1)
			if _, rerr := f.ReadAt(last, n-1); rerr == nil && last[0] != '\n' {
				buf = append([]byte{'\n'}, buf...)
			}
		}
	}
	if _, err = f.Write(buf); err != nil {
		f.Close()
		return fmt.Errorf("write dead-letter file %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync dead-letter file %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close dead-letter file %s: %w", path, err)
	}
	if created {
		// The new directory entry must survive a crash too.
		if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("sync directory of dead-letter file %s: %w", path, err)
		}
	}
	return nil
}
