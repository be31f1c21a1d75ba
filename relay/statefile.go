package relay

import (
	"encoding/json"
	"fmt"

	"github.com/finelog/finelog/internal/vfs"
)

// The watermark and the seed are small JSON files with the same header
// (version, target, producer, cursor), written tmp -> fsync -> rename -> dir
// fsync. These are the parts they share.

// headerProblem says what is wrong with a state file's header, or "" when
// nothing is.
func headerProblem(version, want int, target, producer string, cursor int64) string {
	switch {
	case version != want:
		return fmt.Sprintf("has version %d, this relay reads version %d", version, want)
	case target == "":
		return "has no target"
	case producer == "":
		return "has no producer"
	case cursor < 0:
		return fmt.Sprintf("has negative cursor %d", cursor)
	}
	return ""
}

// writeStateFile writes v as indented JSON, durably; what names the file
// in errors ("watermark", "seed").
func writeStateFile(fsys vfs.FS, path, what string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := vfs.WriteFileAtomic(fsys, path, data); err != nil {
		return fmt.Errorf("write relay %s %s: %w", what, path, err)
	}
	return nil
}
