package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// pushPastAckTimeout pushes req to the primary e and, once the push waits
// for replica acks, moves e's clock past --replica-ack-timeout; it returns
// the push's error.
func pushPastAckTimeout(t *testing.T, e *testEnv, req *loggingpb.PushLogsRequest) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := e.c.Push(context.Background(), req)
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.peer.primary.Parked() == 0 {
		select {
		case err := <-errc:
			return err // answered without waiting for a replica
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the push never waited for replica acks")
		}
		time.Sleep(time.Millisecond)
	}
	// Just short of the timeout nothing happens: the wait is on the
	// server's clock, not the wall clock.
	e.clk.Advance(e.srv.cfg.Peer.AckTimeout - time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("the push answered before --replica-ack-timeout passed on the server's clock: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	e.clk.Advance(time.Millisecond)
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the push did not answer once --replica-ack-timeout passed on the server's clock")
		return nil
	}
}

// TestReplicaAckTimeoutOnServerClock: with --min-replica-acks 1 and no
// replica, a push fails with unavailable when --replica-ack-timeout passes
// on the injected clock; its rows are durable on the primary, and the
// client's retry of the same producer batch succeeds once a replica has
// synced them, without a second copy on either store.
func TestReplicaAckTimeoutOnServerClock(t *testing.T) {
	ctx := context.Background()
	p := peerPrimary(t, 1)
	batch := &loggingpb.PushLogsRequest{Key: "/k", Producer: "relay-a", FirstSeq: 1, LastSeq: 2,
		Entries: []*loggingpb.LogEntry{{Data: "one", Seq: 1}, {Data: "two", Seq: 2}}}
	err := pushPastAckTimeout(t, p, batch)
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "nothing is lost, retry") {
		t.Fatalf("push without a replica: %v, want unavailable saying to retry", err)
	}
	ref := p.srv.st.Load()
	if got := ref.s.LastSeq(); got != 2 {
		t.Fatalf("after the timeout the primary holds up to seq %d, want the batch's 2 rows", got)
	}

	r := peerReplica(t, p)
	resp, err := p.c.Push(ctx, batch)
	if err != nil {
		t.Fatalf("retry with a replica following: %v", err)
	}
	if resp.GetFirstSeq() != 0 || resp.GetProducerAppliedSeq() != 2 {
		t.Fatalf("retry appended seqs [%d,%d] (applied %d), want a dropped duplicate", resp.GetFirstSeq(), resp.GetLastSeq(), resp.GetProducerAppliedSeq())
	}
	// The retry's ack means the replica holds the rows: once each.
	got, err := r.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/k", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 2 || got.Entries[0].GetData() != "one" || got.Entries[1].GetSeq() != 2 {
		t.Fatalf("replica holds %v, want rows one and two at seqs 1 and 2", got.Entries)
	}
}
