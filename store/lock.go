package store

import (
	"errors"
	"fmt"
	"path"

	"github.com/finelog/finelog/internal/vfs"
)

// lockName is the data dir's lock file: two processes on one data dir would
// hand out the same seqs and delete each other's files.
const lockName = "LOCK"

// ErrDirInUse: another process (or another open Store in this one) has the
// data dir open.
var ErrDirInUse = errors.New("data dir is in use")

func (s *Store) takeLock() error {
	l, err := s.fs.Lock(path.Join(s.dir, lockName))
	var le *vfs.LockedError
	switch {
	case errors.As(err, &le):
		who := "pid unknown"
		if le.PID > 0 {
			who = fmt.Sprintf("pid %d", le.PID)
		}
		return &dirInUseError{msg: fmt.Sprintf("store: data dir %s is in use by another finelogd (%s): stop it first, or use another --data-dir (lock file %s)",
			s.dir, who, le.Path), locked: le}
	case err != nil:
		return fmt.Errorf("store: lock data dir %s: %w", s.dir, mapNoSpace(err))
	}
	s.lock = l
	return nil
}

// dirInUseError is ErrDirInUse with the lock's holder (a *vfs.LockedError),
// so the daemon can name its own --data-dir and the pid.
type dirInUseError struct {
	msg    string
	locked *vfs.LockedError
}

func (e *dirInUseError) Error() string   { return e.msg + ": " + ErrDirInUse.Error() }
func (e *dirInUseError) Unwrap() []error { return []error{ErrDirInUse, e.locked} }
