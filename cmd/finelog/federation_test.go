package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/server"
)

// fedCLIWorld is home with peers east (running) and west (down); every
// store admits loopback, as with no policy.
func fedCLIWorld(t *testing.T) (home, east string) {
	t.Helper()
	// East admits loopback callers without a token, and home's proxied
	// reads by its federation key (a bearer is always verified by a jwt layer).
	east = testServer(t, server.Config{Cluster: "east", AuthPolicy: `[{"type":"jwt","keys":[{"cluster":"home","secret":"home-federation-key-0123456789abcdef0123"}]},{"type":"cidr","cidrs":["127.0.0.0/8"]}]`})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	west := "http://" + ln.Addr().String()
	ln.Close()
	fs := vfs.NewMemFS()
	fs.MkdirAll("/etc")
	vfs.WriteFileAtomic(fs, "/etc/fed.key", []byte("home-federation-key-0123456789abcdef0123"))
	vfs.WriteFileAtomic(fs, "/etc/peers.json", []byte(fmt.Sprintf(`{"peers":[
		{"cluster":"east","address":%q,"key_file":"/etc/fed.key"},
		{"cluster":"west","address":%q,"key_file":"/etc/fed.key"}]}`, east, west)))
	home = testServer(t, server.Config{FS: fs, Cluster: "home", Federation: server.FederationConfig{PeersFile: "/etc/peers.json"}})
	return home, east
}

func TestFetchAcrossClusters(t *testing.T) {
	home, east := fedCLIWorld(t)
	ctx := context.Background()
	cli(t, ctx, east, "e1\ne2\n", "push", "/job/a")
	cli(t, ctx, home, "h1\n", "push", "/job/b")

	code, out, errs := cli(t, ctx, home, "", "fetch", "--cluster", "east", "--prefix", "/job/")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "e2") || errs != "" {
		t.Fatalf("fetch --cluster east: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = cli(t, ctx, home, "", "fetch", "--cluster", "*", "--prefix", "/job/")
	if code != 0 {
		t.Fatalf("fetch --cluster '*': exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("fan-out printed %d lines, want 3:\n%s", len(lines), out)
	}
	for _, want := range []string{" home /job/b h1", " east /job/a e1", " east /job/a e2"} {
		if !strings.Contains(out, want) {
			t.Errorf("fan-out output lacks %q (cluster column):\n%s", want, out)
		}
	}
	if strings.Count(errs, "cluster west: not included: unavailable: peer west (") != 1 {
		t.Errorf("want one stderr line for the down cluster, got:\n%s", errs)
	}
	code, _, errs = cli(t, ctx, home, "", "fetch", "--cluster", "west", "/job/a")
	if code != 1 || !strings.Contains(errs, "peer west (") {
		t.Errorf("fetch of a down cluster: exit %d: %s", code, errs)
	}
}

func TestTailFollowAcrossClusters(t *testing.T) {
	home, east := fedCLIWorld(t)
	cli(t, context.Background(), home, "old\n", "push", "/f")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &out, getenv: func(k string) string {
		if k == "FINELOG_ADDR" {
			return home
		}
		return ""
	}}
	done := make(chan int, 1)
	go func() { done <- run(ctx, env, []string{"tail", "-f", "--cluster", "*", "/f"}) }()
	waitOutput(t, &out, " home old")
	waitOutput(t, &out, "cluster west: not included")
	cli(t, context.Background(), east, "new from east\n", "push", "/f")
	waitOutput(t, &out, " east new from east")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail -f exit %d: %s", code, out.String())
	}
	if strings.Count(out.String(), "cluster west") != 1 {
		t.Errorf("the down cluster is reported once, not per poll:\n%s", out.String())
	}
}

// TestFetchStaleCopyEnds: a peer that is down but whose rows this store
// holds ("fallback": "local") is read from the copy, flagged on stderr,
// and paging through the copy ends instead of repeating it.
func TestFetchStaleCopyEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	east := "http://" + ln.Addr().String()
	ln.Close()
	fs := vfs.NewMemFS()
	fs.MkdirAll("/etc")
	vfs.WriteFileAtomic(fs, "/etc/fed.key", []byte("home-federation-key-0123456789abcdef0123"))
	vfs.WriteFileAtomic(fs, "/etc/peers.json", []byte(fmt.Sprintf(`{"peers":[{"cluster":"east","address":%q,"key_file":"/etc/fed.key","fallback":"local"}]}`, east)))
	home := testServer(t, server.Config{FS: fs, Cluster: "home", Federation: server.FederationConfig{PeersFile: "/etc/peers.json"}})
	ctx := context.Background()
	cli(t, ctx, home, "c1\nc2\nc3\n", "push", "--cluster", "east", "--batch-lines", "1", "/f")
	for _, cluster := range []string{"east", "*"} {
		code, out, errs := cli(t, ctx, home, "", "fetch", "--cluster", cluster, "/f")
		if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, "c3") {
			t.Fatalf("fetch --cluster %s from the copy: exit %d\n%s\n%s", cluster, code, out, errs)
		}
		if strings.Count(errs, "cluster east: stale rows from a relayed copy (unavailable: peer east (") != 1 {
			t.Errorf("fetch --cluster %s: want one stale line, got:\n%s", cluster, errs)
		}
	}
}
