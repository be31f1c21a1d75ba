package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// tb is what the helpers need from *testing.T and *rapid.T.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Fatal(args ...any)
	Failed() bool
	Cleanup(func())
}

// memSource is an in-memory local store: dense seqs from 1, optionally
// trimmed at the front (retention).
type memSource struct {
	mu      sync.Mutex
	rows    []store.Row
	last    int64
	readErr error
}

func (s *memSource) add(rows ...store.Row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		s.last++
		r.Seq = s.last
		// The tag lets the test find each row at the target, whose store
		// assigns its own seqs.
		r.Data = fmt.Sprintf("%s #%d", r.Data, r.Seq)
		s.rows = append(s.rows, r)
	}
}

// addN appends n ordinary rows; poison is the set of 1-based indexes (in
// this call) that the target rejects: their key is not valid UTF-8, which
// the store refuses (a source store could not hold such a row; this fake
// can, to stand for a row the target's rules refuse).
func (s *memSource) addN(n int, poison ...int) {
	p := map[int]bool{}
	for _, i := range poison {
		p[i] = true
	}
	for i := 1; i <= n; i++ {
		data := fmt.Sprintf("line %d of the job", i)
		key := fmt.Sprintf("/user/job-%d/task/%d:0", i%7, i%3)
		if p[i] {
			data = "POISON " + data
			key = "/poison/\xff"
		}
		s.add(store.Row{Key: key, Source: "stdout", Data: data, EpochMS: int64(1_700_000_000_000 + i), Level: store.LevelInfo})
	}
}

// trim deletes rows with seq <= upTo, as retention would.
func (s *memSource) trim(upTo int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.rows), func(i int) bool { return s.rows[i].Seq > upTo })
	s.rows = append([]store.Row(nil), s.rows[i:]...)
}

func (s *memSource) Read(_ context.Context, after int64, maxRows, maxBytes int) ([]store.Row, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		return nil, s.readErr
	}
	i := sort.Search(len(s.rows), func(i int) bool { return s.rows[i].Seq > after })
	var out []store.Row
	bytes := 0
	for ; i < len(s.rows) && len(out) < maxRows; i++ {
		b := rowBytes(&s.rows[i])
		if len(out) > 0 && bytes+b > maxBytes {
			break
		}
		bytes += b
		out = append(out, s.rows[i])
	}
	return out, nil
}

