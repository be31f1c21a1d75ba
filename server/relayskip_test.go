package server

import (
	"bytes"
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/store"
)

// retainedSource is a relay source whose retention deletes rows at the
// front: it holds rows only above a floor, however far its seqs went.
type retainedSource struct {
	mu   sync.Mutex
	rows []store.Row
	last int64
}

func (s *retainedSource) add(n int, data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.last++
		s.rows = append(s.rows, store.Row{Seq: s.last, Key: "/east/job", Source: "stdout", Data: data, EpochMS: 1_700_000_000_000 + s.last})
	}
}

// lose takes n seqs whose rows retention deleted before the relay read them.
func (s *retainedSource) lose(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last += n
}

func (s *retainedSource) Read(_ context.Context, after int64, maxRows, _ int) ([]store.Row, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.rows), func(i int) bool { return s.rows[i].Seq > after })
	return append([]store.Row(nil), s.rows[i:min(len(s.rows), i+maxRows)]...), nil
}

func (s *retainedSource) LastSeq(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// A relay whose source lost more seqs than one batch may skip sends
// batches without rows to move its producer's mark over them. Under its jwt
// identity, in its own producer namespace, the server must take them, and
// the rows after the gap must arrive.
func TestRelayRowlessSkipBatchesPassProducerBinding(t *testing.T) {
	tn := newTenants(t, "", "", nil)
	ctx := context.Background()
	secret := auth.Secret(bytes.Repeat([]byte("e"), 40))
	minter := auth.NewMinter(secret, "east", "", time.Hour, tn.clk)
	sink := relay.NewClientSink(tn.http.URL, tn.http.Client(), func(context.Context) (string, error) { return minter.Token() }, 0)

	src := &retainedSource{}
	src.add(5, "before the gap")
	fsys := vfs.NewMemFS()
	if err := fsys.MkdirAll("/relay"); err != nil {
		t.Fatal(err)
	}
	const producer = "east/0123456789abcdef"
	f, err := relay.New(relay.Config{
		Source: src, Sink: sink, FS: fsys, Clock: clock.NewFake(epoch),
		StatePath: "/relay/watermark.json", DeadLetterPath: "/relay/dead-letter.jsonl",
		Target: tn.http.URL, Producer: producer, Cluster: "east",
		Options: relay.Options{Backfill: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Step(ctx); err != nil {
		t.Fatal(err)
	}
	gap := int64(3*store.MaxProducerSkip + 100)
	src.lose(gap)
	src.add(5, "after the gap")
	if _, err := f.Step(ctx); err != nil {
		t.Fatalf("step over a gap of %d seqs: %v", gap, err)
	}
	last, _ := src.LastSeq(ctx)
	if st := f.Status(); st.State != relay.StateOK || st.Watermark != last || st.DeadLettered != 0 || st.Forwarded != 10 || st.SourceGap != gap {
		t.Fatalf("relay status %+v, want ok at watermark %d with 10 forwarded, none dead-lettered, gap %d", st, last, gap)
	}
	applied, known, err := tn.east.ProducerState(ctx, producer)
	if err != nil || !known || applied != last {
		t.Fatalf("target's mark for the relay: %d %v %v, want %d", applied, known, err, last)
	}
	resp, err := tn.east.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/east/job", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, MaxLines: 100})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Entries); n != 10 || resp.Entries[9].Data != "after the gap" || resp.Entries[9].Cluster != "east" {
		t.Fatalf("target holds %d rows (%v), want the 10 rows of cluster east", n, resp.Entries)
	}
}
