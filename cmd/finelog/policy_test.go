package main

import (
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
)

func mintForCLI(t *testing.T, at time.Time, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(auth.Secret(cliTestSecret), "east", ttl, "", at)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestPolicyCheckExplains(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	keyFile := writeAuthFile(t, "east.key", cliTestSecret+"\n")
	policy := `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"` + keyFile + `"}]},{"type":"cidr","cidrs":["10.0.0.0/8"]}]`
	env := map[string]string{"FINELOG_AUTH_POLICY": policy}
	good := writeAuthFile(t, "good.tok", mintForCLI(t, at, time.Hour)+"\n")
	expired := writeAuthFile(t, "expired.tok", mintForCLI(t, at.Add(-3*time.Hour), time.Hour))
	atFlag := "--at=1800000000"

	t.Run("validate only", func(t *testing.T) {
		code, out, errOut := authCLI(t, env, "", "policy", "check")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"FINELOG_AUTH_POLICY, 2 layer(s), valid", "layer 1: jwt", "east (secret_file " + keyFile + ")", "layer 2: cidr 10.0.0.0/8"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, cliTestSecret) {
			t.Fatal("output leaks the secret")
		}
	})
	t.Run("valid token admitted by jwt layer", func(t *testing.T) {
		code, out, errOut := authCLI(t, env, "", "policy", "check", "--peer", "192.0.2.1:443", "--token-file", good, atFlag)
		if code != 0 {
			t.Fatalf("exit %d: %s\n%s", code, errOut, out)
		}
		if !strings.Contains(out, "verdict: admitted by layer 1, identity jwt cluster east") {
			t.Fatalf("output:\n%s", out)
		}
		if strings.Contains(out, strings.TrimSpace(mintForCLI(t, at, time.Hour))) {
			t.Fatal("output echoes the token")
		}
	})
	t.Run("no token falls through to cidr", func(t *testing.T) {
		code, out, _ := authCLI(t, env, "", "policy", "check", "--peer", "10.1.1.1:443")
		if code != 0 || !strings.Contains(out, "layer 1 (jwt): next: no bearer token") || !strings.Contains(out, "verdict: admitted by layer 2, identity cidr 10.0.0.0/8") {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("expired token rejected at once", func(t *testing.T) {
		code, out, errOut := authCLI(t, env, "", "policy", "check", "--peer", "10.1.1.1:443", "--token-file", expired, atFlag)
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		if !strings.Contains(out, "rejected by layer 1: token is expired (unauthenticated, HTTP 401)") || strings.Contains(out, "layer 2 (cidr)") {
			t.Fatalf("output:\n%s", out)
		}
		if !strings.Contains(errOut, "would be denied") {
			t.Fatalf("stderr: %q", errOut)
		}
	})
	t.Run("token from stdin, later time", func(t *testing.T) {
		tok := mintForCLI(t, at, time.Hour)
		code, out, _ := authCLI(t, env, tok+"\n", "policy", "check", "--peer", "192.0.2.1:443", "--token-file", "-", "--at", "2027-06-01T00:00:00Z")
		if code != 1 || !strings.Contains(out, "token is expired") {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("default deny", func(t *testing.T) {
		code, out, _ := authCLI(t, env, "", "policy", "check", "--peer", "192.0.2.1:443")
		if code != 1 || !strings.Contains(out, "default deny") || !strings.Contains(out, "HTTP 401") {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})
}

func TestPolicyCheckSources(t *testing.T) {
	file := writeAuthFile(t, "p.json", `[{"type":"cidr","cidrs":["192.0.2.0/24"]}]`)
	t.Run("no policy is loopback only", func(t *testing.T) {
		code, out, _ := authCLI(t, nil, "", "policy", "check", "--peer", "[::1]:9")
		if code != 0 || !strings.Contains(out, "loopback only") || !strings.Contains(out, "identity cidr ::1/128") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if code, _, _ := authCLI(t, nil, "", "policy", "check", "--peer", "10.0.0.1:9"); code != 1 {
			t.Fatalf("non-loopback peer: exit %d", code)
		}
	})
	t.Run("file beats env, with a note", func(t *testing.T) {
		env := map[string]string{"FINELOG_AUTH_POLICY": `[{"type":"cidr","cidrs":["10.0.0.0/8"]}]`}
		code, out, _ := authCLI(t, env, "", "policy", "check", "--policy-file", file, "--peer", "192.0.2.7:1")
		if code != 0 || !strings.Contains(out, "note: FINELOG_AUTH_POLICY is also set") || !strings.Contains(out, "policy file "+file) {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("invalid policy names source, layer and field", func(t *testing.T) {
		bad := writeAuthFile(t, "bad.json", `[{"type":"cidr","cidrs":["10.0.0.0/8"]},{"type":"jwt","keys":[{"cluster":"east","secret":"short-secret-value"}]}]`)
		code, out, errOut := authCLI(t, nil, "", "policy", "check", "--policy-file", bad)
		if code != 1 || out != "" {
			t.Fatalf("exit %d, stdout %q", code, out)
		}
		want := "invalid policy: policy file " + bad + `: layer 2 (jwt): key "east": field "secret": secret is 18 bytes, need at least 32`
		if !strings.Contains(errOut, want) {
			t.Fatalf("stderr %q\nwant %q", errOut, want)
		}
		if strings.Contains(errOut, "short-secret-value") {
			t.Fatal("stderr leaks the secret")
		}
	})
	t.Run("empty env list", func(t *testing.T) {
		code, _, errOut := authCLI(t, map[string]string{"FINELOG_AUTH_POLICY": "[]"}, "", "policy", "check")
		if code != 1 || !strings.Contains(errOut, "FINELOG_AUTH_POLICY: policy has no layers") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{{"policy"}, {"policy", "lint"}, {"policy", "check", "--token-file", file}, {"policy", "check", "--at", "yesterday"}} {
			if code, _, _ := authCLI(t, nil, "", args...); code == 0 {
				t.Errorf("%v: exit 0", args)
			}
		}
	})
}
