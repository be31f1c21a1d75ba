package relay

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// lose appends n rows that retention deletes before the relay reads them:
// their seqs are taken, their rows are gone (a relay whose pin was over the
// cap, or a store restored without them).
func (s *memSource) lose(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last += n
}

// The target refuses a batch that moves the producer's mark more than
// store.MaxProducerSkip past its rows. A relay that reaches back over a
// longer run of seqs the target never saw (lost at the source, filtered,
// dead-lettered) must still deliver every good row once, dead-letter
// nothing good, and end with its watermark and the target's mark at the
// source's last seq.
func TestRunsLongerThanProducerSkipAreDelivered(t *testing.T) {
	if testing.Short() {
		t.Skip("moves runs of 150k+ seqs")
	}
	if store.MaxProducerSkip >= 150_000 {
		t.Fatalf("MaxProducerSkip %d: the runs below no longer exceed it", store.MaxProducerSkip)
	}
	poisonRun := store.MaxProducerSkip + 1000
	cases := []struct {
		name  string
		tweak func(*Config)
		gaps  bool // the target says it refuses overtaking batches
		slow  bool // tens of thousands of pushes: skipped under -race
		// before runs ahead of the first Step (the target does not know
		// the producer yet), after between the first Step and the second.
		before, after func(*memSource)
		want          Status
	}{
		{
			name:   "pinned loss of 200k seqs after forwarding",
			before: func(s *memSource) { s.addN(10) },
			after:  func(s *memSource) { s.lose(200_000); s.addN(50) },
			want:   Status{Watermark: 200_060, Forwarded: 60, SourceGap: 200_000},
		},
		{
			name:   "pinned loss of 200k seqs before the first push",
			before: func(s *memSource) { s.lose(200_000); s.addN(50) },
			after:  func(s *memSource) { s.addN(5) },
			want:   Status{Watermark: 200_055, Forwarded: 55, SourceGap: 200_000},
		},
		{
			name:   "150k filtered rows",
			tweak:  func(c *Config) { c.BatchRows = 5000 },
			before: func(s *memSource) { s.addN(10) },
			after:  func(s *memSource) { addOtherCluster(s, 150_000); s.addN(20) },
			want:   Status{Watermark: 150_030, Forwarded: 30, Filtered: 150_000},
		},
		{
			name:   "150k filtered rows, 4 in flight",
			tweak:  func(c *Config) { c.BatchRows = 5000; c.InFlight = 4 },
			gaps:   true,
			before: func(s *memSource) { s.addN(10) },
			after:  func(s *memSource) { addOtherCluster(s, 150_000); s.addN(20_000) },
			want:   Status{Watermark: 170_010, Forwarded: 20_010, Filtered: 150_000},
		},
		{
			name:   "150k filtered rows, then a poison row",
			tweak:  func(c *Config) { c.BatchRows = 5000 },
			before: func(s *memSource) { s.addN(10) },
			after:  func(s *memSource) { addOtherCluster(s, 150_000); s.addN(20, 7) },
			want:   Status{Watermark: 150_030, Forwarded: 29, Filtered: 150_000, DeadLettered: 1},
		},
		{
			// The filtered rows alone are within the bound; the
			// dead-lettered ones take the reach-back past it.
			name:   "60k filtered rows, then a dead-letter run of 6k",
			tweak:  func(c *Config) { c.BatchRows = 5000; c.MaxDeadLetterRun = -1 },
			before: func(s *memSource) { s.addN(10) },
			after: func(s *memSource) {
				addOtherCluster(s, 60_000)
				poison := make([]int, 6000)
				for i := range poison {
					poison[i] = i + 1
				}
				s.addN(6020, poison...)
			},
			want: Status{Watermark: 66_030, Forwarded: 30, Filtered: 60_000, DeadLettered: 6000},
		},
		{
			name:   "dead-letter run longer than the skip bound",
			slow:   true,
			tweak:  func(c *Config) { c.BatchRows = 5000; c.MaxDeadLetterRun = -1 },
			before: func(s *memSource) { s.addN(10) },
			after: func(s *memSource) {
				poison := make([]int, poisonRun)
				for i := range poison {
					poison[i] = i + 1
				}
				s.addN(poisonRun+20, poison...)
			},
			want: Status{Watermark: int64(10 + poisonRun + 20), Forwarded: 30, DeadLettered: int64(poisonRun)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.slow && raceEnabled {
				t.Skip("tens of thousands of pushes; too slow under the race detector")
			}
			h := newHarness(t)
			h.tweak = tc.tweak
			h.tgt.refusesGaps = tc.gaps
			tc.before(h.src)
			f := h.forwarder(t)
			h.drain(t, f, 1)
			tc.after(h.src)
			h.drain(t, f, 1)

			last, _ := h.src.LastSeq(context.Background())
			checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, last)
			// checkDelivery found a record for every poison row; none
			// may be left for a good one.
			dl, _ := vfs.ReadFile(h.fs, dlPath)
			if n := int64(bytes.Count(dl, []byte("\n"))); n != tc.want.DeadLettered {
				t.Errorf("%d dead-letter records, want %d", n, tc.want.DeadLettered)
			}
			st := f.Status()
			if st.State != StateOK || st.Watermark != last || st.Watermark != tc.want.Watermark ||
				st.Forwarded != tc.want.Forwarded || st.DeadLettered != tc.want.DeadLettered ||
				st.Filtered != tc.want.Filtered || st.SourceGap != tc.want.SourceGap {
				t.Errorf("status = %+v, want state ok, watermark %d (source last %d), forwarded %d, dead-lettered %d, filtered %d, source gap %d",
					st, tc.want.Watermark, last, tc.want.Forwarded, tc.want.DeadLettered, tc.want.Filtered, tc.want.SourceGap)
			}
			if mark, known := h.tgt.st.ProducerApplied(producer); !known || mark != last {
				t.Errorf("target's mark for the producer = %d (known %v), want the source's last seq %d", mark, known, last)
			}
			// A restarted relay resumes where the target is, with nothing
			// left to send.
			before := h.tgt.len()
			h.src.addN(3)
			h.drain(t, h.forwarder(t), 1)
			if got := h.tgt.len(); got != before+3 {
				t.Errorf("after a restart and 3 more rows the target holds %d rows, want %d", got, before+3)
			}
		})
	}
}

