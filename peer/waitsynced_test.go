package peer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// TestWaitSyncedTimesOutOnItsClock: the timeout is the primary's clock's,
// not the wall clock's, and Parked counts the wait only while nothing but
// an ack or that clock can end it.
func TestWaitSyncedTimesOutOnItsClock(t *testing.T) {
	st := openStore(t, vfs.NewMemFS(), "p")
	defer st.Close()
	ack := push(t, st, store.Batch{Rows: rows(1, "a")})
	clk := clock.NewFake(time.Unix(1e9, 0))
	p, err := NewPrimary(PrimaryConfig{Source: StoreSource(st), Acceptor: newAcceptor(t, acceptorCfg(t, testPSK(t, 'k'))), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.WaitSynced(context.Background(), ack.Last, 1, 5*time.Second) }()
	waitFor(t, "the wait to park", func() bool { return p.Parked() == 1 })
	clk.Advance(5*time.Second - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("returned before its timeout passed on the clock: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if p.Parked() != 1 {
		t.Fatalf("Parked = %d just before the deadline, want 1", p.Parked())
	}
	clk.Advance(time.Nanosecond)
	if n := p.Parked(); n != 0 {
		t.Fatalf("Parked = %d at the deadline, want 0 (the timeout releases it)", n)
	}
	if err := <-done; !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("WaitSynced = %v, want ErrAckTimeout", err)
	}
}
