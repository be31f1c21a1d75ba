package peer

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math/rand"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"lukechampine.com/blake3"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// A replica following a primary adopts the primary's flushed and merged
// segment files: it ends with the primary's segments, not its own, and
// serves exactly the primary's rows and marks.
func TestReplicaAdoptsShippedSegments(t *testing.T) {
	ctx := context.Background()
	prim := openStore(t, vfs.NewMemFS(), "p")
	defer prim.Close()
	h := startPrimary(t, prim)
	defer h.stop()
	rfs := vfs.NewMemFS()
	rep, err := store.Open(store.Options{FS: rfs, Dir: "r", Following: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	r, stop := h.follow(rep, 2)
	defer stop()
	// Rows above 1 MiB per segment, so a file goes in several chunks with
	// Records frames between them.
	rng := rand.New(rand.NewSource(1))
	noise := make([]byte, 1500)
	for i := range 4 {
		rs := rows(500, "a")
		for j := range rs {
			rng.Read(noise)
			rs[j].Data = hex.EncodeToString(noise) + rs[j].Data
		}
		push(t, prim, store.Batch{Rows: rs})
		push(t, prim, store.Batch{Producer: "relay-west", Rows: producerRows(i*2+1, 2), FirstSeq: int64(i*2 + 1), LastSeq: int64(i*2 + 2)})
		if err := prim.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		want := i + 1
		waitFor(t, "the replica to adopt the flushed segment", func() bool { return r.SegmentResults()[store.AdoptedSegment] == want })
	}
	if err := prim.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to adopt the merged segment", func() bool { return r.SegmentResults()[store.AdoptedSegment] == 5 })
	push(t, prim, store.Batch{Rows: rows(3, "b")})
	waitFor(t, "the replica to catch up", func() bool { return rep.LastSeq() == prim.LastSeq() })
	ps, rs := prim.Stats(), rep.Stats()
	if rs.Segments != 1 || ps.Segments != 1 || rs.SegmentRows != ps.SegmentRows || rs.SegmentBytes != ps.SegmentBytes {
		t.Fatalf("replica segments %d (%d rows, %d bytes), primary %d (%d rows, %d bytes)", rs.Segments, rs.SegmentRows, rs.SegmentBytes, ps.Segments, ps.SegmentRows, ps.SegmentBytes)
	}
	if got, want := scanAll(t, rep), scanAll(t, prim); !reflect.DeepEqual(got, want) {
		t.Fatalf("replica serves %d rows, primary %d", len(got), len(want))
	}
	pm, _ := prim.ProducerApplied("relay-west")
	if rm, _ := rep.ProducerApplied("relay-west"); rm != pm || pm != 8 {
		t.Fatalf("producer mark: replica %d, primary %d", rm, pm)
	}
	// The adopted file is byte for byte the primary's.
	var name string
	for _, ev := range func() []store.SealedSegment { evs, _ := prim.SealedSince(0); return evs }() {
		name = ev.Name
	}
	pf, psize, err := prim.OpenSealed(name)
	if err != nil {
		t.Fatal(err)
	}
	if psize <= 2*MaxSegmentChunk {
		t.Fatalf("the merged segment is %d bytes: too small to need several chunks", psize)
	}
	defer pf.Close()
	rf, rsize, err := rep.OpenSealed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	a, b := make([]byte, psize), make([]byte, rsize)
	readFull(pf, a, 0)
	readFull(rf, b, 0)
	if !bytes.Equal(a, b) {
		t.Fatalf("replica's %s (%d bytes) differs from the primary's (%d bytes)", name, rsize, psize)
	}
}

func TestSegmentChunkRoundTrip(t *testing.T) {
	c := SegmentChunk{First: 7, Last: 90, Size: 5000, Replaces: [][2]int64{{7, 40}, {41, 90}}, Offset: 4000, Data: []byte("chunk")}
	last := SegmentChunk{First: 7, Last: 90, Size: 5000, Hash: [32]byte{1, 2, 3}, Offset: 4995, Data: []byte("final")}
	for _, c := range []SegmentChunk{c, last} {
		got, err := DecodeSegmentChunk(EncodeSegmentChunk(nil, c))
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip: %+v %v", got, err)
		}
	}
	for _, tc := range []struct {
		name string
		c    SegmentChunk
	}{
		{"empty data", SegmentChunk{First: 1, Last: 1, Size: 10}},
		{"past the size", SegmentChunk{First: 1, Last: 1, Size: 10, Offset: 8, Data: []byte("abc")}},
		{"last before first", SegmentChunk{First: 5, Last: 4, Size: 10, Data: []byte("a")}},
		{"replaced range outside", SegmentChunk{First: 5, Last: 9, Size: 10, Replaces: [][2]int64{{4, 9}}, Data: []byte("a")}},
		{"over the chunk limit", SegmentChunk{First: 1, Last: 1, Size: 2 << 20, Data: make([]byte, MaxSegmentChunk+1)}},
		{"a hash before the last chunk", SegmentChunk{First: 1, Last: 1, Size: 10, Hash: [32]byte{9}, Data: []byte("a")}},
	} {
		if _, err := DecodeSegmentChunk(EncodeSegmentChunk(nil, tc.c)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want a protocol error", tc.name, err)
		}
	}
	b := EncodeSegmentChunk(nil, c)
	for n := range len(b) - len(c.Data) {
		if _, err := DecodeSegmentChunk(b[:n]); !errors.Is(err, ErrProtocol) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
}

// linkPair is a replica link over a pipe whose primary end the test
// writes by hand.
func linkPair(t *testing.T, rep *store.Store) (*ReplicaLink, *Conn) {
	t.Helper()
	psk := testPSK(t, 'k')
	a := newAcceptor(t, acceptorCfg(t, psk))
	d, acc := handshakePair(t, a, dialerCfg(psk, 3))
	if d.err != nil || acc.err != nil {
		t.Fatal(d.err, acc.err)
	}
	r, err := NewReplica(ReplicaConfig{Dial: func(context.Context) (net.Conn, error) { return nil, errors.New("unused") }, Store: rep})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for { // the Subscribe and Acks
			if _, _, err := acc.c.Recv(); err != nil {
				return
			}
		}
	}()
	rl, err := r.Attach(d.c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.c.Close(); acc.c.Close() })
	return rl, acc.c
}

