package relay

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
)

// Enable fixes where forwarding starts, durably, without contacting the
// target: a watermark for this target and producer already says so;
// otherwise the seed file does, and when there is none it is written now
// at the source's newest seq (0 with Backfill). Every row stored after
// Enable returns is forwarded, however long the target stays unreachable.
// The daemon calls it before it accepts writes; Step calls it first if
// nobody did. It does nothing once it succeeded.
func (f *Forwarder) Enable(ctx context.Context) error {
	f.stepMu.Lock()
	defer f.stepMu.Unlock()
	return f.enable(ctx)
}

func (f *Forwarder) enable(ctx context.Context) error {
	if f.enabled {
		return nil
	}
	w, err := readWatermark(f.cfg.FS, f.cfg.StatePath)
	if err != nil {
		return err
	}
	if w != nil && f.ours(w.Target, w.Producer) {
		f.enabled = true
		f.provisional(w.Cursor)
		return nil
	}
	s, err := readSeed(f.cfg.FS, f.cfg.SeedPath)
	if err != nil {
		return err
	}
	if s == nil || !f.ours(s.Target, s.Producer) {
		if s != nil {
			f.log.Warn("relay seed belongs to another target or producer; enabling the relay anew for this one",
				"seed_target", s.Target, "seed_cursor", s.Cursor, "file", f.cfg.SeedPath)
		}
		last, err := f.cfg.Source.LastSeq(ctx)
		if err != nil {
			return sourceError{fmt.Errorf("read source last seq: %w", err)}
		}
		next := Seed{Target: f.cfg.Target, Producer: f.cfg.Producer, Cursor: last, From: "source's current end (no backfill)",
			CreatedUnixMS: f.cfg.Clock.Now().UnixMilli()}
		if f.cfg.Backfill {
			next.Cursor, next.From = 0, "backfill from the first row"
		}
		if err := writeSeed(f.cfg.FS, f.cfg.SeedPath, next); err != nil {
			return stateError{err}
		}
		f.log.Info("relay enabled: every row after the seed cursor will be forwarded", "cursor", next.Cursor, "from", next.From, "file", f.cfg.SeedPath)
		s = &next
	}
	f.seed = *s
	f.enabled = true
	f.provisional(s.Cursor)
	return nil
}

// ours reports whether a watermark or seed was written for this relay.
func (f *Forwarder) ours(target, producer string) bool {
	return target == f.cfg.Target && producer == f.cfg.Producer
}

// provisional shows the start point before the target answered, so the lag
// counts every row stored since the relay was enabled.
func (f *Forwarder) provisional(cursor int64) {
	f.wm.Cursor = cursor
	f.setStatus(func(s *Status) { s.Watermark = cursor })
}

// resolve asks the target where this producer stopped and picks the start
// point: the watermark file if it is for this target and producer; else
// the target's applied mark if it knows the producer; else the seed. The
// choice is written as the watermark at once so a crash before the first
// push cannot move the start forward.
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
			f.sentMark.Store(max(f.sentMark.Load(), st.Applied))
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
	if w != nil && f.ours(w.Target, w.Producer) {
		if w.Cursor > last {
			f.stuck = fmt.Errorf("%w: watermark %s is at seq %d but the local store ends at seq %d; the store was reset or replaced under producer id %q. Forwarding from here would skip its next %d rows: remove the watermark and give the relay a new producer id",
				ErrSourceBehind, f.cfg.StatePath, w.Cursor, last, f.cfg.Producer, w.Cursor-last)
			return f.stuck
		}
		if known && applied > last {
			return f.targetAhead(applied, last, "the local store's newest seq")
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
		f.log.Warn("relay watermark belongs to another target or producer; reseeding from the target's applied mark, else the seed",
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
	default:
		cursor, from = f.seed.Cursor, "seed ("+f.seed.From+")"
	}
	seed := Watermark{Target: f.cfg.Target, Producer: f.cfg.Producer, Cursor: cursor, UpdatedUnixMS: f.cfg.Clock.Now().UnixMilli()}
	if err := writeWatermark(f.cfg.FS, f.cfg.StatePath, seed); err != nil {
		return stateError{err}
	}
	f.adopt(seed)
	f.log.Info("relay seeded", "cursor", cursor, "from", from)
	return nil
}

// targetAhead stops the relay: the target's mark for this producer is past
// bound, beyond anything the relay sent it, so it would drop the relay's
// next rows as already applied.
func (f *Forwarder) targetAhead(mark, bound int64, what string) error {
	f.m.targetAhead.Set(float64(mark - bound))
	f.stuck = fmt.Errorf("%w: target %s reports producer %q applied up to seq %d, past %s (%d); someone else pushes under this producer id, and the target would drop the next %d rows as duplicates. Rows are kept: find the other writer (check the target's auth policy), then restart the relay with a new producer id (remove the producer file and watermark beside --relay-state)",
		ErrTargetAhead, f.cfg.Target, f.cfg.Producer, mark, what, bound, mark-bound)
	return f.stuck
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
