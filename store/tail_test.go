package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// markHistory records a primary's producer marks after each append, so a
// test can ask what the marks were as of a seq.
type markHistory struct {
	at []struct {
		last  int64
		marks map[string]int64
	}
}

func (h *markHistory) note(s *Store, producers ...string) {
	m := map[string]int64{}
	for _, p := range producers {
		if v, ok := s.ProducerApplied(p); ok {
			m[p] = v
		}
	}
	h.at = append(h.at, struct {
		last  int64
		marks map[string]int64
	}{s.LastSeq(), m})
}

// asOf is the highest mark of p recorded while the primary's last seq was
// at most seq: what a replica holding rows up to seq may know.
func (h *markHistory) asOf(p string, seq int64) int64 {
	var v int64
	for _, e := range h.at {
		if e.last <= seq {
			v = max(v, e.marks[p])
		}
	}
	return v
}

// followAll applies the primary's stream to the replica until it is at
// LastSeq, checking after every record that no replica mark runs ahead of
// the primary's marks as of the replica's last seq.
func followAll(t *testing.T, primary, replica *Store, h *markHistory, producers []string) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := primary.Tail(replica.LastSeq())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recs []Record
	for replica.LastSeq() < primary.LastSeq() || pendingMarks(primary, replica, producers) {
		rec, err := st.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d: %v", st.Position(), err)
		}
		recs = append(recs, rec)
		if err := replica.ApplyReplicated(ctx, rec); err != nil {
			t.Fatalf("ApplyReplicated [%d,%d]: %v", rec.First, rec.Last, err)
		}
		for _, p := range producers {
			got, _ := replica.ProducerApplied(p)
			if lim := h.asOf(p, replica.LastSeq()); got > lim {
				t.Fatalf("after record [%d,%d] replica mark of %s is %d, but the primary's mark with rows up to %d was %d: a promoted replica would drop rows it never got",
					rec.First, rec.Last, p, got, replica.LastSeq(), lim)
			}
		}
	}
	return recs
}

func pendingMarks(primary, replica *Store, producers []string) bool {
	for _, p := range producers {
		a, _ := primary.ProducerApplied(p)
		b, _ := replica.ProducerApplied(p)
		if a != b {
			return true
		}
	}
	return false
}

func allRows(t *testing.T, s *Store) []Row {
	t.Helper()
	var out []Row
	after := int64(0)
	for {
		rows, err := s.Scan(context.Background(), after, MaxMaxLines, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			return out
		}
		out = append(out, rows...)
		after = rows[len(rows)-1].Seq
	}
}

func producerRows(p string, from, n int) []Row {
	rows := mkRows("/p/"+p, n, from)
	for i := range rows {
		rows[i].Seq = int64(from + i)
	}
	return rows
}

// A replica that follows the stream holds the same rows with the same seqs
// and, once caught up, the same producer marks, whether the rows come from
// segments, sealed memtables or the active memtable; and no mark ever
// arrives before the rows it was durable with.
func TestTailReplicatesRowsAndMarks(t *testing.T) {
	ctx := context.Background()
	primary := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer primary.Close()
	replica := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer replica.Close()
	producers := []string{"relay-a", "relay-b"}
	h := &markHistory{}
	next := map[string]int{"relay-a": 1, "relay-b": 1}
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 30; round++ {
		switch rng.Intn(4) {
		case 0:
			mustAppend(t, primary, mkRows("/plain", 1+rng.Intn(20), round*100))
		case 1, 2:
			p := producers[rng.Intn(2)]
			n := rng.Intn(5)
			b := Batch{Producer: p, Rows: producerRows(p, next[p], n), FirstSeq: int64(next[p]), LastSeq: int64(next[p] + n + rng.Intn(3) - 1)}
			b.LastSeq = max(b.LastSeq, int64(next[p]+n-1))
			if _, err := primary.Append(ctx, b); err != nil {
				t.Fatal(err)
			}
			next[p] = int(b.LastSeq) + 1
		case 3:
			if err := primary.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		h.note(primary, producers...)
		if round%7 == 6 {
			followAll(t, primary, replica, h, producers)
		}
	}
	// Some rows in segments, some only in the memtable.
	if st := primary.Stats(); st.Segments == 0 || st.MemtableRows == 0 {
		t.Fatalf("workload should leave rows in both segments and memtable: %+v", st)
	}
	followAll(t, primary, replica, h, producers)
	if got, want := allRows(t, replica), allRows(t, primary); !reflect.DeepEqual(got, want) {
		t.Fatalf("replica rows differ from primary's: %d vs %d rows", len(got), len(want))
	}
	for _, p := range producers {
		a, _ := primary.ProducerApplied(p)
		b, ok := replica.ProducerApplied(p)
		if !ok || a != b {
			t.Fatalf("producer %s: replica mark %d (known %v), primary %d", p, b, ok, a)
		}
	}
	// A fresh follower that starts from nothing reads everything, segments
	// first, and ends with the same marks.
	fresh := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer fresh.Close()
	followAll(t, primary, fresh, h, producers)
	if got, want := allRows(t, fresh), allRows(t, primary); !reflect.DeepEqual(got, want) {
		t.Fatalf("fresh replica rows differ")
	}
}

// A mark that comes without rows (an empty producer batch that only moves
// the mark) reaches a follower waiting at the end of the stream, and the
// waiting Next returns when it arrives.
func TestTailWaitsAndDeliversMarkOnlyRecords(t *testing.T) {
	ctx := context.Background()
	primary := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer primary.Close()
	mustAppend(t, primary, mkRows("/k", 3, 0))
	st, err := primary.Tail(3)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := make(chan Record, 1)
	errc := make(chan error, 1)
	go func() {
		rec, err := st.Next(ctx)
		if err != nil {
			errc <- err
			return
		}
		got <- rec
	}()
	if _, err := primary.Append(ctx, Batch{Producer: "p", FirstSeq: 1, LastSeq: 7}); err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-got:
		want := Record{First: 4, Last: 3, Marks: []ProducerMark{{"p", 7}}}
		if !reflect.DeepEqual(rec, want) {
			t.Fatalf("record = %+v, want %+v", rec, want)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after a mark-only append")
	}
	// Cancelling a waiting Next returns the context's error.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		_, err := st.Next(cctx)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Next = %v", err)
	}
}

