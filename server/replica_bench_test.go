package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/vfs"
)

// BenchmarkPushReplicated is ingest on real disk (fdatasync per group
// commit) by concurrent pushers of 100-row batches: a lone primary, and a
// primary whose acks wait for one replica (its own store and fdatasync,
// after the primary's) over the loopback peer port. One op is one push.
// Compare the two at the same pusher count.
func BenchmarkPushReplicated(b *testing.B) {
	for _, pushers := range []int{8, 32, 128} {
		for _, acks := range []int{0, 1} {
			b.Run(fmt.Sprintf("pushers=%d/min_replica_acks=%d", pushers, acks), func(b *testing.B) {
				benchPushReplicated(b, pushers, acks)
			})
		}
	}
}

func benchPushReplicated(b *testing.B, pushers, acks int) {
	dir := b.TempDir()
	pcfg := Config{FS: vfs.OS{}, DataDir: filepath.Join(dir, "p"), Cluster: "east"}
	if acks > 0 {
		pcfg.Peer = PeerConfig{Listen: "127.0.0.1:0", PSKEnv: auth.Secret(testPeerPSK), NodeName: "p", MinReplicaAcks: acks}
	}
	p := benchServer(b, pcfg)
	if acks > 0 {
		benchServer(b, Config{FS: vfs.OS{}, DataDir: filepath.Join(dir, "r"), Cluster: "east",
			Peer: PeerConfig{ReplicaOf: p.PeerAddr().String(), PSKEnv: auth.Secret(testPeerPSK), NodeName: "r"}})
	}
	hs := httptest.NewServer(p.Handler())
	defer hs.Close()
	c := client.New(hs.URL, client.WithRetry(1, 0, 0))
	req := &loggingpb.PushLogsRequest{Key: "/bench/job"}
	for i := range 100 {
		req.Entries = append(req.Entries, &loggingpb.LogEntry{Data: fmt.Sprintf("2026-12-02T01:00:00Z INFO request %d served in 3ms", i)})
	}
	ctx := context.Background()
	// The replica may still be subscribing: the first push waits for it.
	if _, err := c.Push(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(1, pushers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Push(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "rows/s")
}

func benchServer(b *testing.B, cfg Config) *Server {
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
