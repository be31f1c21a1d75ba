package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/finelog/finelog/server"
)

func TestPushFetchAttributes(t *testing.T) {
	addr := testServer(t, server.Config{})
	ctx := context.Background()
	if code, _, errs := cli(t, ctx, addr, "deployed\n", "push", "--attr", "env=prod", "--attr", "note=two words", "/deploy/api"); code != 0 {
		t.Fatalf("push: exit %d: %s", code, errs)
	}
	if code, _, errs := cli(t, ctx, addr, "tested\n", "push", "--attr", "env=dev", "/deploy/api"); code != 0 {
		t.Fatalf("push: exit %d: %s", code, errs)
	}
	_, out, _ := cli(t, ctx, addr, "", "fetch", "/deploy/api")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], ` env=prod note="two words" deployed`) || !strings.HasSuffix(lines[1], " env=dev tested") {
		t.Fatalf("fetch printed:\n%s", out)
	}
	_, out, _ = cli(t, ctx, addr, "", "fetch", "--attr", "env=prod", "--json", "/deploy/api")
	var m struct {
		Data       string            `json:"data"`
		Attributes map[string]string `json:"attributes"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &m); err != nil || m.Data != "deployed" || m.Attributes["note"] != "two words" || len(m.Attributes) != 2 {
		t.Fatalf("fetch --attr env=prod --json printed %q (%v)", out, err)
	}
	_, out, _ = cli(t, ctx, addr, "", "fetch", "--attr", "env=prod", "--attr", "note=x", "/deploy/api")
	if strings.TrimSpace(out) != "" {
		t.Fatalf("every --attr must match; got:\n%s", out)
	}
	for _, tc := range []struct{ arg, want string }{
		{"env", `"env" is not NAME=VALUE`},
		{"=v", `"=v" is not NAME=VALUE`},
		{"v=" + strings.Repeat("x", 4097), "limit is 4096"},
	} {
		code, _, errs := cli(t, ctx, addr, "x\n", "push", "--attr", tc.arg, "/deploy/api")
		if code == 0 || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "-attr") {
			t.Errorf("push --attr %.20s: exit %d, stderr %q, want it to name --attr and %q", tc.arg, code, errs, tc.want)
		}
	}
}