func TestTailBadPositionsAndApplyRefusals(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	mustAppend(t, s, mkRows("/k", 3, 0))
	if _, err := s.Tail(4); !errors.Is(err, ErrTailAhead) {
		t.Fatalf("Tail(4) on a store at 3 = %v, want ErrTailAhead", err)
	}
	if _, err := s.Tail(-1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Tail(-1) = %v", err)
	}
	rows := func(first, n int) []Row {
		r := mkRows("/r", n, first)
		for i := range r {
			r[i].Seq = int64(first + i)
		}
		return r
	}
	cases := []struct {
		name string
		rec  Record
		want error
	}{
		{"gap", Record{First: 5, Last: 5, Rows: rows(5, 1)}, ErrReplicaGap},
		{"overlap", Record{First: 3, Last: 4, Rows: rows(3, 2)}, ErrReplicaOverlap},
		{"count mismatch", Record{First: 4, Last: 5, Rows: rows(4, 1)}, ErrInvalidArgument},
		{"wrong row seq", Record{First: 4, Last: 4, Rows: rows(9, 1)}, ErrInvalidArgument},
		{"empty producer", Record{First: 4, Last: 3, Marks: []ProducerMark{{"", 1}}}, ErrInvalidArgument},
		{"floor below first-1 is no jump", Record{First: 9, Last: 9, Rows: rows(9, 1), Floor: 5}, ErrReplicaGap},
	}
	for _, c := range cases {
		if err := s.ApplyReplicated(ctx, c.rec); !errors.Is(err, c.want) {
			t.Errorf("%s: ApplyReplicated = %v, want %v", c.name, err, c.want)
		}
	}
	if s.LastSeq() != 3 || len(allRows(t, s)) != 3 {
		t.Fatalf("refused records changed the store: last seq %d", s.LastSeq())
	}
	if err := s.ApplyReplicated(ctx, Record{First: 4, Last: 5, Rows: rows(4, 2), Marks: []ProducerMark{{"p", 40}}}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.ProducerApplied("p"); v != 40 || s.LastSeq() != 5 {
		t.Fatalf("after apply: mark %d last %d", v, s.LastSeq())
	}
}

// Records acknowledged by ApplyReplicated survive a crash at any point with
// their seqs and marks, and the follower resumes the stream from its
// recovered LastSeq without a gap or an overlap.
func TestApplyReplicatedSurvivesCrash(t *testing.T) {
	ctx := context.Background()
	primary := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer primary.Close()
	for i := 0; i < 12; i++ {
		b := Batch{Producer: "p", Rows: producerRows("p", 1+i*4, 3), FirstSeq: int64(1 + i*4), LastSeq: int64(4 + i*4)}
		if _, err := primary.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
		if i%4 == 3 {
			primary.Flush(ctx)
		}
	}
	want := allRows(t, primary)
	wantMark, _ := primary.ProducerApplied("p")
	for seed := int64(0); seed < 40; seed++ {
		rng := rand.New(rand.NewSource(seed))
		fs := vfs.NewMemFS()
		k := &killer{n: -1}
		fs.Inject = k.inject
		opts := memOpts(fs)
		replica := mustOpen(t, opts)
		st, err := primary.Tail(0)
		if err != nil {
			t.Fatal(err)
		}
		k.mu.Lock()
		k.n = k.count + rng.Intn(60) // die after a random number of operations
		k.mu.Unlock()
		var ackedLast, ackedMark int64
		for replica.LastSeq() < primary.LastSeq() {
			rec, err := st.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := replica.ApplyReplicated(ctx, rec); err != nil {
				break
			}
			ackedLast = rec.Last
			for _, m := range rec.Marks {
				ackedMark = max(ackedMark, m.Seq)
			}
			if rng.Intn(5) == 0 {
				replica.Flush(ctx)
			}
		}
		st.Close()
		replica.Abandon()
		fs.Inject = nil
		fs.Crash(rng)
		replica = mustOpen(t, opts)
		if replica.LastSeq() < ackedLast {
			t.Fatalf("seed %d: after crash last seq %d, acked up to %d", seed, replica.LastSeq(), ackedLast)
		}
		if v, _ := replica.ProducerApplied("p"); v < ackedMark {
			t.Fatalf("seed %d: after crash mark %d, acked %d", seed, v, ackedMark)
		}
		h := &markHistory{}
		h.note(primary, "p")
		h.at[0].last = 0 // only the final state is known: allow it anywhere
		followAll(t, primary, replica, h, []string{"p"})
		if got := allRows(t, replica); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: resumed replica has %d rows, want %d", seed, len(got), len(want))
		}
		if v, _ := replica.ProducerApplied("p"); v != wantMark {
			t.Fatalf("seed %d: resumed replica mark %d, want %d", seed, v, wantMark)
		}
		replica.Close()
	}
}

