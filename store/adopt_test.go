package store

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// pair is a primary and a follower on separate disks, with the follower
// fed from the primary's Tail as the replica port does.
type pair struct {
	t        *testing.T
	p, f     *Store
	pfs, ffs *vfs.MemFS
	fopts    Options
	cursor   uint64
	n        int
}

func newPair(t *testing.T) *pair {
	pr := &pair{t: t, pfs: vfs.NewMemFS(), ffs: vfs.NewMemFS()}
	pr.p = mustOpen(t, memOpts(pr.pfs))
	pr.fopts = memOpts(pr.ffs)
	pr.fopts.Following = true
	pr.f = mustOpen(t, pr.fopts)
	pr.cursor = pr.p.SealedCursor()
	t.Cleanup(func() {
		pr.p.Close()
		pr.f.Close()
	})
	return pr
}

// push appends n rows to the primary as producer "relay-a", moving its mark.
func (pr *pair) push(n int) {
	pr.t.Helper()
	rows := mkRows(fmt.Sprintf("/k/%d", pr.n%3), n, pr.n)
	for i := range rows {
		rows[i].Seq = int64(pr.n + i + 1)
	}
	pr.n += n
	if _, err := pr.p.Append(context.Background(), Batch{Rows: rows, Producer: "relay-a"}); err != nil {
		pr.t.Fatal(err)
	}
}

// replicate applies every record the primary has that the follower lacks.
func (pr *pair) replicate() {
	pr.t.Helper()
	st, err := pr.p.Tail(pr.f.LastSeq())
	if err != nil {
		pr.t.Fatal(err)
	}
	defer st.Close()
	for {
		rec, ok, err := st.TryNext(context.Background())
		if err != nil {
			pr.t.Fatal(err)
		}
		if !ok {
			return
		}
		if err := pr.f.ApplyReplicated(context.Background(), rec); err != nil {
			pr.t.Fatal(err)
		}
	}
}

// sealed is what the primary sealed since the last call.
func (pr *pair) sealed() []SealedSegment {
	evs, next := pr.p.SealedSince(pr.cursor)
	pr.cursor = next
	return evs
}

// ship sends the primary's segment file to the follower and adopts it.
func (pr *pair) ship(ev SealedSegment) AdoptResult {
	pr.t.Helper()
	res, err := pr.shipTo(pr.f, ev)
	if err != nil {
		pr.t.Fatalf("adopt %s: %v", ev.Name, err)
	}
	return res
}

func (pr *pair) shipTo(f *Store, ev SealedSegment) (AdoptResult, error) {
	file, size, err := pr.p.OpenSealed(ev.Name)
	if err != nil {
		return AdoptResult{}, err
	}
	defer file.Close()
	data := make([]byte, size)
	if _, err := file.ReadAt(data, 0); err != nil && err != io.EOF {
		return AdoptResult{}, err
	}
	in, err := f.ReceiveSegment(ShippedSegment{First: ev.First, Last: ev.Last, Replaces: ev.Replaces, Size: size})
	if err != nil {
		return AdoptResult{}, err
	}
	for off := 0; off < len(data); off += 1000 {
		if err := in.Write(int64(off), data[off:min(off+1000, len(data))]); err != nil {
			in.Abort()
			return AdoptResult{}, err
		}
	}
	return in.Adopt(context.Background())
}

// sameAsPrimary checks the follower serves exactly the primary's rows up
// to its own last seq, each once, with the primary's producer mark.
func (pr *pair) sameAsPrimary(f *Store, label string) {
	pr.t.Helper()
	ctx := context.Background()
	want, err := pr.p.Scan(ctx, 0, 1<<20, 0)
	if err != nil {
		pr.t.Fatal(err)
	}
	got, err := f.Scan(ctx, 0, 1<<20, 0)
	if err != nil {
		pr.t.Fatal(err)
	}
	want = want[:f.LastSeq()]
	if !reflect.DeepEqual(got, want) {
		pr.t.Fatalf("%s: follower serves %d rows (seqs %v...), primary %d up to seq %d", label, len(got), seqsOf(got[:min(len(got), 5)]), len(want), f.LastSeq())
	}
	if f.LastSeq() == pr.p.LastSeq() {
		pm, _ := pr.p.ProducerApplied("relay-a")
		fm, _ := f.ProducerApplied("relay-a")
		if pm != fm {
			pr.t.Fatalf("%s: follower's mark for relay-a is %d, the primary's %d", label, fm, pm)
		}
	}
}

