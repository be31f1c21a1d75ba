package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/peer"
	"github.com/finelog/finelog/server"
)

func peerServer(t *testing.T, peer server.PeerConfig) (*server.Server, string) {
	t.Helper()
	peer.PSKEnv = auth.Secret("cli-test-peer-psk-0123456789abcdef")
	srv, err := server.New(server.Config{FS: vfs.NewMemFS(), DataDir: "/data", Cluster: "east", Peer: peer})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return srv, hs.URL
}

func replicaCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	c := commands["replica"]
	err := c.run(context.Background(), env, args)
	return out.String() + errb.String(), err
}

func TestReplicaCommand(t *testing.T) {
	p, purl := peerServer(t, server.PeerConfig{Listen: "127.0.0.1:0", NodeName: "p"})
	_, rurl := peerServer(t, server.PeerConfig{ReplicaOf: p.PeerAddr().String(), NodeName: "r"})
	var out string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		out, err = replicaCLI(t, "status", "--addr", purl)
		if err == nil && strings.Contains(out, "replicas: 1") {
			break
		}
	}
	if err != nil || !strings.Contains(out, "role: primary") || !strings.Contains(out, "replicas: 1") {
		t.Fatalf("status on the primary: %v\n%s", err, out)
	}
	primaryOut := out
	out, err = replicaCLI(t, "status", "--addr", rurl)
	if err != nil || !strings.Contains(out, "role: replica") || !strings.Contains(out, "primary: "+p.PeerAddr().String()+"  link: up") {
		t.Fatalf("status on the replica: %v\n%s", err, out)
	}
	// The primary lists its replica by node id; the replica's own status
	// names itself with that id, so an operator can tell which is which.
	rid := peer.NameID("r")
	if want := "node: r (id " + hex.EncodeToString(rid[:]) + ")"; !strings.Contains(out, want) ||
		!strings.Contains(primaryOut, "  "+hex.EncodeToString(rid[:])+"  ") {
		t.Fatalf("replica status lacks %q, or the primary does not list that id:\n%s\n%s", want, out, primaryOut)
	}
	out, err = replicaCLI(t, "promote", "--addr", rurl)
	if err == nil || !strings.Contains(err.Error(), "still reachable") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("promote while the primary is up: %v\n%s", err, out)
	}
	out, err = replicaCLI(t, "promote", "--force", "--addr", rurl)
	if err != nil || !strings.Contains(out, "promoted at seq 0") || !strings.Contains(out, "role: primary") {
		t.Fatalf("forced promote: %v\n%s", err, out)
	}
	if _, err := replicaCLI(t, "bogus"); err == nil {
		t.Fatal("an unknown subcommand was accepted")
	}
}
