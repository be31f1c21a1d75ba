package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPeerFlagsPrintConfigShowsNoKey(t *testing.T) {
	dir := t.TempDir()
	const fileKey, envKey = "file-key-0123456789abcdef0123456789abcdef", "env-key-0123456789abcdef0123456789abcdef"
	keyFile := filepath.Join(dir, "psk")
	os.WriteFile(keyFile, []byte(fileKey+"\n"), 0o600)
	env := func(k string) string {
		if k == "FINELOG_PEER_PSK" {
			return envKey
		}
		return ""
	}
	var out, errb bytes.Buffer
	code := run([]string{"--data-dir", dir, "--print-config", "--peer-listen", "127.0.0.1:0", "--peer-psk-file", keyFile, "--node-name", "n1"}, env, &out, &errb)
	if code != 0 {
		t.Fatalf("--print-config exit %d: %s", code, errb.String())
	}
	for _, secret := range []string{fileKey, envKey} {
		if strings.Contains(out.String()+errb.String(), secret) {
			t.Fatalf("--print-config shows a peer key:\n%s", out.String())
		}
	}
	for _, want := range []string{`"psk_file": "` + keyFile + `"`, `"psk_from_env": true`, `"node_name": "n1"`, `"max_frame": 16777216`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--print-config lacks %s:\n%s", want, out.String())
		}
	}
}

func TestPeerFlagsBadKeyStopsStart(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort-but-secret\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--peer-listen", "127.0.0.1:0"}, "no peer PSK"},
		{[]string{"--peer-listen", "127.0.0.1:0", "--peer-psk-file", short}, "is 19 bytes, need at least 32"},
		{[]string{"--replica-of", "127.0.0.1:1", "--peer-psk-file", filepath.Join(dir, "missing")}, "--peer-psk-file"},
		{[]string{"--peer-listen", "127.0.0.1:0", "--peer-max-frame", "1MiB", "--peer-psk-file", short}, "--peer-max-frame"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}, tc.args...), noEnv, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want a start error containing %q", tc.args, code, errb.String(), tc.want)
		}
		if strings.Contains(errb.String(), "tooshort-but-secret") {
			t.Errorf("%v: the error shows the key: %s", tc.args, errb.String())
		}
	}
}
