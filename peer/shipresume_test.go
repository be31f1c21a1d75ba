package peer

import (
	"context"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// sealedLog is a SegmentSource over a fixed list of sealed segments.
type sealedLog []store.SealedSegment

func (l sealedLog) SealedSince(c uint64) ([]store.SealedSegment, uint64) {
	if c >= uint64(len(l)) {
		return nil, uint64(len(l))
	}
	return append([]store.SealedSegment(nil), l[c:]...), uint64(len(l))
}

func (l sealedLog) OpenSealed(string) (vfs.File, int64, error) { panic("not opened here") }

func names(evs []store.SealedSegment) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Name)
	}
	return out
}

// A new link offers the segments sealed while its replica was away: those
// starting after what the replica holds in segments, up to the next row it
// needs; not the ones it already has, nor ones far ahead of a replica
// still catching up.
func TestShipperOffersSegmentsSealedWhileAway(t *testing.T) {
	log := sealedLog{
		{Name: "a", First: 1, Last: 100},
		{Name: "b", First: 101, Last: 200},
		{Name: "c", First: 1, Last: 200, Replaces: [][2]int64{{1, 100}, {101, 200}}},
		{Name: "d", First: 201, Last: 300},
		{Name: "e", First: 301, Last: 400},
	}
	for _, c := range []struct {
		from, through int64
		want          []string
	}{
		{from: 400, through: 400, want: nil},                   // has it all in segments
		{from: 400, through: 200, want: []string{"d", "e"}},    // was away for two flushes
		{from: 250, through: 200, want: []string{"d"}},         // d's last rows come as records next
		{from: 150, through: 0, want: []string{"a", "b", "c"}}, // not d or e: for later
		{from: 0, through: 0, want: []string{"a", "c"}},        // from scratch: what starts at its next row
	} {
		sh := newShipper(log, c.from, c.through)
		if got := names(sh.queue); !reflect.DeepEqual(got, c.want) {
			t.Errorf("from %d through %d: offers %v, want %v", c.from, c.through, got, c.want)
		}
		if sh.cursor != uint64(len(log)) {
			t.Errorf("from %d through %d: cursor %d, want %d (only later segments are new)", c.from, c.through, sh.cursor, len(log))
		}
	}
}

// A link that drops leaves the next one of the same replica what it had
// not shipped: the last segment it sent in full (the replica may not have
// adopted it yet), the one under way, its queue and everything sealed
// since.
func TestShipperResumesWhereTheLastLinkLeft(t *testing.T) {
	log := sealedLog{
		{Name: "a", First: 1, Last: 100},
		{Name: "b", First: 101, Last: 200},
		{Name: "c", First: 201, Last: 300},
		{Name: "d", First: 301, Last: 400},
	}
	old := &shipper{src: log[:3], cursor: 3, queue: []store.SealedSegment{log[2]}}
	old.done = &log[0]
	old.cur = &shipment{ev: log[1]}
	left := old.leftover()
	old.cur = nil // its file was closed with the link

	sh := resumeShipper(log, left)
	if got, want := names(sh.queue), []string{"a", "b", "c", "d"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("resumed queue %v, want %v", got, want)
	}
	if sh.cursor != uint64(len(log)) {
		t.Fatalf("resumed cursor %d, want %d", sh.cursor, len(log))
	}

	p := &Primary{}
	var id ID
	id[0] = 7
	p.keepShipLeft(id, left)
	if got, ok := p.takeShipLeft(id); !ok || !reflect.DeepEqual(got, left) {
		t.Fatalf("takeShipLeft = %+v, %v", got, ok)
	}
	if _, ok := p.takeShipLeft(id); ok {
		t.Fatal("a leftover is taken once")
	}
}

// A replica whose link dropped adopts, on its next link, the segments its
// primary sealed while it was away, instead of flushing those rows itself.
func TestReplicaAdoptsSegmentsSealedWhileAway(t *testing.T) {
	ctx := context.Background()
	prim := openStore(t, vfs.NewMemFS(), "p")
	defer prim.Close()
	h := startPrimary(t, prim)
	defer h.stop()
	rep, err := store.Open(store.Options{FS: vfs.NewMemFS(), Dir: "r", Following: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	var mu sync.Mutex
	var cur net.Conn
	hold := make(chan struct{}) // closed: dials go through
	close(hold)
	r, err := NewReplica(ReplicaConfig{
		Primary: h.addr,
		Dial: func(ctx context.Context) (net.Conn, error) {
			mu.Lock()
			wait := hold
			mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", h.addr)
			mu.Lock()
			cur = nc
			mu.Unlock()
			return nc, err
		},
		Dialer: dialerCfg(h.psk, 2), Store: rep,
		Heartbeat: 50 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	adopted := func() int { return r.SegmentResults()[store.AdoptedSegment] }

	waitFor(t, "the replica to subscribe", func() bool { return len(h.p.Replicas()) == 1 })
	push(t, prim, store.Batch{Rows: rows(200, "a")})
	if err := prim.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first adoption", func() bool { return adopted() == 1 })

	// Cut the link and keep the replica away while the primary takes rows
	// and seals them.
	mu.Lock()
	hold = make(chan struct{})
	cur.Close()
	mu.Unlock()
	waitFor(t, "the primary to see the link go", func() bool { return len(h.p.Replicas()) == 0 })
	push(t, prim, store.Batch{Rows: rows(200, "b")})
	if err := prim.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	close(hold)
	mu.Unlock()

	waitFor(t, "the adoption of the segment sealed while away", func() bool { return adopted() == 2 })
	if got, want := scanAll(t, rep), scanAll(t, prim); !reflect.DeepEqual(got, want) {
		t.Fatalf("replica serves %d rows, primary %d", len(got), len(want))
	}
	if rs, ps := rep.Stats(), prim.Stats(); rs.Segments != ps.Segments || rs.SegmentBytes != ps.SegmentBytes {
		t.Fatalf("replica %d segments (%d bytes), primary %d (%d bytes)", rs.Segments, rs.SegmentBytes, ps.Segments, ps.SegmentBytes)
	}
}
