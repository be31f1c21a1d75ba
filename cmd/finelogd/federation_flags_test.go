package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPeersFileInPrintConfigAndStartErrors(t *testing.T) {
	dir := t.TempDir()
	const secret = "peer-key-0123456789abcdef0123456789abcdef"
	key := filepath.Join(dir, "east.key")
	peers := filepath.Join(dir, "peers.json")
	os.WriteFile(key, []byte(secret+"\n"), 0o600)
	os.WriteFile(peers, []byte(`{"peers":[{"cluster":"east","address":"http://10.0.0.5:7070","key_file":"`+key+`","fallback":"local"}]}`), 0o600)

	var out, errb bytes.Buffer
	if code := run([]string{"--print-config", "--data-dir", dir, "--cluster", "home", "--peers-file", peers, "--federation-max-inflight", "4"}, noEnv, &out, &errb); code != 0 {
		t.Fatalf("--print-config: exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String(), secret) {
		t.Fatalf("--print-config shows a peer key:\n%s", out.String())
	}
	var cfg struct {
		Federation struct {
			PeersFile   string `json:"peers_file"`
			MaxInflight int    `json:"max_inflight"`
			Peers       []struct {
				Cluster, Address, KeyFile, Fallback string
			} `json:"peers"`
		} `json:"federation"`
	}
	if err := json.Unmarshal(out.Bytes(), &cfg); err != nil {
		t.Fatal(err)
	}
	if f := cfg.Federation; f.PeersFile != peers || f.MaxInflight != 4 || len(f.Peers) != 1 || f.Peers[0].Cluster != "east" || !strings.Contains(out.String(), `"key_file": "`+key+`"`) {
		t.Fatalf("federation config: %+v\n%s", cfg.Federation, out.String())
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "east", "--peers-file", peers}, `peers[0] (east): cluster "east" is this store's own --cluster`},
		{[]string{"--peers-file", peers}, "needs --cluster"},
		{[]string{"--cluster", "home", "--peers-file", filepath.Join(dir, "nope.json")}, "peers file " + filepath.Join(dir, "nope.json")},
		{[]string{"--cluster", "home", "--federation-peer-timeout", "1s"}, "--peers-file is not"},
		{[]string{"--cluster", "home", "--peers-file", peers, "--federation-max-inflight", "-1"}, "--federation-max-inflight -1: want 0 (the default, 16) or more"},
	} {
		out.Reset()
		errb.Reset()
		code := run(append([]string{"--data-dir", dir, "--listen", "127.0.0.1:0"}, c.args...), noEnv, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), c.want) || strings.Contains(errb.String(), secret) {
			t.Errorf("%v: exit %d, stderr %q, want 1 and %q", c.args, code, errb.String(), c.want)
		}
	}
}