// A follower behind the primary's retention floor gets a floor jump and
// continues from the first surviving row; the jump is durable.
func TestTailFloorJump(t *testing.T) {
	ctx := context.Background()
	popts := Options{FS: vfs.NewMemFS(), Dir: "/data", Clock: clock.NewFake(t0), RetentionAge: time.Hour}
	primary := mustOpen(t, popts)
	defer primary.Close()
	if _, err := primary.Append(ctx, Batch{Producer: "p", Rows: producerRows("p", 1, 2), FirstSeq: 1}); err != nil {
		t.Fatal(err)
	}
	agedSegments(t, primary, 0, 3*time.Hour, 2*time.Hour, 10*time.Minute) // seqs 3..32, first 22 retained-away
	mustAppend(t, primary, mkRows("/k", 5, 40))
	if err := primary.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	floor := primary.Stats().FirstSeq - 1
	if floor != 22 {
		t.Fatalf("floor = %d, want 22", floor)
	}
	fs := vfs.NewMemFS()
	ropts := memOpts(fs)
	replica := mustOpen(t, ropts)
	// The replica has the first row already (it followed earlier).
	st, _ := primary.Tail(0)
	first, err := st.Next(ctx)
	st.Close()
	if err != nil || first.First != floor+1 || first.Last != floor || first.Floor != floor {
		t.Fatalf("first record after 0 = %+v, %v; want a jump to %d", first, err, floor)
	}
	mustAppend(t, replica, []Row{{Key: "/old", Data: "held before the jump"}})
	replica.Flush(ctx)
	h := &markHistory{}
	h.note(primary, "p")
	h.at[0].last = 0
	followAll(t, primary, replica, h, []string{"p"})
	want := allRows(t, primary)
	if got := allRows(t, replica); !reflect.DeepEqual(got, want) {
		t.Fatalf("replica rows after jump: %v, want %v", seqsOf(got), seqsOf(want))
	}
	replica.Abandon()
	fs.Crash(nil)
	replica = mustOpen(t, ropts)
	defer replica.Close()
	if got := allRows(t, replica); !reflect.DeepEqual(got, want) {
		t.Fatalf("after crash: %v, want %v", seqsOf(got), seqsOf(want))
	}
	if v, _ := replica.ProducerApplied("p"); v != 2 {
		t.Fatalf("mark after jump and crash = %d, want 2", v)
	}
}