// addOtherCluster appends n rows relayed in from another cluster, which the
// loop guard keeps from going back out.
func addOtherCluster(s *memSource, n int) {
	for range n {
		s.add(store.Row{Key: "/west/job", Source: "stdout", Data: "relayed in from west", Cluster: "west", EpochMS: 1_700_000_000_000})
	}
}

// A target that refuses the row-less batches (one built with a smaller skip
// bound) has no row to blame: the relay holds every row and says why,
// instead of bisecting and dead-lettering good rows, and delivers them once
// the target takes the batches.
func TestRowlessBatchRefusedHoldsRows(t *testing.T) {
	h := newHarness(t)
	h.src.addN(10)
	f := h.forwarder(t)
	h.drain(t, f, 1)
	h.src.lose(200_000)
	h.src.addN(50)
	h.tgt.failWhen = func(b Batch) error {
		if len(b.Rows) == 0 {
			return connect.NewError(connect.CodeInvalidArgument, errors.New("producer batch skips too many seqs"))
		}
		return nil
	}
	for i := range 3 {
		next, err := f.Step(context.Background())
		if !errors.Is(err, ErrTargetRejecting) || !strings.Contains(err.Error(), "without rows") || !strings.Contains(err.Error(), "skips too many seqs") {
			t.Fatalf("step %d: err = %v, want ErrTargetRejecting naming the row-less batch and the target's reason", i, err)
		}
		h.clk.Advance(next)
	}
	if st := f.Status(); st.State != StateRejecting || st.DeadLettered != 0 || st.Watermark != 10 {
		t.Fatalf("status = %+v, want target_rejecting with nothing dead-lettered and the watermark held at 10", st)
	}
	if recs, _ := readDeadLetters(t, h.fs, dlPath); len(recs) != 0 {
		t.Fatalf("%d rows dead-lettered for a refused row-less batch", len(recs))
	}
	h.tgt.failWhen = nil
	h.drain(t, f, 1)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 200_060)
	if st := f.Status(); st.State != StateOK || st.Watermark != 200_060 || st.Forwarded != 60 {
		t.Fatalf("after the target took the batches: %+v", st)
	}
}