func (s *memSource) LastSeq(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// storeTarget is the global store the relay tests push to: a real store
// on its own MemFS behind StoreSink, so the dedupe and gap rules, the
// validation and the error mapping are the production ones. Faults sit in
// front of it, as a network would put them.
type storeTarget struct {
	t  tb
	mu sync.Mutex
	fs *vfs.MemFS
	st *store.Store

	// Faults, consumed one per push.
	dropRequest []bool // true: fail Unavailable without applying
	loseAck     []bool // true: apply, then fail DeadlineExceeded
	fail        error  // every push and ProducerState fail with this while set
	failWhen    func(Batch) error
	// refusesGaps is what ProducerState reports. The store always refuses
	// a batch that would leave a gap; reporting false makes the relay treat
	// the target as an older one that might not, and push one at a time.
	refusesGaps bool

	// Concurrency seen by Push; beforePush, if set, runs there too.
	active, maxActive atomic.Int32
	beforePush        func(active int32)
}

func newStoreTarget(t tb) *storeTarget {
	tgt := &storeTarget{t: t}
	tgt.open()
	t.Cleanup(func() { tgt.st.Close() })
	return tgt
}

// open replaces the target's store by an empty one.
func (t *storeTarget) open() {
	if t.st != nil {
		t.st.Close()
	}
	t.fs = vfs.NewMemFS()
	st, err := store.Open(store.Options{FS: t.fs, Dir: "/global/store"})
	if err != nil {
		t.t.Fatalf("open target store: %v", err)
	}
	t.st = st
}

// restore replaces the target by one holding exactly the rows of src up
// to seq upTo, applied under producer, with its mark at upTo: a target that
// received them from an earlier relay, or one restored from a backup. A
// mark past src's end stands for rows src no longer has.
func (t *storeTarget) restore(src *memSource, upTo int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open()
	rows, _ := src.Read(context.Background(), 0, int(upTo), 1<<30)
	b := Batch{Producer: producer, Cluster: "east", FirstSeq: 1, LastSeq: upTo}
	for _, r := range rows {
		if r.Seq <= upTo {
			b.Rows = append(b.Rows, r)
		}
	}
	if _, err := (StoreSink{Store: t.st}).Push(context.Background(), b); err != nil {
		t.t.Fatalf("restore target to seq %d: %v", upTo, err)
	}
}

func (t *storeTarget) Push(ctx context.Context, b Batch) (store.Ack, error) {
	n := t.active.Add(1)
	defer t.active.Add(-1)
	for m := t.maxActive.Load(); n > m && !t.maxActive.CompareAndSwap(m, n); m = t.maxActive.Load() {
	}
	if t.beforePush != nil {
		t.beforePush(n)
	}
	t.mu.Lock()
	if t.fail != nil {
		defer t.mu.Unlock()
		return store.Ack{}, t.fail
	}
	if t.failWhen != nil {
		if err := t.failWhen(b); err != nil {
			t.mu.Unlock()
			return store.Ack{}, err
		}
	}
	if len(t.dropRequest) > 0 {
		drop := t.dropRequest[0]
		t.dropRequest = t.dropRequest[1:]
		if drop {
			t.mu.Unlock()
			return store.Ack{}, connect.NewError(connect.CodeUnavailable, errors.New("connection reset (request lost)"))
		}
	}
	lose := false
	if len(t.loseAck) > 0 {
		lose = t.loseAck[0]
		t.loseAck = t.loseAck[1:]
	}
	st := t.st
	t.mu.Unlock()
	ack, err := StoreSink{Store: st}.Push(ctx, b)
	if err != nil {
		return store.Ack{}, err
	}
	if lose {
		return store.Ack{}, connect.NewError(connect.CodeDeadlineExceeded, errors.New("ack lost after apply"))
	}
	return ack, nil
}

func (t *storeTarget) ProducerState(ctx context.Context, producer string) (ProducerState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail != nil {
		return ProducerState{}, t.fail
	}
	ps, err := StoreSink{Store: t.st}.ProducerState(ctx, producer)
	ps.RefusesGaps = t.refusesGaps
	return ps, err
}

// rows is every row the target store holds, in its seq order.
func (t *storeTarget) rows() []store.Row {
	t.mu.Lock()
	st := t.st
	t.mu.Unlock()
	rows, err := st.Scan(context.Background(), 0, 1<<30, 1<<40)
	if err != nil {
		t.t.Fatalf("scan target: %v", err)
	}
	return rows
}

// counts returns how many copies of each source seq the target holds
// (memSource tags every row's data with its seq).
func (t *storeTarget) counts() map[int64]int {
	c := map[int64]int{}
	for _, r := range t.rows() {
		i := strings.LastIndex(r.Data, " #")
		seq, err := strconv.ParseInt(r.Data[i+2:], 10, 64)
		if i < 0 || err != nil {
			t.t.Fatalf("target row %q has no source seq tag", r.Data)
		}
		c[seq]++
	}
	return c
}

func (t *storeTarget) len() int { return len(t.rows()) }

// readDeadLetters parses the dead-letter file; torn lines (from a crash
// mid-append) are returned separately.
func readDeadLetters(t tb, fsys vfs.FS, path string) (recs []DeadLetter, torn int) {
	t.Helper()
	data, err := vfs.ReadFile(fsys, path)
	if err != nil {
		return nil, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var d DeadLetter
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			torn++
			continue
		}
		recs = append(recs, d)
	}
	return recs, torn
}

// checkDelivery asserts the relay's guarantee over source seqs in
// (from, to]: every row of this cluster is in the target exactly once,
// unless it is poison, in which case it is in the dead-letter file and not
// in the target; rows of other clusters are not in the target.
func checkDelivery(t tb, src *memSource, tgt *storeTarget, fsys vfs.FS, dlPath, cluster string, from, to int64) {
	t.Helper()
	counts := tgt.counts()
	recs, _ := readDeadLetters(t, fsys, dlPath)
	dead := map[int64]bool{}
	for _, d := range recs {
		dead[d.Row.Seq] = true
	}
	src.mu.Lock()
	rows := append([]store.Row(nil), src.rows...)
	src.mu.Unlock()
	problems := 0
	for _, r := range rows {
		if r.Seq <= from || r.Seq > to {
			continue
		}
		want := 1
		if r.Cluster != "" && r.Cluster != cluster {
			want = 0
		}
		if strings.Contains(r.Data, "POISON") {
			want = 0
			if !dead[r.Seq] {
				t.Errorf("poison row seq %d has no dead-letter record", r.Seq)
				problems++
			}
		}
		if counts[r.Seq] != want {
			t.Errorf("seq %d: target holds %d copies, want %d", r.Seq, counts[r.Seq], want)
			problems++
		}
		if problems > 10 {
			t.Fatalf("too many delivery problems")
		}
	}
}

func rowsBytes(rows []store.Row) int {
	n := 0
	for i := range rows {
		n += rowBytes(&rows[i])
	}
	return n
}

// rowBytes approximates a row's size (the fake source's byte limit).
func rowBytes(r *store.Row) int {
	return len(r.Key) + len(r.Source) + len(r.Data) + len(r.Cluster) + 32
}
