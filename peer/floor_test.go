package peer

import (
	"context"
	"encoding/hex"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// A replica that is caught up gets every later rise of the primary's
// retention floor, whether it is streaming or resubscribes after one, and
// holds it durably; its own retention settings delete nothing while it
// follows.
func TestReplicaTakesThePrimarysFloor(t *testing.T) {
	ctx := context.Background()
	// Every flushed segment is over the byte limit: Retain deletes all of
	// them, leaving the memtable.
	prim, err := store.Open(store.Options{FS: vfs.NewMemFS(), Dir: "p", RetentionBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer prim.Close()
	h := startPrimary(t, prim)
	defer h.stop()
	for _, tag := range []string{"a", "b"} {
		push(t, prim, store.Batch{Rows: rows(10, tag)})
		if err := prim.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	push(t, prim, store.Batch{Rows: rows(5, "c")}) // seqs 21..25 stay in the memtable

	rfs := vfs.NewMemFS()
	ropts := store.Options{FS: rfs, Dir: "r", Following: true, RetentionBytes: 1}
	rep, err := store.Open(ropts)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := h.follow(rep, 2)
	waitFor(t, "the replica to catch up", func() bool { return rep.LastSeq() == 25 })
	if err := rep.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rep.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := rep.Stats(); st.FirstSeq != 1 {
		t.Fatalf("the following replica ran its own retention: %+v", st)
	}

	// Streaming and caught up: no record is due to carry the new floor.
	if err := prim.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if prim.Floor() != 20 {
		t.Fatalf("primary floor %d, want 20", prim.Floor())
	}
	waitFor(t, "the floor on the replica", func() bool { return rep.Floor() == 20 })
	if got, want := scanAll(t, rep), scanAll(t, prim); !reflect.DeepEqual(got, want) || len(got) != 5 {
		t.Fatalf("after floor 20: replica has %d rows, primary %d (want the same 5)", len(got), len(want))
	}

	// The floor rises while the replica is away; it resubscribes caught up.
	stop()
	if err := prim.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := prim.Retain(ctx); err != nil || prim.Floor() != 25 {
		t.Fatalf("primary Retain: %v, floor %d; want 25", err, prim.Floor())
	}
	_, stop = h.follow(rep, 3)
	waitFor(t, "the floor after resubscribing", func() bool { return rep.Floor() == 25 })
	if got := scanAll(t, rep); len(got) != 0 {
		t.Fatalf("replica still serves %d rows below the primary's floor", len(got))
	}
	ack := push(t, prim, store.Batch{Rows: rows(3, "d")})
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.p.WaitSynced(wctx, ack.Last, 1, 0); err != nil {
		t.Fatal(err)
	}
	stop()

	// The floor survives a power cut on the replica.
	rep.Abandon()
	rfs.Crash(rand.New(rand.NewSource(1)))
	rep, err = store.Open(ropts)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	if got, want := scanAll(t, rep), scanAll(t, prim); rep.Floor() != 25 || !reflect.DeepEqual(got, want) || len(got) != 3 {
		t.Fatalf("after a crash: replica floor %d with %d rows; primary %d rows", rep.Floor(), len(got), len(want))
	}
}

// The floor-only Records body of docs/replica.md.
func TestFloorOnlyRecordsVector(t *testing.T) {
	body := EncodeRecords(nil, Records{Floor: 20, PrimaryLast: 25})
	if got, want := hex.EncodeToString(body), "0000000000000014"+"0000000000000019"+"00000000"; got != want {
		t.Fatalf("floor-only body %s, want %s", got, want)
	}
	r, err := DecodeRecords(body)
	if err != nil || r.Floor != 20 || r.PrimaryLast != 25 || len(r.Records) != 0 {
		t.Fatalf("DecodeRecords = %+v, %v", r, err)
	}
}
