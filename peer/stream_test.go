package peer

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

func openStore(t *testing.T, fs vfs.FS, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(store.Options{FS: fs, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// harness is a primary store behind a real loopback peer port.
type harness struct {
	t       *testing.T
	primary *store.Store
	p       *Primary
	addr    string
	psk     PSK
	stop    func()
}

func startPrimary(t *testing.T, st *store.Store) *harness {
	t.Helper()
	psk := testPSK(t, 'k')
	acc := newAcceptor(t, acceptorCfg(t, psk))
	p, err := NewPrimary(PrimaryConfig{Source: StoreSource(st), Acceptor: acc, Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	h := &harness{t: t, primary: st, p: p, addr: ln.Addr().String(), psk: psk}
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	return h
}

// follow starts a replica of h into st; the returned func stops it.
func (h *harness) follow(st RecordApplier, seed byte) (*Replica, func()) {
	h.t.Helper()
	r, err := NewReplica(ReplicaConfig{
		Primary: h.addr,
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", h.addr)
		},
		Dialer:     dialerCfg(h.psk, seed),
		Store:      st,
		Heartbeat:  50 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	return r, func() { cancel(); <-done }
}

func push(t *testing.T, s *store.Store, b store.Batch) store.Ack {
	t.Helper()
	ack, err := s.Append(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func rows(n int, tag string) []store.Row {
	out := make([]store.Row, n)
	for i := range out {
		out[i] = store.Row{Key: "/job/" + tag, Source: "stdout", Data: fmt.Sprintf("%s line %d", tag, i), EpochMS: int64(1000 + i), Level: 2, Cluster: "east"}
	}
	return out
}

func producerRows(from, n int) []store.Row {
	out := rows(n, "relayed")
	for i := range out {
		out[i].Seq = int64(from + i)
	}
	return out
}

func scanAll(t *testing.T, s *store.Store) []store.Row {
	t.Helper()
	got, err := s.Scan(context.Background(), 0, 1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReplicaFollowsExactly(t *testing.T) {
	prim := openStore(t, vfs.NewMemFS(), "p")
	defer prim.Close()
	h := startPrimary(t, prim)
	defer h.stop()
	push(t, prim, store.Batch{Rows: rows(10, "a")})
	push(t, prim, store.Batch{Producer: "relay-west", Rows: producerRows(1, 5), FirstSeq: 1, LastSeq: 7})
	if err := prim.Flush(context.Background()); err != nil { // some rows come from segments
		t.Fatal(err)
	}
	push(t, prim, store.Batch{Rows: rows(3, "b")})
	push(t, prim, store.Batch{Producer: "relay-west", Rows: producerRows(8, 2), FirstSeq: 8, LastSeq: 9})

	rep := openStore(t, vfs.NewMemFS(), "r")
	defer rep.Close()
	r, stop := h.follow(rep, 2)
	waitFor(t, "the replica to catch up", func() bool { return rep.LastSeq() == prim.LastSeq() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.p.WaitSynced(ctx, prim.LastSeq(), 1, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := scanAll(t, rep), scanAll(t, prim); !reflect.DeepEqual(got, want) {
		t.Fatalf("replica rows differ from the primary's:\n got %d rows\nwant %d rows", len(got), len(want))
	}
	pm, _ := prim.ProducerApplied("relay-west")
	rm, ok := rep.ProducerApplied("relay-west")
	if !ok || rm != pm {
		t.Fatalf("replica producer mark %d (known %v), primary %d", rm, ok, pm)
	}
	st := r.Status()
	if !st.Connected || st.LagRows != 0 || st.AppliedSeq != prim.LastSeq() {
		t.Fatalf("replica status %+v", st)
	}
	reps := h.p.Replicas()
	if len(reps) != 1 || reps[0].SyncedSeq != prim.LastSeq() || reps[0].Node != nodeName(testDialer) {
		t.Fatalf("primary's replica status %+v", reps)
	}

	// Streaming continues, and a replica restarted later resumes from its
	// own last seq: every row once, same seqs.
	push(t, prim, store.Batch{Rows: rows(4, "c")})
	waitFor(t, "streamed rows", func() bool { return rep.LastSeq() == prim.LastSeq() })
	stop()
	push(t, prim, store.Batch{Rows: rows(6, "d")})
	_, stop = h.follow(rep, 3)
	defer stop()
	waitFor(t, "the resumed replica", func() bool { return rep.LastSeq() == prim.LastSeq() })
	if got, want := scanAll(t, rep), scanAll(t, prim); !reflect.DeepEqual(got, want) {
		t.Fatalf("after resume: replica has %d rows, primary %d", len(got), len(want))
	}
}

// TestAckedMeansDurableOnReplica: once WaitSynced says a seq is on a
// replica, a power cut on the replica does not lose it.
func TestAckedMeansDurableOnReplica(t *testing.T) {
	prim := openStore(t, vfs.NewMemFS(), "p")
	defer prim.Close()
	h := startPrimary(t, prim)
	defer h.stop()
	rfs := vfs.NewMemFS()
	rep := openStore(t, rfs, "r")
	_, stop := h.follow(rep, 2)
	var acked int64
	for i := range 20 {
		ack := push(t, prim, store.Batch{Rows: rows(3, fmt.Sprint(i))})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := h.p.WaitSynced(ctx, ack.Last, 1, 0); err != nil {
			t.Fatal(err)
		}
		cancel()
		acked = ack.Last
	}
	stop()
	rep.Abandon()
	rfs.Crash(rand.New(rand.NewSource(1)))
	rep = openStore(t, rfs, "r")
	defer rep.Close()
	if rep.LastSeq() < acked {
		t.Fatalf("after a crash the replica holds up to seq %d, but %d was acknowledged as synced", rep.LastSeq(), acked)
	}
	got := scanAll(t, rep)
	want := scanAll(t, prim)
	if !reflect.DeepEqual(got[:acked], want[:acked]) {
		t.Fatal("replica rows after the crash differ from the primary's")
	}
}

func TestWaitSyncedNeedsEnoughReplicas(t *testing.T) {
	prim := openStore(t, vfs.NewMemFS(), "p")
	defer prim.Close()
	h := startPrimary(t, prim)
	defer h.stop()
	ack := push(t, prim, store.Batch{Rows: rows(2, "a")})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.p.WaitSynced(ctx, ack.Last, 1, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no replica: %v, want a deadline error", err)
	}
	rep := openStore(t, vfs.NewMemFS(), "r")
	defer rep.Close()
	_, stop := h.follow(rep, 2)
	defer stop()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := h.p.WaitSynced(ctx2, ack.Last, 1, 0); err != nil {
		t.Fatal(err)
	}
	ctx3, cancel3 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel3()
	if err := h.p.WaitSynced(ctx3, ack.Last, 2, 0); err == nil || !strings.Contains(err.Error(), "1 of 2 replicas") {
		t.Fatalf("one replica, two needed: %v", err)
	}
}

// TestReplicaAheadOfPrimaryRefused: a replica holding seqs the primary
// never committed (the primary lost its disk) is not fed conflicting rows.
func TestReplicaAheadOfPrimaryRefused(t *testing.T) {
	prim := openStore(t, vfs.NewMemFS(), "p")
	defer prim.Close()
	push(t, prim, store.Batch{Rows: rows(2, "new-primary")})
	h := startPrimary(t, prim)
	defer h.stop()
	rep := openStore(t, vfs.NewMemFS(), "r")
	defer rep.Close()
	push(t, rep, store.Batch{Rows: rows(5, "old")})
	before := scanAll(t, rep)
	r, stop := h.follow(rep, 2)
	waitFor(t, "the refusal", func() bool { return r.Status().LastError != "" })
	stop()
	if got := scanAll(t, rep); !reflect.DeepEqual(got, before) {
		t.Fatal("the replica's rows changed")
	}
}
