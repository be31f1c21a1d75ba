package relay

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
)

// resolve picks the start point: the watermark file if it is for this
// target and producer; else where the target says this producer stopped;
// else the source's newest seq (or 0 with Backfill). The seed is written at
// once so a crash before the first push cannot move the start forward.
func (f *Forwarder) resolve(ctx context.Context) error {
	w, err := readWatermark(f.cfg.FS, f.cfg.StatePath)
	if err != nil {
		return err
	}
	var applied int64
	known := false
	if !f.cfg.NonIdempotent {
		st, err := f.cfg.Sink.ProducerState(ctx, f.cfg.Producer)
		switch {
		case err != nil && connect.CodeOf(err) == connect.CodeUnimplemented:
			f.log.Warn("target does not report producer state (old finelogd?); starting without it", "err", err)
		case err != nil:
			return fmt.Errorf("ask target where producer %q stopped: %w", f.cfg.Producer, err)
		default:
			applied, known = st.Applied, st.Known
			f.targetMark, f.markKnown = st.Applied, st.Known
		}
		f.refusesGaps = err == nil && st.RefusesGaps
		if f.cfg.InFlight > 1 && !f.refusesGaps {
			f.log.Warn("target does not refuse out-of-order batches (older finelogd?); pushing one batch at a time", "in_flight", f.cfg.InFlight)
		}
	}
	last, err := f.cfg.Source.LastSeq(ctx)
	if err != nil {
		return sourceError{fmt.Errorf("read source last seq: %w", err)}
	}
	if w != nil && w.Target == f.cfg.Target && w.Producer == f.cfg.Producer {
		if w.Cursor > last {
			f.stuck = fmt.Errorf("%w: watermark %s is at seq %d but the local store ends at seq %d; the store was reset or replaced under producer id %q. Forwarding from here would skip its next %d rows: remove the watermark and give the relay a new producer id",
				ErrSourceBehind, f.cfg.StatePath, w.Cursor, last, f.cfg.Producer, w.Cursor-last)
			return f.stuck
		}
		if known && applied < w.TargetApplied {
			// Not something the relay can repair safely on its own: the
			// rows may be gone from the source too. Say it loudly.
			f.m.targetLoss.Add(float64(w.TargetApplied - applied))
			f.log.Error("the target lost rows it had acked: its applied mark for this producer went back",
				"acked_up_to", w.TargetApplied, "target_applied_now", applied, "lost_seqs", w.TargetApplied-applied)
		}
		f.adopt(*w)
		f.log.Info("relay resuming from watermark", "cursor", w.Cursor, "target_applied", applied, "target_knows_producer", known)
		return nil
	}
	if w != nil {
		f.log.Warn("relay watermark belongs to another target or producer; reseeding from the target's applied mark",
			"watermark_target", w.Target, "watermark_producer", w.Producer, "watermark_cursor", w.Cursor)
	}
	var cursor int64
	from := ""
	switch {
	case known && applied > last:
		f.stuck = fmt.Errorf("%w: target %s already applied producer %q up to seq %d but the local store ends at seq %d; another store uses this producer id or this store was reset. Give this store a new producer id",
			ErrSourceBehind, f.cfg.Target, f.cfg.Producer, applied, last)
		return f.stuck
	case known:
		cursor, from = applied, "target applied mark"
	case f.cfg.Backfill:
		cursor, from = 0, "backfill from the first row"
	default:
		cursor, from = last, "source's current cursor (no backfill)"
	}
	seed := Watermark{Target: f.cfg.Target, Producer: f.cfg.Producer, Cursor: cursor, UpdatedUnixMS: f.cfg.Clock.Now().UnixMilli()}
	if err := writeWatermark(f.cfg.FS, f.cfg.StatePath, seed); err != nil {
		return stateError{err}
	}
	f.adopt(seed)
	f.log.Info("relay seeded", "cursor", cursor, "from", from)
	return nil
}

func (f *Forwarder) adopt(w Watermark) {
	f.wm = w
	f.started = true
	f.m.watermark.Set(float64(w.Cursor))
	if f.cfg.Pin != nil {
		f.cfg.Pin(w.Cursor)
	}
	f.setStatus(func(s *Status) { s.fromWatermark(w) })
}
