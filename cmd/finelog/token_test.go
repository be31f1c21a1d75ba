package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/clock"
)

const cliTestSecret = "cli-test-secret-0123456789abcdef-east"

// authCLI runs the CLI with captured output and the given environment.
func authCLI(t *testing.T, envVars map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errb,
		getenv: func(k string) string { return envVars[k] },
	}
	code = run(context.Background(), env, args)
	return code, out.String(), errb.String()
}

func writeAuthFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func withTokenClock(t *testing.T, at time.Time) {
	t.Helper()
	old := tokenClock
	tokenClock = clock.NewFake(at)
	t.Cleanup(func() { tokenClock = old })
}

func TestTokenMint(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	withTokenClock(t, at)
	keyFile := writeAuthFile(t, "east.key", cliTestSecret+"\n")
	code, out, errOut := authCLI(t, nil, "", "token", "mint", "--cluster", "east", "--secret-file", keyFile, "--ttl", "2h", "--audience", "store.west")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if errOut != "" {
		t.Fatalf("stderr not empty: %q", errOut)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("stdout is not exactly one line: %q", out)
	}
	tok := strings.TrimSpace(out)

	// The printed token is accepted by a policy holding the same key, and
	// it carries the requested lifetime and audience.
	p, err := auth.ParsePolicy([]byte(`[{"type":"jwt","audience":"store.west","keys":[{"cluster":"east","secret_file":"`+keyFile+`"}]}]`), nil, clock.NewFake(at.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Authorization": {"Bearer " + tok}}
	if v := p.Admit("192.0.2.1:1", h); !v.Admitted || v.Identity.Cluster != "east" {
		t.Fatalf("minted token not admitted: %+v", v)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		Iat, Exp int64
		Aud      string
	}
	if err := json.Unmarshal(payload, &cl); err != nil {
		t.Fatal(err)
	}
	if cl.Iat != at.Unix() || cl.Exp-cl.Iat != 7200 || cl.Aud != "store.west" {
		t.Fatalf("claims = %+v", cl)
	}
	late, _ := auth.ParsePolicy([]byte(`[{"type":"jwt","audience":"store.west","keys":[{"cluster":"east","secret_file":"`+keyFile+`"}]}]`), nil, clock.NewFake(at.Add(2*time.Hour+time.Minute)))
	if v := late.Admit("192.0.2.1:1", h); v.Admitted {
		t.Fatal("token admitted after its ttl and leeway")
	}
}

func TestTokenMintErrors(t *testing.T) {
	withTokenClock(t, time.Unix(1_800_000_000, 0))
	short := writeAuthFile(t, "short.key", "only-sixteen-byt\n")
	good := writeAuthFile(t, "good.key", cliTestSecret)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"token"}, "mint"},
		{"wrong subcommand", []string{"token", "verify"}, "mint"},
		{"no cluster", []string{"token", "mint", "--secret-file", good}, "--cluster is required"},
		{"no secret file", []string{"token", "mint", "--cluster", "east"}, "--secret-file is required"},
		{"missing secret file", []string{"token", "mint", "--cluster", "east", "--secret-file", good + ".nope"}, "good.key.nope"},
		{"short secret", []string{"token", "mint", "--cluster", "east", "--secret-file", short}, "16 bytes, need at least 32"},
		{"zero ttl", []string{"token", "mint", "--cluster", "east", "--secret-file", good, "--ttl", "0s"}, "ttl"},
		{"bad cluster", []string{"token", "mint", "--cluster", "east/1", "--secret-file", good}, "cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := authCLI(t, nil, "", tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, stdout %q", out)
			}
			if out != "" {
				t.Fatalf("stdout on error: %q", out)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q does not mention %q", errOut, tc.want)
			}
			if strings.Contains(errOut, "only-sixteen") || strings.Contains(errOut, cliTestSecret) {
				t.Fatalf("stderr leaks the secret: %q", errOut)
			}
		})
	}
}
