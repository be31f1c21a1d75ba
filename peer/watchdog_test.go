package peer

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// TestReplicaClosesSilentPrimary: a primary that completes the handshake
// and then says nothing (hung, or a half-open TCP link) is dropped after
// deadAfter heartbeats, and the replica dials again.
func TestReplicaClosesSilentPrimary(t *testing.T) {
	psk := testPSK(t, 'k')
	a := newAcceptor(t, acceptorCfg(t, psk))
	clk := clock.NewFake(time.Unix(1e9, 0))
	conns := make(chan *Conn, 4)
	rep := openStore(t, vfs.NewMemFS(), "r")
	defer rep.Close()
	r, err := NewReplica(ReplicaConfig{
		Dial: func(ctx context.Context) (net.Conn, error) {
			dn, an := net.Pipe()
			go func() {
				if c, err := a.Accept(an); err == nil {
					conns <- c
				}
			}()
			return dn, nil
		},
		Dialer: dialerCfg(psk, 2),
		Store:  rep,
		Clock:  clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	first := <-conns
	// The primary reads (the replica's Subscribe and heartbeats) but never
	// writes.
	closed := make(chan struct{})
	go func() {
		for {
			if _, _, err := first.Recv(); err != nil {
				close(closed)
				return
			}
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-closed:
			if i < deadAfter {
				t.Fatalf("link closed after %d heartbeats of silence, want more than %d", i, deadAfter)
			}
			for range 250 { // the reconnect backoff, on the fake clock
				clk.Advance(time.Second)
				select {
				case c := <-conns:
					c.Close()
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			t.Fatal("the replica did not dial again")
		case <-time.After(20 * time.Millisecond):
			if i > 250 {
				t.Fatal("the replica kept a silent link open")
			}
			clk.Advance(DefaultHeartbeat)
		}
	}
}
