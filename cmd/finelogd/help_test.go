package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/server"
)

func TestHelpOnStdoutExitZero(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"--listen", ":1", "--help"}} {
		var out, errb bytes.Buffer
		if code := run(args, noEnv, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Fatalf("%q: exit %d, stderr %q; want 0 and help on stdout (finelogd --help | less)", args, code, errb.String())
		}
		for _, want := range []string{"usage: finelogd", "-data-dir", "examples:", "FINELOG_AUTH_POLICY", "GOMEMLIMIT", "-version"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%q: help lacks %q", args, want)
			}
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, noEnv, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "finelogd ") || !strings.Contains(out.String(), "revision") {
		t.Fatalf("--version: exit %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"--no-such-flag"}, noEnv, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--help") || strings.Contains(errb.String(), "-data-dir") {
		t.Fatalf("bad flag: exit %d stderr %q; want 2, the error and a pointer to --help, not the flag list", code, errb.String())
	}
}

func TestPrintConfigShowsEffectiveDefaults(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--print-config", "--relay-address", "http://global.example:7070", "--data-dir", "/srv/d"}, noEnv, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var cfg struct {
		MaxInflight int64 `json:"max_inflight_request_bytes"`
		Relay       struct {
			BatchRows int    `json:"batch_rows"`
			InFlight  int    `json:"in_flight"`
			State     string `json:"state"`
		} `json:"relay"`
	}
	if err := json.Unmarshal(out.Bytes(), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxInflight != server.DefaultMaxInflightRequestBytes || cfg.Relay.BatchRows != relay.DefaultBatchRows ||
		cfg.Relay.InFlight != server.DefaultRelayInFlight || cfg.Relay.State != "/srv/d/relay/state.json" {
		t.Fatalf("print-config shows %+v; want the values that run, not 0", cfg)
	}
}