func TestTailRecordLimits(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	big := mkRows("/k", TailMaxRows+10, 0)
	mustAppend(t, s, big)
	s.Flush(ctx)
	mustAppend(t, s, big)
	for i := 0; i < TailMaxMarks+5; i++ {
		if _, err := s.Append(ctx, Batch{Producer: fmt.Sprintf("p%04d", i), FirstSeq: 1, LastSeq: 1}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := s.Tail(0)
	defer st.Close()
	marks := 0
	for st.Position() < s.LastSeq() || marks < TailMaxMarks+5 {
		rec, err := st.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Rows) > TailMaxRows || len(rec.Marks) > TailMaxMarks {
			t.Fatalf("record [%d,%d] has %d rows and %d marks", rec.First, rec.Last, len(rec.Rows), len(rec.Marks))
		}
		marks += len(rec.Marks)
	}
}

// The stream yields only committed records: after the primary crashes (the
// adversarial crash model) and recovers, it still holds everything a
// follower got from it, so the follower resumes without ErrTailAhead and
// ends identical.
func TestTailYieldsOnlyDurableRecords(t *testing.T) {
	ctx := context.Background()
	for seed := int64(0); seed < 30; seed++ {
		rng := rand.New(rand.NewSource(seed))
		pfs := vfs.NewMemFS()
		popts := memOpts(pfs)
		primary := mustOpen(t, popts)
		replica := mustOpen(t, memOpts(vfs.NewMemFS()))
		next := int64(1)
		for round := 0; round < 4; round++ {
			for i := 0; i < 5; i++ {
				n := rng.Intn(4)
				b := Batch{Producer: "p", Rows: producerRows("p", int(next), n), FirstSeq: next, LastSeq: next + int64(n)}
				if _, err := primary.Append(ctx, b); err != nil {
					t.Fatal(err)
				}
				next = b.LastSeq + 1
				mustAppend(t, primary, mkRows("/plain", 1+rng.Intn(3), round*100+i*10))
				if rng.Intn(4) == 0 {
					primary.Flush(ctx)
				}
			}
			h := &markHistory{}
			h.note(primary, "p")
			h.at[0].last = 0
			followAll(t, primary, replica, h, []string{"p"})
			// Crash the primary with writes in flight that were never acked.
			mBefore, _ := primary.ProducerApplied("p")
			lBefore := primary.LastSeq()
			stBefore := primary.Stats()
			k := &killer{n: rng.Intn(4)}
			pfs.Inject = k.inject
			primary.Append(ctx, Batch{Rows: mkRows("/unacked", 2, 0)})
			primary.Abandon()
			pfs.Inject = nil
			pfs.Crash(rng)
			primary = mustOpen(t, popts)
			if m, _ := primary.ProducerApplied("p"); m < mBefore || primary.LastSeq() < lBefore {
				names, _ := pfs.List("/data")
				t.Fatalf("seed %d round %d: primary lost acked state in a crash: mark %d -> %d, last %d -> %d; before %+v after %+v files %v", seed, round, mBefore, m, lBefore, primary.LastSeq(), stBefore, primary.Stats(), names)
			}
			if _, err := primary.Tail(replica.LastSeq()); err != nil {
				t.Fatalf("seed %d round %d: primary after crash: %v (follower at %d, primary at %d)", seed, round, err, replica.LastSeq(), primary.LastSeq())
			}
		}
		h := &markHistory{}
		h.note(primary, "p")
		h.at[0].last = 0
		followAll(t, primary, replica, h, []string{"p"})
		got, want := allRows(t, replica), allRows(t, primary)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: follower has %d rows, primary %d", seed, len(got), len(want))
		}
		primary.Close()
		replica.Close()
	}
}

// A standby promoted after following the stream dedupes the producer's
// retries exactly as the primary would: a resent batch adds nothing, and a
// batch that overtakes is refused.
func TestPromotedStandbyKeepsDedupe(t *testing.T) {
	ctx := context.Background()
	primary := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer primary.Close()
	standby := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer standby.Close()
	var last Batch
	for i := 0; i < 6; i++ {
		last = Batch{Producer: "relay", Rows: producerRows("r", 1+i*3, 3), FirstSeq: int64(1 + i*3), LastSeq: int64(3 + i*3)}
		if _, err := primary.Append(ctx, last); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			primary.Flush(ctx)
		}
	}
	h := &markHistory{}
	h.note(primary, "relay")
	h.at[0].last = 0
	followAll(t, primary, standby, h, []string{"relay"})
	rows := len(allRows(t, standby))
	ack, err := standby.Append(ctx, last) // the relay's retry after the failover
	if err != nil || ack.First != 0 || ack.ProducerApplied != 18 {
		t.Fatalf("resent batch on the promoted standby: %+v %v, want nothing appended and mark 18", ack, err)
	}
	if _, err := standby.Append(ctx, Batch{Producer: "relay", Rows: producerRows("r", 25, 1), FirstSeq: 25}); !errors.Is(err, ErrProducerGap) {
		t.Fatalf("overtaking batch on the promoted standby: %v, want ErrProducerGap", err)
	}
	if got := len(allRows(t, standby)); got != rows {
		t.Fatalf("standby rows %d -> %d after the retries", rows, got)
	}
}
