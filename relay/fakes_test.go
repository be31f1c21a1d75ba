package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
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
		s.rows = append(s.rows, r)
	}
}

// addN appends n ordinary rows; poison is the set of 1-based indexes (in
// this call) whose data the target rejects.
func (s *memSource) addN(n int, poison ...int) {
	p := map[int]bool{}
	for _, i := range poison {
		p[i] = true
	}
	for i := 1; i <= n; i++ {
		data := fmt.Sprintf("line %d of the job", i)
		if p[i] {
			data = "POISON " + data
		}
		s.add(store.Row{Key: fmt.Sprintf("/user/job-%d/task/%d:0", i%7, i%3), Source: "stdout", Data: data, EpochMS: int64(1_700_000_000_000 + i), Level: store.LevelInfo})
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

// memTarget models the global store's idempotent append: per-producer
// applied marks kept atomically with the rows; rows at or below the mark
// are dropped. Rows whose data contains POISON are invalid_argument, checked
// before anything is applied (as the server validates a request first).
type memTarget struct {
	mu      sync.Mutex
	rows    []store.Row // every applied row, with its producer seq in Seq
	applied map[string]int64
	pushes  int

	// Faults, consumed one per push.
	dropRequest []bool // true: fail Unavailable without applying
	loseAck     []bool // true: apply, then fail Unavailable
	fail        error  // every push and Applied fail with this while set
	failWhen    func(Batch) error
	strictOrder bool // reject a producer batch that would leave a gap (Aborted)

	// Concurrency seen by Push (before it takes mu); beforePush, if set,
	// runs there too.
	active, maxActive atomic.Int32
	beforePush        func(active int32)
}

func newMemTarget() *memTarget { return &memTarget{applied: map[string]int64{}} }

func (t *memTarget) Push(_ context.Context, b Batch) (store.Ack, error) {
	n := t.active.Add(1)
	defer t.active.Add(-1)
	for m := t.maxActive.Load(); n > m && !t.maxActive.CompareAndSwap(m, n); m = t.maxActive.Load() {
	}
	if t.beforePush != nil {
		t.beforePush(n)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pushes++
	if t.fail != nil {
		return store.Ack{}, t.fail
	}
	if t.failWhen != nil {
		if err := t.failWhen(b); err != nil {
			return store.Ack{}, err
		}
	}
	if len(t.dropRequest) > 0 {
		drop := t.dropRequest[0]
		t.dropRequest = t.dropRequest[1:]
		if drop {
			return store.Ack{}, connect.NewError(connect.CodeUnavailable, errors.New("connection reset (request lost)"))
		}
	}
	for _, r := range b.Rows {
		if strings.Contains(r.Data, "POISON") {
			return store.Ack{}, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("entry seq %d: data contains a poison marker", r.Seq))
		}
		if r.Key == "" {
			return store.Ack{}, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("entry seq %d: key is required", r.Seq))
		}
	}
	mark, known := t.applied[b.Producer]
	if b.Producer != "" && t.strictOrder && known && b.FirstSeq > mark+1 {
		return store.Ack{}, connect.NewError(connect.CodeAborted, fmt.Errorf("producer %s: batch starts at %d but applied mark is %d", b.Producer, b.FirstSeq, mark))
	}
	var ack store.Ack
	for _, r := range b.Rows {
		if b.Producer != "" && known && r.Seq <= mark {
			continue
		}
		if r.Cluster == "" {
			r.Cluster = b.Cluster
		}
		t.rows = append(t.rows, r)
		if ack.First == 0 {
			ack.First = int64(len(t.rows))
		}
		ack.Last = int64(len(t.rows))
	}
	if b.Producer != "" {
		m := max(mark, b.LastSeq)
		if len(b.Rows) > 0 {
			m = max(m, b.Rows[len(b.Rows)-1].Seq)
		}
		t.applied[b.Producer] = m
		ack.ProducerApplied = m
	}
	if len(t.loseAck) > 0 {
		lose := t.loseAck[0]
		t.loseAck = t.loseAck[1:]
		if lose {
			return store.Ack{}, connect.NewError(connect.CodeDeadlineExceeded, errors.New("ack lost after apply"))
		}
	}
	return ack, nil
}

func (t *memTarget) ProducerState(_ context.Context, producer string) (ProducerState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail != nil {
		return ProducerState{}, t.fail
	}
	m, ok := t.applied[producer]
	return ProducerState{Applied: m, Known: ok, RefusesGaps: t.strictOrder}, nil
}

// counts returns how many copies of each producer seq the target holds.
func (t *memTarget) counts() map[int64]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := map[int64]int{}
	for _, r := range t.rows {
		c[r.Seq]++
	}
	return c
}

func (t *memTarget) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.rows)
}

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
func checkDelivery(t tb, src *memSource, tgt *memTarget, fsys vfs.FS, dlPath, cluster string, from, to int64) {
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
