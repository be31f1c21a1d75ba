package relay

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/store"
)

// sentTarget is the test target as a SentSink: it logs when each push
// starts and when it reports the push sent, then applies it.
type sentTarget struct {
	*storeTarget
	mu     sync.Mutex
	events []string
}

func (s *sentTarget) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, fmt.Sprintf(format, args...))
}

func (s *sentTarget) PushSent(ctx context.Context, b Batch, sent func()) (store.Ack, error) {
	s.note("start %d", b.FirstSeq)
	// The request is on the wire; the target's work on it is still to
	// come, and the next push may overlap it.
	s.note("sent %d", b.FirstSeq)
	sent()
	return s.storeTarget.Push(ctx, b)
}

// With a SentSink, the batches of a round are started in seq order, each
// after the one before it was sent, and still overlap at the target; every
// row arrives exactly once (a push the target still reorders is
// refused and sent again).
func TestInFlightPushesStartOnceThePreviousIsSent(t *testing.T) {
	h := newHarness(t)
	h.tgt.refusesGaps = true
	sink := &sentTarget{storeTarget: h.tgt}
	h.tweak = func(c *Config) { c.InFlight = 4; c.Sink = sink }
	h.tgt.beforePush = func(int32) {
		// Hold each push until a second is in flight (or briefly), so the
		// test sees overlap whenever the relay offers it.
		for deadline := time.Now().Add(200 * time.Millisecond); h.tgt.maxActive.Load() < 2 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	h.src.addN(100) // the first round goes alone
	f := h.forwarder(t)
	h.drain(t, f, 10)
	sink.mu.Lock()
	sink.events = nil
	sink.mu.Unlock()
	h.src.addN(400)
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatalf("step: %v", err)
	}
	want := []string{"start 101", "sent 101", "start 201", "sent 201", "start 301", "sent 301", "start 401", "sent 401"}
	if !slices.Equal(sink.events, want) {
		t.Errorf("push events %q, want %q: each push must start after the one before it was sent", sink.events, want)
	}
	if m := h.tgt.maxActive.Load(); m < 2 {
		t.Errorf("at most %d push at the target at once, want the pushes to overlap", m)
	}
	if w := f.Watermark(); w != 500 {
		t.Errorf("watermark %d after one step, want 500", w)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 500)
}

// lateFirst is a plain Sink (all of a round's pushes start at once) whose
// first push of each round reaches the target late, so the later ones
// overtake it and are refused.
type lateFirst struct {
	*storeTarget
	mu      sync.Mutex
	aborted map[int64]int
	applied chan int64
}

func (s *lateFirst) Push(ctx context.Context, b Batch) (store.Ack, error) {
	if b.FirstSeq%400 == 101 {
		time.Sleep(30 * time.Millisecond)
	}
	ack, err := s.storeTarget.Push(ctx, b)
	if connect.CodeOf(err) == connect.CodeAborted {
		s.mu.Lock()
		s.aborted[b.FirstSeq]++
		s.mu.Unlock()
	}
	if err == nil {
		select {
		case s.applied <- b.FirstSeq:
		default:
		}
	}
	return ack, err
}

// A batch refused as overtaking is sent again as soon as its predecessors
// were applied, while the round's later batches are still in flight, and
// every row arrives exactly once in one Step.
func TestOvertakingPushRetriedOnceItsPredecessorIsApplied(t *testing.T) {
	h := newHarness(t)
	h.tgt.refusesGaps = true
	sink := &lateFirst{storeTarget: h.tgt, aborted: map[int64]int{}, applied: make(chan int64, 16)}
	h.tweak = func(c *Config) { c.InFlight = 4; c.Sink = sink }
	h.src.addN(100)
	f := h.forwarder(t)
	h.drain(t, f, 10)
	// The round's last batch (seqs 401..500) is held at the target until
	// the second (201..300) is applied: that happens within the round only
	// if the refused second batch is re-sent before the round ends.
	released := make(chan bool, 1)
	var held bool
	h.tgt.beforePush = nil
	h.tgt.failWhen = func(b Batch) error {
		if b.FirstSeq != 401 || held {
			return nil
		}
		held = true
		h.tgt.mu.Unlock()
		defer h.tgt.mu.Lock()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case first := <-sink.applied:
				if first == 201 {
					released <- true
					return nil
				}
			case <-deadline:
				released <- false
				return nil
			}
		}
	}
	h.src.addN(400)
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatalf("step: %v", err)
	}
	if !<-released {
		t.Error("seqs 201..300 were not applied while 401..500 was in flight: the refused push waited for the whole round")
	}
	if sink.aborted[201] == 0 {
		t.Error("seqs 201..300 were never refused as overtaking: the test did not make them overtake")
	}
	if w := f.Watermark(); w != 500 {
		t.Errorf("watermark %d after one step, want 500", w)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 500)
}

// ClientSink reports a push sent once its request is written, before the
// target answers.
func TestClientSinkReportsSentBeforeTheAnswer(t *testing.T) {
	svc := &recordingService{}
	sent := make(chan struct{})
	gate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-sent:
			case <-time.After(5 * time.Second):
				http.Error(w, "the client did not report the request sent", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	srv, wc := newTestServer(t, svc)
	wc.next = gate(wc.next)
	sink := NewClientSink(srv.URL, srv.Client(), nil, 0)
	var once sync.Once
	_, err := sink.PushSent(context.Background(), Batch{Producer: "east/abc", Cluster: "east", FirstSeq: 1, LastSeq: 1,
		Rows: []store.Row{{Seq: 1, Key: "/a", Data: "x", EpochMS: 1}}}, func() { once.Do(func() { close(sent) }) })
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if len(svc.pushes) != 1 {
		t.Fatalf("target got %d pushes, want 1", len(svc.pushes))
	}
}

// holdSecond is a plain Sink that holds the push of seqs 201..300 until
// the push of 301..400 has started (or 5 s passed).
type holdSecond struct {
	*storeTarget
	third    chan struct{}
	once     sync.Once
	overlaps atomic.Bool
}

func (s *holdSecond) Push(ctx context.Context, b Batch) (store.Ack, error) {
	switch b.FirstSeq {
	case 201:
		select {
		case <-s.third:
			s.overlaps.Store(true)
		case <-time.After(5 * time.Second):
		}
	case 301:
		s.once.Do(func() { close(s.third) })
	}
	return s.storeTarget.Push(ctx, b)
}

// The pushes in flight are a sliding window, not rounds of InFlight: the
// next batch goes as soon as the oldest in flight is acked, while a slower
// one is still at the target, and every row arrives exactly once.
func TestNextBatchGoesWhileASlowerOneIsInFlight(t *testing.T) {
	h := newHarness(t)
	h.tgt.refusesGaps = true
	sink := &holdSecond{storeTarget: h.tgt, third: make(chan struct{})}
	h.tweak = func(c *Config) { c.InFlight = 2; c.Sink = sink }
	h.src.addN(100) // the first batch of a process goes alone
	f := h.forwarder(t)
	h.drain(t, f, 10)
	h.src.addN(300)
	if _, err := f.Step(context.Background()); err != nil {
		t.Fatalf("step: %v", err)
	}
	if !sink.overlaps.Load() {
		t.Error("seqs 301..400 were pushed only after 201..300 returned: the relay waited for a whole round")
	}
	if w := f.Watermark(); w != 400 {
		t.Errorf("watermark %d after one step, want 400", w)
	}
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 400)
}
