package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/vfs"
)

// benchNode runs a store with a jwt policy (ops, its own writer, and
// home's federation key) on a loopback port, with peersJSON if set.
func benchNode(b *testing.B, name, peersJSON string) (url string, ops, writer *client.Client) {
	b.Helper()
	fs := vfs.NewMemFS()
	for path, data := range map[string]string{"/etc/home-fed.key": homeFedKey, "/etc/peers.json": peersJSON} {
		fs.MkdirAll("/etc")
		if err := vfs.WriteFileAtomic(fs, path, []byte(data)); err != nil {
			b.Fatal(err)
		}
	}
	cfg := Config{FS: fs, DataDir: "/data", Cluster: name,
		AuthPolicy: jwtPolicy(map[string]string{"ops": opsKey, "home": homeFedKey, name: writerKey(name)})}
	if name == "home" {
		cfg.AuthPolicy = jwtPolicy(map[string]string{"ops": opsKey, name: writerKey(name)})
	}
	if peersJSON != "" {
		cfg.Federation.PeersFile = "/etc/peers.json"
	}
	srv, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.Protocols = new(http.Protocols)
	hs.Config.Protocols.SetHTTP1(true)
	hs.Config.Protocols.SetUnencryptedHTTP2(true)
	hs.Start()
	b.Cleanup(func() { hs.Close(); srv.Close() })
	tok := func(key, label string) client.Option {
		return client.WithToken(func(context.Context) (string, error) {
			return auth.Mint(auth.Secret(key), label, time.Hour, "", time.Now())
		})
	}
	return hs.URL, client.New(hs.URL, client.WithRetry(1, 0, 0), tok(opsKey, "ops")),
		client.New(hs.URL, client.WithRetry(1, 0, 0), tok(writerKey(name), name))
}

func benchSeed(b *testing.B, c *client.Client, cluster string, rows int) {
	b.Helper()
	entries := make([]*loggingpb.LogEntry, rows)
	for i := range entries {
		entries[i] = &loggingpb.LogEntry{Data: fmt.Sprintf("%s line %d with some ordinary log text in it", cluster, i),
			Timestamp: &loggingpb.Timestamp{EpochMs: 1_000_000 + int64(i)}}
	}
	if _, err := c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/bench/job", Cluster: cluster, Entries: entries}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFederationTail1000 compares a 1000-row tail of east read at
// east directly with the same read proxied through home: the difference
// (hop-µs) is the added latency of one hop (token mint + verify, one more
// decode and encode, one more loopback round trip). ns/op is the pair.
func BenchmarkFederationTail1000(b *testing.B) {
	eastURL, eastOps, eastW := benchNode(b, "east", "")
	benchSeed(b, eastW, "east", 5000)
	for _, compression := range []string{"zstd", "none"} {
		b.Run("compression="+compression, func(b *testing.B) {
			_, homeOps, _ := benchNode(b, "home", peersJSON(peerEntry("east", eastURL, "/etc/home-fed.key", `,"compression":"`+compression+`"`)))
			benchHop(b, eastOps, homeOps)
		})
	}
}

// benchHop alternates the same tail read at the owner (local) and through
// the proxy.
func benchHop(b *testing.B, eastOps, homeOps *client.Client) {
	req := &loggingpb.FetchLogsRequest{Cluster: "east", Tail: true, MaxLines: 1000}
	fetch := func(c *client.Client) time.Duration {
		start := time.Now()
		resp, err := c.Fetch(context.Background(), req)
		if err != nil || len(resp.Entries) != 1000 {
			b.Fatalf("%v %d", err, len(resp.GetEntries()))
		}
		return time.Since(start)
	}
	// Local and proxied reads alternate, so load from elsewhere on the
	// machine weighs on both alike; the medians are reported, and their
	// difference is the hop.
	var local, proxied []time.Duration
	for b.Loop() {
		local = append(local, fetch(eastOps))
		proxied = append(proxied, fetch(homeOps))
	}
	l, p := median(local), median(proxied)
	b.ReportMetric(float64(l.Microseconds()), "local-µs")
	b.ReportMetric(float64(p.Microseconds()), "proxied-µs")
	b.ReportMetric(float64((p - l).Microseconds()), "hop-µs")
	// CPU of the whole process (caller, home and east are all in it) per
	// read, which waiting for a CPU on a loaded machine does not inflate.
	b.StopTimer()
	const n = 200
	cpuPer := func(c *client.Client) time.Duration {
		before := processCPU()
		for range n {
			fetch(c)
		}
		return (processCPU() - before) / n
	}
	lc, pc := cpuPer(eastOps), cpuPer(homeOps)
	b.ReportMetric(float64(lc.Microseconds()), "local-cpu-µs")
	b.ReportMetric(float64((pc - lc).Microseconds()), "hop-cpu-µs")
}

// processCPU is the user+system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkFederationFanOutTail1000: home, east and west each hold 5000
// rows; a fan-out tail of 1000 asks all three and merges.
func BenchmarkFederationFanOutTail1000(b *testing.B) {
	eastURL, _, eastW := benchNode(b, "east", "")
	westURL, _, westW := benchNode(b, "west", "")
	_, homeOps, homeW := benchNode(b, "home", peersJSON(peerEntry("east", eastURL, "/etc/home-fed.key", ""), peerEntry("west", westURL, "/etc/home-fed.key", "")))
	benchSeed(b, eastW, "east", 5000)
	benchSeed(b, westW, "west", 5000)
	benchSeed(b, homeW, "home", 5000)
	req := &loggingpb.FetchLogsRequest{Cluster: "*", Tail: true, MaxLines: 1000}
	for b.Loop() {
		resp, err := homeOps.Fetch(context.Background(), req)
		if err != nil || len(resp.Entries) != 1000 || len(resp.Clusters) != 3 {
			b.Fatalf("%v %d", err, len(resp.GetEntries()))
		}
	}
}