// A file whose bytes do not hash to the announced BLAKE3, or chunks out of
// order, close the link; nothing is adopted.
func TestReplicaRefusesBadSegmentChunks(t *testing.T) {
	ctx := context.Background()
	prim := openStore(t, vfs.NewMemFS(), "p")
	defer prim.Close()
	push(t, prim, store.Batch{Rows: rows(20, "a")})
	if err := prim.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, _ := prim.SealedSince(0)
	f, size, err := prim.OpenSealed(evs[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	readFull(f, data, 0)
	f.Close()
	hash, _ := hashFile(bytesFile(data), size)

	for _, tc := range []struct {
		name   string
		chunks func() []SegmentChunk
		want   string
	}{
		{"hash mismatch", func() []SegmentChunk {
			bad := append([]byte(nil), data...)
			bad[len(bad)/2] ^= 1
			return []SegmentChunk{{First: 1, Last: 20, Size: size, Hash: hash, Data: bad}}
		}, "BLAKE3"},
		{"offset gap", func() []SegmentChunk {
			return []SegmentChunk{
				{First: 1, Last: 20, Size: size, Data: data[:100]},
				{First: 1, Last: 20, Size: size, Hash: hash, Offset: 200, Data: data[200:]},
			}
		}, "does not continue"},
		{"another file mid-way", func() []SegmentChunk {
			return []SegmentChunk{
				{First: 1, Last: 20, Size: size, Data: data[:100]},
				{First: 1, Last: 20, Size: size, Hash: hash, Data: data},
			}
		}, "started before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := store.Open(store.Options{FS: vfs.NewMemFS(), Dir: "r", Following: true})
			if err != nil {
				t.Fatal(err)
			}
			defer rep.Close()
			st, _ := prim.Tail(0)
			rec, _, _ := st.TryNext(ctx)
			st.Close()
			if err := rep.ApplyReplicated(ctx, rec); err != nil {
				t.Fatal(err)
			}
			rl, _ := linkPair(t, rep)
			var last error
			for _, c := range tc.chunks() {
				if last = rl.TakeSegment(ctx, c); last != nil {
					break
				}
			}
			if !errors.Is(last, ErrProtocol) || !strings.Contains(last.Error(), tc.want) {
				t.Fatalf("got %v, want a protocol error saying %q", last, tc.want)
			}
			if s := rep.Stats(); s.Segments != 0 || s.MemtableRows != 20 {
				t.Fatalf("replica after a refused file: %+v", s)
			}
		})
	}
}

// A replica whose primary predates segment shipping (it closes the link at
// the 9-byte Subscribe without a word) follows it with the original
// 8-byte Subscribe from the next attempt on.
func TestReplicaFallsBackToPlainSubscribe(t *testing.T) {
	psk := testPSK(t, 'k')
	a := newAcceptor(t, acceptorCfg(t, psk))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	subs := make(chan int, 4)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c, err := a.Accept(nc)
			if err != nil {
				nc.Close()
				continue
			}
			_, body, err := c.Recv()
			if err == nil {
				subs <- len(body)
			}
			c.Close() // as an old primary does at a body it does not know
		}
	}()
	rep, err := store.Open(store.Options{FS: vfs.NewMemFS(), Dir: "r", Following: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	r, err := NewReplica(ReplicaConfig{
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		},
		Dialer: dialerCfg(psk, 2), Store: rep, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	first, second := <-subs, <-subs
	cancel()
	<-done
	if first != 9 || second != 8 {
		t.Fatalf("Subscribe bodies %d then %d bytes, want 9 then 8", first, second)
	}
}

// hashFile is BLAKE3-256 of f's first size bytes.
func hashFile(f io.ReaderAt, size int64) ([32]byte, error) {
	h := blake3.New(32, nil)
	buf := make([]byte, min(size, MaxSegmentChunk))
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		if err := readFull(f, buf[:n], off); err != nil {
			return [32]byte{}, err
		}
		h.Write(buf[:n])
		off += n
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

// bytesFile is an io.ReaderAt over b, for hashFile.
type bytesFile []byte

func (b bytesFile) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(b).ReadAt(p, off)
}

// A replica that catches up from far behind receives the primary's old
// rows as records and flushes them itself (its memtable passes the
// fallback bound); the primary's next segments then line its segments up
// again (the rows before one that it holds only in memory are written as a
// segment of its own first), and from there on it adopts them.
func TestReplicaRealignsAfterCatchUp(t *testing.T) {
	ctx := context.Background()
	opts := store.Options{FS: vfs.NewMemFS(), Dir: "p", MemtableBytes: 32 << 10}
	prim, err := store.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer prim.Close()
	for range 6 {
		push(t, prim, store.Batch{Rows: rows(300, "old")})
		if err := prim.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	h := startPrimary(t, prim)
	defer h.stop()
	rep, err := store.Open(store.Options{FS: vfs.NewMemFS(), Dir: "r", Following: true, Background: true, MemtableBytes: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	r, stop := h.follow(rep, 2)
	defer stop()
	waitFor(t, "the catch-up", func() bool { return rep.LastSeq() == prim.LastSeq() })
	// Its memtables hold well past 3x its bound: its background loop
	// flushes them.
	waitFor(t, "the replica's fallback flush", func() bool { return rep.Stats().Segments > 0 })
	for i := range 3 {
		push(t, prim, store.Batch{Rows: rows(50, "new")})
		if err := prim.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		push(t, prim, store.Batch{Rows: rows(1, "after")}) // the link ships after sending it
		want := i + 1
		waitFor(t, "the replica to take the segment", func() bool {
			n := 0
			for _, v := range r.SegmentResults() {
				n += v
			}
			return n == want
		})
	}
	t.Logf("segments after the catch-up: %v", r.SegmentResults())
	if r.SegmentResults()[store.AdoptedSegment] == 0 {
		t.Fatalf("the replica adopted none of the primary's segments after the catch-up: %v", r.SegmentResults())
	}
	waitFor(t, "the replica to catch up", func() bool { return rep.LastSeq() == prim.LastSeq() })
	if got, want := scanAll(t, rep), scanAll(t, prim); !reflect.DeepEqual(got, want) {
		t.Fatalf("replica serves %d rows, primary %d", len(got), len(want))
	}
}

// The Segment body example in docs/replica.md, built from its text.
func TestSegmentChunkSpecExample(t *testing.T) {
	doc := "0000000000000005 0000000000000009 0000000000000008 " +
		"978ccb2d67cffafbbd598e4972bb67129add21ef2583da3fcbc89769ffa0cfd2 0000 " +
		"0000000000000000 5041523150415231"
	want, err := hex.DecodeString(strings.ReplaceAll(doc, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	file := []byte("PAR1PAR1")
	hash, _ := hashFile(bytesFile(file), int64(len(file)))
	got := EncodeSegmentChunk(nil, SegmentChunk{First: 5, Last: 9, Size: 8, Hash: hash, Data: file})
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got %x\nwant %x", got, want)
	}
	if c, err := DecodeSegmentChunk(want); err != nil || c.First != 5 || c.Last != 9 || !bytes.Equal(c.Data, file) {
		t.Fatalf("decoding the example: %+v %v", c, err)
	}
}
