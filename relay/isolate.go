package relay

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/store"
)

// isolate bisects a batch the target rejected as invalid. Halves are pushed
// left to right and a single rejected row is dead-lettered (fsynced) before
// anything after it is pushed, so neither the watermark nor the target's
// applied mark can pass a row that has no record.
func (f *Forwarder) isolate(ctx context.Context, b Batch, reason error, prog *progress) error {
	if len(b.Rows) == 1 {
		if f.cfg.MaxDeadLetterRun > 0 && f.deadRun >= f.cfg.MaxDeadLetterRun {
			return fmt.Errorf("%w: %d rows in a row were rejected as invalid and none accepted; holding seq %d and later instead of dead-lettering them (check the target's version and its policy for cluster %q); last reason: %s",
				ErrTargetRejecting, f.deadRun, b.Rows[0].Seq, f.cfg.Cluster, reasonText(reason))
		}
		if err := f.deadLetter(b.Rows[0], reason); err != nil {
			return err
		}
		f.deadRun++
		prog.covered = b.LastSeq
		prog.deadLettered++
		return nil
	}
	m := len(b.Rows) / 2
	halves := [2]Batch{b, b}
	halves[0].Rows, halves[0].LastSeq = b.Rows[:m], b.Rows[m-1].Seq
	halves[1].Rows = b.Rows[m:]
	for i := range halves {
		h := halves[i]
		// Cover everything settled so far (a dead-lettered seq included), so
		// the ranges the target sees stay contiguous.
		if i > 0 {
			h.FirstSeq = f.rangeStart(prog.covered)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := f.push(ctx, h, nil)
		if err == nil {
			f.acked(h)
			prog.covered = h.LastSeq
			prog.forwarded += int64(len(h.Rows))
			continue
		}
		if !blamesRows(err) {
			return err
		}
		if err := f.isolate(ctx, h, err, prog); err != nil {
			return err
		}
	}
	return nil
}

func (f *Forwarder) deadLetter(r store.Row, reason error) error {
	rec := DeadLetter{
		Target:   f.cfg.Target,
		Producer: f.cfg.Producer,
		Reason:   reasonText(reason),
		AtUnixMS: f.cfg.Clock.Now().UnixMilli(),
		Row:      r,
	}
	if err := appendDeadLetters(f.cfg.FS, f.cfg.DeadLetterPath, []DeadLetter{rec}); err != nil {
		return stateError{err}
	}
	f.log.Warn("target rejected a row; written to the dead-letter file",
		"seq", r.Seq, "key", r.Key, "reason", rec.Reason, "file", f.cfg.DeadLetterPath)
	return nil
}

// reasonText is the target's message without our own wrapping.
func reasonText(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code().String() + ": " + ce.Message()
	}
	return err.Error()
}