func TestAdoptFlushedSegment(t *testing.T) {
	pr := newPair(t)
	pr.push(40)
	pr.replicate()
	if err := pr.p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	pr.push(7) // after the primary's flush: stays in the follower's memtable
	pr.replicate()
	evs := pr.sealed()
	if len(evs) != 1 || evs[0].First != 1 || evs[0].Last != 40 || evs[0].Replaces != nil {
		t.Fatalf("sealed: %+v", evs)
	}
	walBefore := walDiskBytes(t, pr.ffs)
	res := pr.ship(evs[0])
	if !res.Adopted || res.Reason != AdoptedSegment || res.GapRows != 0 {
		t.Fatalf("adopt: %+v", res)
	}
	st := pr.f.Stats()
	if st.Segments != 1 || st.SegmentRows != 40 || st.MemtableRows != 7 || st.LastSeq != 47 {
		t.Fatalf("follower after adopting: %+v", st)
	}
	pr.sameAsPrimary(pr.f, "after adoption")
	// The WAL file of those rows also holds the 7 later ones; the follower
	// started a new file at the adoption, and the next adoption (past the
	// 7) trims the old one, as a flush would have.
	pr.push(3)
	pr.replicate()
	pr.p.Flush(context.Background())
	if res := pr.ship(pr.sealed()[0]); !res.Adopted {
		t.Fatalf("second adoption: %+v", res)
	}
	if after := walDiskBytes(t, pr.ffs); after >= walBefore {
		t.Fatalf("WAL not trimmed after two adoptions: %d bytes, %d before", after, walBefore)
	}
	if st := pr.f.Stats(); st.Segments != 2 || st.MemtableRows != 0 {
		t.Fatalf("follower after the second adoption: %+v", st)
	}
	// A reopen reads the same: producers.json, the segment and the WAL
	// of the 7 later rows agree.
	pr.f.Close()
	pr.f = mustOpen(t, pr.fopts)
	pr.sameAsPrimary(pr.f, "after reopen")
	if m, _ := pr.f.ProducerApplied("relay-a"); m != 50 {
		t.Fatalf("relay-a's mark after reopen: %d, want 50", m)
	}
	// The follower goes on taking records after the adopted range.
	pr.push(5)
	pr.replicate()
	pr.sameAsPrimary(pr.f, "after more records")
}

func TestAdoptMergedSegmentReplacesAdoptedInputs(t *testing.T) {
	pr := newPair(t)
	ctx := context.Background()
	for range 4 {
		pr.push(25)
		pr.replicate()
		if err := pr.p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		for _, ev := range pr.sealed() {
			if res := pr.ship(ev); !res.Adopted {
				t.Fatalf("flush segment %s: %+v", ev.Name, res)
			}
		}
	}
	if got := pr.f.Stats().Segments; got != 4 {
		t.Fatalf("follower has %d segments, want the primary's 4", got)
	}
	if err := pr.p.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	evs := pr.sealed()
	if len(evs) != 1 || len(evs[0].Replaces) != 4 || evs[0].First != 1 || evs[0].Last != 100 {
		t.Fatalf("merge sealed: %+v", evs)
	}
	if res := pr.ship(evs[0]); !res.Adopted {
		t.Fatalf("merged segment: %+v", res)
	}
	if st := pr.f.Stats(); st.Segments != 1 || st.SegmentRows != 100 {
		t.Fatalf("follower after the merge: %+v", st)
	}
	names, _ := pr.ffs.List("/data")
	for _, n := range names {
		if IsSegmentName(n) && n != segName(1, 100) {
			t.Fatalf("merge input %s left on the follower's disk", n)
		}
	}
	pr.sameAsPrimary(pr.f, "after the merge")
}

