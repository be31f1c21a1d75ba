package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

var errKilled = errors.New("process killed by test")

// killer is a MemFS Inject hook that lets the first n operations through and
// fails every later one, like a process that died at that point: nothing it
// does afterwards reaches the disk.
type killer struct {
	mu    sync.Mutex
	n     int
	count int
	ops   []vfs.Op // every operation seen, in order
}

func (k *killer) inject(op vfs.Op, name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.count++
	k.ops = append(k.ops, op)
	if k.n >= 0 && k.count > k.n {
		return errKilled
	}
	return nil
}

type attempt struct {
	rows  []Row
	acked bool
	ack   Ack
}

// crashWorkload drives a store through appends, flushes, a merge, retention
// and Close, recording which batches were acked.
func crashWorkload(s *Store, withRetention bool) ([]*attempt, bool) {
	ctx := context.Background()
	var atts []*attempt
	n := 0
	app := func() {
		rows := make([]Row, 3)
		for i := range rows {
			rows[i] = Row{Key: fmt.Sprintf("/k/%d", (n+i)%2), Data: fmt.Sprintf("row-%d", n+i), EpochMS: t0.UnixMilli() + int64(n+i)}
		}
		n += len(rows)
		a := &attempt{rows: rows}
		ack, err := s.Append(ctx, Batch{Rows: rows})
		a.ack, a.acked = ack, err == nil
		atts = append(atts, a)
	}
	app()
	app()
	s.Flush(ctx)
	app()
	s.Flush(ctx)
	app()
	s.Flush(ctx)
	app()
	s.Flush(ctx)
	before := s.Stats().Segments
	s.Compact(ctx)
	merged := s.Stats().Segments < before
	app()
	if withRetention {
		s.Flush(ctx)
		s.Retain(ctx)
	}
	app()
	s.Close()
	return atts, merged
}

// verifyRecovered reopens fs and checks the crash-safety invariants.
func verifyRecovered(t *testing.T, fs *vfs.MemFS, opts Options, atts []*attempt, label string) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("%s: reopen after crash: %v", label, err)
	}
	rows, err := s.Scan(context.Background(), 0, 1<<20, 0)
	if err != nil {
		t.Fatalf("%s: scan: %v", label, err)
	}
	st := s.Stats()
	// Dense seqs from FirstSeq to LastSeq, each row once.
	for i, r := range rows {
		if want := rows[0].Seq + int64(i); r.Seq != want {
			t.Fatalf("%s: row %d has seq %d, want %d (seqs not dense)", label, i, r.Seq, want)
		}
	}
	if len(rows) > 0 && (rows[0].Seq != st.FirstSeq || rows[len(rows)-1].Seq != st.LastSeq) {
		t.Fatalf("%s: rows cover [%d,%d], stats say [%d,%d]", label, rows[0].Seq, rows[len(rows)-1].Seq, st.FirstSeq, st.LastSeq)
	}
	byData := map[string]Row{}
	for _, r := range rows {
		if _, dup := byData[r.Data]; dup {
			t.Fatalf("%s: row %q present twice", label, r.Data)
		}
		byData[r.Data] = r
	}
	for _, a := range atts {
		present := 0
		for i, r := range a.rows {
			got, ok := byData[r.Data]
			if !ok {
				continue
			}
			present++
			if got.Key != r.Key || got.EpochMS != r.EpochMS {
				t.Fatalf("%s: row %q recovered as %+v", label, r.Data, got)
			}
			if a.acked && got.Seq != a.ack.First+int64(i) {
				t.Fatalf("%s: acked row %q had seq %d, recovered at %d", label, r.Data, a.ack.First+int64(i), got.Seq)
			}
		}
		if present != 0 && present != len(a.rows) {
			t.Fatalf("%s: batch %q partially recovered (%d of %d rows)", label, a.rows[0].Data, present, len(a.rows))
		}
		firstKept := st.FirstSeq // retention may delete a prefix, never more
		if firstKept == 0 {
			firstKept = st.LastSeq + 1
		}
		if a.acked && a.ack.Last > st.LastSeq {
			t.Fatalf("%s: acked seq %d but recovered LastSeq is %d", label, a.ack.Last, st.LastSeq)
		}
		if a.acked && present == 0 && a.ack.Last >= firstKept {
			t.Fatalf("%s: acked batch seqs %d..%d lost (store holds %d..%d)", label, a.ack.First, a.ack.Last, st.FirstSeq, st.LastSeq)
		}
	}
	return s
}

func TestCrashAtEveryOperation(t *testing.T) {
	for _, withRetention := range []bool{false, true} {
		t.Run(fmt.Sprintf("retention=%v", withRetention), func(t *testing.T) {
			mkOpts := func(fs vfs.FS) Options {
				o := memOpts(fs)
				o.TargetSegmentBytes = 1 << 20
				if withRetention {
					o.RetentionBytes = 1 // delete every flushed segment
				}
				return o
			}
			// Dry run: count the operations the workload performs.
			fs := vfs.NewMemFS()
			k := &killer{n: -1}
			fs.Inject = k.inject
			if _, merged := crashWorkload(mustOpen(t, mkOpts(fs)), withRetention); !merged {
				t.Fatal("the workload's Compact merged nothing; the merge's sync points would go untested")
			}
			total := k.count
			if total < 20 {
				t.Fatalf("workload did only %d fs operations", total)
			}
			light := raceEnabled || testing.Short()
			for n := 0; n <= total; n++ {
				if light && n < total {
					// Under -race or -short, kill only where the next
					// operation is a durability point (sync, dir sync,
					// rename, remove); the full run kills at every one.
					if op := k.ops[n]; op == vfs.OpWrite || op == vfs.OpCreate || op == vfs.OpMkdir {
						continue
					}
				}
				for _, torn := range []bool{false, true} {
					if light && torn != (n%2 == 1) {
						continue // and alternate torn and clean crashes
					}
					fs := vfs.NewMemFS()
					k := &killer{n: n}
					fs.Inject = k.inject
					s, err := Open(mkOpts(fs))
					var atts []*attempt
					if err == nil {
						atts, _ = crashWorkload(s, withRetention)
						s.Abandon()
					}
					fs.Inject = nil
					var rng *rand.Rand
					if torn {
						rng = rand.New(rand.NewSource(int64(n)))
					}
					fs.Crash(rng)
					label := fmt.Sprintf("killed after op %d of %d (torn=%v)", n, total, torn)
					s2 := verifyRecovered(t, fs, mkOpts(fs), atts, label)
					if light && n%4 != 0 {
						s2.Abandon() // the follow-up checks below run on every 4th case
						continue
					}
					// The recovered store keeps working and numbering densely.
					ack, err := s2.Append(context.Background(), Batch{Rows: mkRows("/after", 2, 0)})
					if err != nil || ack.First != s2.Stats().LastSeq-1 {
						t.Fatalf("%s: append after recovery: %+v %v", label, ack, err)
					}
					if err := s2.Close(); err != nil {
						t.Fatalf("%s: close: %v", label, err)
					}
					verifyRecovered(t, fs, mkOpts(fs), atts, label+" (second reopen)").Close()
				}
			}
		})
	}
}