// skipPieces covers the batch's range exactly, in order, keeps every row,
// and leaves no piece skipping more than the store allows.
func TestSkipPiecesProperty(t *testing.T) {
	const limit = store.MaxProducerSkip
	rapid.Check(t, func(t *rapid.T) {
		first := rapid.Int64Range(1, 1<<40).Draw(t, "first")
		// Gaps around the bound matter most: exactly at it, just past it,
		// several times it.
		gap := rapid.OneOf(rapid.Int64Range(0, 3), rapid.Int64Range(limit-2, limit+2), rapid.Int64Range(0, 4*limit))
		seq := first - 1
		var rows []store.Row
		for range rapid.IntRange(0, 40).Draw(t, "rows") {
			seq += 1 + gap.Draw(t, "gap")
			rows = append(rows, store.Row{Seq: seq})
		}
		last := seq + gap.Draw(t, "tail")
		if last < first {
			last = first
		}
		b := Batch{Producer: producer, Cluster: "east", FirstSeq: first, LastSeq: last, Rows: rows}
		pieces := skipPieces(b)
		if skipped(b) <= limit && len(pieces) != 1 {
			t.Fatalf("batch skipping %d seqs split into %d pieces, want it unchanged", skipped(b), len(pieces))
		}
		next := first
		var got []store.Row
		for i, p := range pieces {
			if p.FirstSeq != next || p.LastSeq < p.FirstSeq || p.Producer != b.Producer || p.Cluster != b.Cluster {
				t.Fatalf("piece %d %d..%d (producer %q) does not follow at %d", i, p.FirstSeq, p.LastSeq, p.Producer, next)
			}
			for _, r := range p.Rows {
				if r.Seq < p.FirstSeq || r.Seq > p.LastSeq {
					t.Fatalf("piece %d %d..%d carries seq %d", i, p.FirstSeq, p.LastSeq, r.Seq)
				}
			}
			if s := skipped(p); s > limit {
				t.Fatalf("piece %d %d..%d with %d rows skips %d seqs, limit %d", i, p.FirstSeq, p.LastSeq, len(p.Rows), s, limit)
			}
			got = append(got, p.Rows...)
			next = p.LastSeq + 1
		}
		if next != last+1 {
			t.Fatalf("pieces end at %d, batch at %d", next-1, last)
		}
		if len(got) != len(rows) {
			t.Fatalf("pieces carry %d rows, batch %d", len(got), len(rows))
		}
		for i := range rows {
			if got[i].Seq != rows[i].Seq {
				t.Fatalf("row %d is seq %d, want %d", i, got[i].Seq, rows[i].Seq)
			}
		}
	})
}

// Without a producer there is no mark to skip: the batch goes as it is.
func TestSkipPiecesLeavesNonIdempotentBatches(t *testing.T) {
	b := Batch{Cluster: "east", FirstSeq: 1, LastSeq: 1_000_000, Rows: []store.Row{{Seq: 1_000_000}}}
	if p := skipPieces(b); len(p) != 1 || p[0].FirstSeq != 1 || len(p[0].Rows) != 1 {
		t.Fatalf("non-idempotent batch became %+v", p)
	}
}