// Adoption is refused, and the follower keeps its own rows, whenever it
// would not leave every seq exactly once.
func TestAdoptRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("not held", func(t *testing.T) {
		pr := newPair(t)
		pr.push(10)
		pr.replicate()
		pr.push(10)
		pr.p.Flush(ctx)
		res := pr.ship(pr.sealed()[0])
		if res.Adopted || res.Reason != AdoptNotHeld {
			t.Fatalf("%+v", res)
		}
		pr.replicate()
		pr.sameAsPrimary(pr.f, "not held")
	})
	t.Run("overlap", func(t *testing.T) {
		pr := newPair(t)
		pr.push(10)
		pr.replicate()
		pr.f.Flush(ctx) // the follower's own segment [1,10]
		pr.push(10)
		pr.replicate()
		pr.p.Flush(ctx) // the primary's [1,20] contains it: adoptable
		pr.push(5)
		pr.replicate()
		pr.f.Flush(ctx) // the follower's [11,25]
		pr.push(5)
		pr.replicate()
		pr.p.Flush(ctx) // the primary's [21,30] straddles it
		evs := pr.sealed()
		if res := pr.ship(evs[1]); res.Adopted || res.Reason != AdoptOverlap {
			t.Fatalf("straddling: %+v", res)
		}
		pr.sameAsPrimary(pr.f, "overlap")
		if res := pr.ship(evs[0]); res.Adopted || res.Reason != AdoptOverlap {
			t.Fatalf("[1,20] against the follower's [1,10] and [11,25]: %+v", res)
		}
	})
	t.Run("gap written first", func(t *testing.T) {
		pr := newPair(t)
		pr.push(10)
		pr.replicate()
		pr.p.Flush(ctx) // [1,10] never reaches the follower
		pr.sealed()
		pr.push(10)
		pr.replicate()
		pr.p.Flush(ctx) // [11,20]
		res := pr.ship(pr.sealed()[0])
		if !res.Adopted || res.GapRows != 10 {
			t.Fatalf("%+v", res)
		}
		if st := pr.f.Stats(); st.Segments != 2 || st.MemtableRows != 0 {
			t.Fatalf("follower: %+v", st)
		}
		pr.sameAsPrimary(pr.f, "gap")
	})
	t.Run("promoted", func(t *testing.T) {
		pr := newPair(t)
		pr.push(10)
		pr.replicate()
		pr.p.Flush(ctx)
		pr.f.StopFollowing()
		if res := pr.ship(pr.sealed()[0]); res.Adopted || res.Reason != AdoptNotFollowing {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("bad file", func(t *testing.T) {
		pr := newPair(t)
		pr.push(10)
		pr.replicate()
		in, err := pr.f.ReceiveSegment(ShippedSegment{First: 1, Last: 10, Size: 12})
		if err != nil {
			t.Fatal(err)
		}
		in.Write(0, []byte("PAR1\xff\xff\xff\x7fPAR1"))
		if _, err := in.Adopt(ctx); err == nil {
			t.Fatal("a 12-byte file was adopted")
		}
		if err := in.Write(4, []byte("x")); err == nil {
			t.Fatal("write after adopt accepted")
		}
		if _, err := pr.f.ReceiveSegment(ShippedSegment{First: 5, Last: 4, Size: 10}); err == nil {
			t.Fatal("seqs [5,4] accepted")
		}
		pr.sameAsPrimary(pr.f, "bad file")
	})
}

// A power cut at any operation of an adoption (a flush's segment, a
// merge's, and one that first writes the follower's memtable rows before
// it as a segment of its own, and a second one that trims the WAL file the
// first left rows in) leaves a follower that opens with every row
// once, at the primary's seqs, with the primary's producer mark, and goes
// on following. Odd kill points also tear the unsynced tails of files.
func TestAdoptCrashAtEveryOperation(t *testing.T) {
	for _, mode := range []string{"flush", "merge", "gap", "split"} {
		t.Run(mode, func(t *testing.T) {
			for n := 0; ; n++ {
				pr := newPair(t)
				ctx := context.Background()
				var ev SealedSegment
				flushes := map[string]int{"flush": 1, "merge": 4, "gap": 2, "split": 2}[mode]
				for range flushes {
					pr.push(15)
					pr.replicate()
					pr.p.Flush(ctx)
					evs := pr.sealed()
					switch mode {
					case "merge":
						pr.ship(evs[0])
					case "split":
						// Rows after the primary's flush stay in the
						// follower's memtable and WAL file across the
						// adoption: the next one trims that file.
						pr.push(4)
						pr.replicate()
						if ev.Name == "" {
							pr.ship(evs[0])
						}
					}
					ev = evs[0] // "gap": the first one never reaches the follower
				}
				if mode == "merge" {
					pr.p.Compact(ctx)
					ev = pr.sealed()[0]
				}
				pr.push(4)
				pr.replicate()
				k := &killer{n: n}
				pr.ffs.Inject = k.inject
				res, err := pr.shipTo(pr.f, ev)
				pr.f.Abandon()
				pr.ffs.Inject = nil
				var rng *rand.Rand
				if n%2 == 1 {
					rng = rand.New(rand.NewSource(int64(n)))
				}
				pr.ffs.Crash(rng)
				label := fmt.Sprintf("killed after op %d (%+v, %v)", n, res, err)
				f, oerr := Open(pr.fopts)
				if oerr != nil {
					t.Fatalf("%s: reopen: %v", label, oerr)
				}
				pr.f = f
				pr.sameAsPrimary(f, label)
				if f.LastSeq() != pr.p.LastSeq() {
					t.Fatalf("%s: follower at seq %d, primary %d (every row was synced before)", label, f.LastSeq(), pr.p.LastSeq())
				}
				pr.push(3)
				pr.replicate()
				pr.sameAsPrimary(f, label+", then 3 more rows")
				if err == nil && k.count <= n {
					if !res.Adopted || (mode == "gap") != (res.GapRows > 0) {
						t.Fatalf("uninterrupted adoption: %+v", res)
					}
					if n < 5 {
						t.Fatalf("the adoption did only %d fs operations", k.count)
					}
					t.Logf("%s: %d kill points", mode, n)
					return // the adoption completed before the kill
				}
			}
		})
	}
}

// walDiskBytes is the size of the WAL files in /data.
func walDiskBytes(t *testing.T, fs *vfs.MemFS) int64 {
	t.Helper()
	names, err := fs.List("/data")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, name := range names {
		if _, ok := parseWALName(name); ok {
			fi, err := fs.Stat("/data/" + name)
			if err != nil {
				t.Fatal(err)
			}
			n += fi.Size()
		}
	}
	return n
}

// A follower that adopts shipped segments leaves flushing and compaction
// to its primary until its memtables reach the stall point or its last
// flush is three intervals old, and only while it follows.
func TestAdoptShippedSchedule(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	opts.Following = true
	opts.MemtableBytes = 64 << 10
	opts.FlushInterval = time.Minute
	clk := opts.Clock.(*clock.Fake)
	s := mustOpen(t, opts)
	defer s.Close()
	apply := func(n int) {
		rows := mkRows("/k", n, int(s.LastSeq()))
		for i := range rows {
			rows[i].Seq = s.LastSeq() + 1 + int64(i)
		}
		if err := s.ApplyReplicated(context.Background(), Record{First: s.LastSeq() + 1, Last: s.LastSeq() + int64(n), Rows: rows}); err != nil {
			t.Fatal(err)
		}
	}
	if s.leaveFlushToPrimary() || s.leaveCompactionToPrimary() {
		t.Fatal("a follower that was not told segments come leaves its flush to the primary")
	}
	s.SetAdoptShipped(true)
	for s.Stats().MemtableBytes < 2*opts.MemtableBytes {
		apply(100)
	}
	if !s.leaveFlushToPrimary() || !s.leaveCompactionToPrimary() {
		t.Fatal("at twice the memtable bound the follower flushes on its own")
	}
	clk.Advance(3 * opts.FlushInterval)
	if s.leaveFlushToPrimary() {
		t.Fatal("three flush intervals after its last flush the follower still waits for the primary")
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for s.Stats().MemtableBytes < 3*opts.MemtableBytes {
		apply(100)
	}
	if s.leaveFlushToPrimary() {
		t.Fatal("at the stall point the follower still waits for the primary")
	}
	s.StopFollowing()
	if s.leaveFlushToPrimary() || s.leaveCompactionToPrimary() {
		t.Fatal("a promoted store leaves its flush to a primary")
	}
}
