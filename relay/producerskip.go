package relay

import (
	"errors"
	"fmt"

	"github.com/finelog/finelog/store"
)

// The target refuses a producer batch that moves the producer's mark more
// than store.MaxProducerSkip past the rows it carries (store.ErrProducerSkip,
// invalid_argument). A relay legitimately skips seqs the target never sees:
// rows its source's retention deleted, rows of other clusters, rows it
// dead-lettered; a batch reaches back over all of them so the ranges the
// target sees stay contiguous. Taken for a poison row, a refusal of such a
// batch would dead-letter good rows, so a batch that skips more is sent as
// a sequence of contiguous pieces that each skip at most the bound: batches
// without rows that only move the mark over the skipped seqs, and batches
// with the rows.

// skipped is how many seqs of b's range b carries no row for: what b would
// move its producer's mark past its rows, from FirstSeq-1.
func skipped(b Batch) int64 {
	return b.LastSeq - (b.FirstSeq - 1) - int64(len(b.Rows))
}

// skipPieces returns b unchanged when the target takes it as it is, else
// the pieces to push in order instead: they cover b's range exactly (each
// starts where the one before ended), carry b's rows in order, and each
// skips at most store.MaxProducerSkip seqs. A batch without a producer has
// no mark, so it is never split.
func skipPieces(b Batch) []Batch {
	const limit = store.MaxProducerSkip
	if b.Producer == "" || skipped(b) <= limit {
		return []Batch{b}
	}
	var out []Batch
	piece := func(first, last int64, rows []store.Row) {
		p := b
		p.FirstSeq, p.LastSeq, p.Rows = first, last, rows
		out = append(out, p)
	}
	// end: the last seq the pieces so far cover. prev: the last seq of the
	// piece being built (end while it has no rows); gap: the seqs in
	// (end, prev] it carries no row for.
	end := b.FirstSeq - 1
	prev := end
	var gap int64
	first := 0 // b.Rows[first:i] are the rows of the piece being built
	// moveMarkTo ends the piece being built at prev, then covers the seqs
	// up to `to` with row-less pieces of at most limit seqs, leaving fewer
	// than limit+1 for the piece that follows.
	moveMarkTo := func(i int, to int64) {
		if i > first {
			piece(end+1, prev, b.Rows[first:i])
			end, first = prev, i
		}
		for to-end > limit {
			piece(end+1, end+limit, nil)
			end += limit
		}
		prev, gap = end, 0
	}
	for i, r := range b.Rows {
		if g := r.Seq - prev - 1; gap+g <= limit {
			gap += g
		} else {
			moveMarkTo(i, r.Seq-1)
			gap = r.Seq - 1 - end
		}
		prev = r.Seq
	}
	if gap+b.LastSeq-prev > limit {
		moveMarkTo(len(b.Rows), b.LastSeq)
	}
	if b.LastSeq > end {
		piece(end+1, b.LastSeq, b.Rows[first:])
	}
	return out
}

// markRefused is the error for a row-less piece the target refused as
// invalid. No row is to blame, so bisecting would dead-letter good rows:
// the relay holds them instead (ErrTargetRejecting) until the target takes
// the piece. A target built with a smaller skip bound refuses it so.
func markRefused(p Batch, err error) error {
	return fmt.Errorf("%w: it refused a batch without rows that moves producer %q's mark over seqs %d..%d (%d seqs; this relay sends at most %d, store.MaxProducerSkip), so no row is to blame; rows are kept and retried (check the target's version); reason: %s",
		ErrTargetRejecting, p.Producer, p.FirstSeq, p.LastSeq, p.LastSeq-p.FirstSeq+1, store.MaxProducerSkip, reasonText(err))
}

// blamesRows reports whether a push failed because of rows it carried: the
// target rejected it as invalid, and not after a row-less piece.
func blamesRows(err error) bool {
	return classify(err) == ClassInvalidArgument && !errors.Is(err, ErrTargetRejecting)
}
