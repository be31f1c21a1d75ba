package auth

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

const (
	testSecret  = "0123456789abcdef0123456789abcdef-east"
	testSecret2 = "0123456789abcdef0123456789abcdef-west"
	shortSecret = "tooshort-secret-12"
)

func memFSWith(t *testing.T, files map[string]string) vfs.FS {
	t.Helper()
	fsys := vfs.NewMemFS()
	if err := fsys.MkdirAll("/etc/finelog"); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := vfs.WriteFileAtomic(fsys, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	return fsys
}

func TestParsePolicyErrors(t *testing.T) {
	fsys := memFSWith(t, map[string]string{
		"/etc/finelog/short.key": shortSecret + "\n",
		"/etc/finelog/east.key":  testSecret + "\n",
	})
	for _, tc := range []struct {
		name   string
		policy string
		want   []string // substrings the message must contain
	}{
		{"empty document", ``, []string{"empty"}},
		{"empty list", `[]`, []string{"no layers"}},
		{"null", `null`, []string{"JSON list"}},
		{"object not list", `{"type":"cidr"}`, []string{"JSON list"}},
		{"syntax error", `[{"type":"cidr",}]`, []string{"malformed JSON"}},
		{"trailing data", `[{"type":"cidr","cidrs":["10.0.0.0/8"]}] []`, []string{"after the JSON value"}},
		{"layer not object", `[{"type":"cidr","cidrs":["10.0.0.0/8"]}, 7]`, []string{"layer 2", "object"}},
		{"missing type", `[{"cidrs":["10.0.0.0/8"]}]`, []string{"layer 1", `"type"`}},
		{"unknown type", `[{"type":"cidr","cidrs":["10.0.0.0/8"]},{"type":"oauth"}]`, []string{"layer 2", "unknown type", `"oauth"`}},
		{"type not string", `[{"type":3}]`, []string{"layer 1", `"type"`}},
		{"unknown field", `[{"type":"cidr","cidrs":["10.0.0.0/8"],"cidr":["1.2.3.4"]}]`, []string{"layer 1 (cidr)", `unknown field "cidr"`}},
		{"field in wrong case", `[{"type":"cidr","CIDRs":["10.0.0.0/8"]}]`, []string{"layer 1 (cidr)", `unknown field "CIDRs"`}},
		{"field for other type", `[{"type":"cidr","cidrs":["10.0.0.0/8"],"leeway":"1s"}]`, []string{"layer 1 (cidr)", `unknown field "leeway"`}},
		{"duplicate field", `[{"type":"cidr","cidrs":["10.0.0.0/8"],"cidrs":[]}]`, []string{"layer 1 (cidr)", `"cidrs" appears twice`}},
		{"empty cidrs", `[{"type":"cidr","cidrs":[]}]`, []string{"layer 1 (cidr)", `"cidrs"`, "empty"}},
		{"cidrs wrong type", `[{"type":"cidr","cidrs":"10.0.0.0/8"}]`, []string{"layer 1 (cidr)", `"cidrs"`, "want a list"}},
		{"bad cidr", `[{"type":"cidr","cidrs":["10.0.0.0/8","10.0.0.0/33"]}]`, []string{"layer 1 (cidr)", "entry 2", `"10.0.0.0/33"`}},
		{"bad address", `[{"type":"cidr","cidrs":["10.0.0.256"]}]`, []string{"layer 1 (cidr)", "entry 1", "not an IP"}},
		{"hostname", `[{"type":"cidr","cidrs":["localhost"]}]`, []string{"layer 1 (cidr)", "not an IP"}},
		{"zoned", `[{"type":"cidr","cidrs":["fe80::1%eth0"]}]`, []string{"layer 1 (cidr)", "zone"}},
		{"short mapped prefix", `[{"type":"cidr","cidrs":["::ffff:10.0.0.0/95"]}]`, []string{"layer 1 (cidr)", "/96"}},
		{"no keys", `[{"type":"jwt"}]`, []string{"layer 1 (jwt)", `"keys"`}},
		{"empty keys", `[{"type":"jwt","keys":[]}]`, []string{"layer 1 (jwt)", `"keys"`}},
		{"short inline secret", `[{"type":"cidr","cidrs":["::1"]},{"type":"jwt","keys":[{"cluster":"east","secret":"` + shortSecret + `"}]}]`,
			[]string{"layer 2 (jwt)", `key "east"`, `"secret"`, "18 bytes, need at least 32"}},
		{"short secret file", `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"/etc/finelog/short.key"}]}]`,
			[]string{"layer 1 (jwt)", `key "east"`, `"secret_file"`, "/etc/finelog/short.key", "18 bytes, need at least 32"}},
		{"missing secret file", `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"/etc/finelog/nope.key"}]}]`,
			[]string{"layer 1 (jwt)", `key "east"`, "/etc/finelog/nope.key"}},
		{"both secret and file", `[{"type":"jwt","keys":[{"cluster":"east","secret":"` + testSecret + `","secret_file":"/etc/finelog/east.key"}]}]`,
			[]string{"layer 1 (jwt)", `key "east"`, "both set"}},
		{"neither secret nor file", `[{"type":"jwt","keys":[{"cluster":"east"}]}]`, []string{"layer 1 (jwt)", `key "east"`, "required"}},
		{"no cluster", `[{"type":"jwt","keys":[{"secret":"` + testSecret + `"}]}]`, []string{"layer 1 (jwt)", "key 1", `"cluster"`}},
		{"bad cluster label", `[{"type":"jwt","keys":[{"cluster":"east side","secret":"` + testSecret + `"}]}]`, []string{"layer 1 (jwt)", "key 1", `"cluster"`}},
		{"unknown key field", `[{"type":"jwt","keys":[{"cluster":"east","secret":"` + testSecret + `","kid":"x"}]}]`, []string{"layer 1 (jwt)", "key 1", `unknown field "kid"`}},
		{"key field wrong case", `[{"type":"jwt","keys":[{"cluster":"east","Secret":"` + testSecret + `"}]}]`, []string{"layer 1 (jwt)", "key 1", `unknown field "Secret"`}},
		{"secret wrong type", `[{"type":"jwt","keys":[{"cluster":"east","secret":12345678901234567890123456789012345}]}]`, []string{"layer 1 (jwt)", "secret", "want a string"}},
		{"duplicate label in layer", `[{"type":"jwt","keys":[{"cluster":"east","secret":"` + testSecret + `"},{"cluster":"east","secret":"` + testSecret2 + `"}]}]`,
			[]string{"layer 1 (jwt)", `key "east"`, "duplicate key label"}},
		{"duplicate label across layers", `[{"type":"jwt","keys":[{"cluster":"east","secret":"` + testSecret + `"}]},{"type":"jwt","keys":[{"cluster":"east","secret":"` + testSecret2 + `"}]}]`,
			[]string{"layer 2 (jwt)", `key "east"`, "duplicate key label", "layer 1"}},
		{"shared secret", `[{"type":"jwt","keys":[{"cluster":"east","secret":"` + testSecret + `"},{"cluster":"west","secret":"` + testSecret + `"}]}]`,
			[]string{"layer 1 (jwt)", `key "west"`, `same secret as key "east"`}},
		{"bad leeway", `[{"type":"jwt","leeway":"a minute","keys":[{"cluster":"east","secret":"` + testSecret + `"}]}]`, []string{"layer 1 (jwt)", `"leeway"`}},
		{"leeway as number", `[{"type":"jwt","leeway":60,"keys":[{"cluster":"east","secret":"` + testSecret + `"}]}]`, []string{"layer 1 (jwt)", "leeway", "want a string"}},
		{"huge leeway", `[{"type":"jwt","leeway":"1h","keys":[{"cluster":"east","secret":"` + testSecret + `"}]}]`, []string{"layer 1 (jwt)", `"leeway"`, "5m0s"}},
		{"negative leeway", `[{"type":"jwt","leeway":"-1s","keys":[{"cluster":"east","secret":"` + testSecret + `"}]}]`, []string{"layer 1 (jwt)", `"leeway"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tc.policy), fsys, clock.NewFake(time.Unix(0, 0)))
			if err == nil {
				t.Fatalf("accepted: %s", p)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			for _, s := range []string{testSecret, testSecret2, shortSecret} {
				if strings.Contains(msg, s) || strings.Contains(msg, s[:16]) {
					t.Errorf("error %q leaks a secret", msg)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	fsys := memFSWith(t, map[string]string{
		"/etc/finelog/policy.json": `[{"type":"cidr","cidrs":["10.0.0.0/8"]}]`,
		"/etc/finelog/bad.json":    `[{"type":"cidr","cidrs":["10.0.0.0/8"]},{"type":"jwt","keys":[{"cluster":"e","secret":"` + shortSecret + `"}]}]`,
	})
	clk := clock.NewFake(time.Unix(0, 0))

	t.Run("neither set is loopback only", func(t *testing.T) {
		p, err := Load("", "", fsys, clk)
		if err != nil {
			t.Fatal(err)
		}
		for peer, want := range map[string]bool{"127.0.0.1:1": true, "127.200.1.1:1": true, "[::1]:1": true, "[::ffff:127.0.0.1]:1": true, "10.0.0.1:1": false, "[::2]:1": false} {
			if got := p.Admit(peer, nil).Admitted; got != want {
				t.Errorf("loopback-only policy: %s admitted = %v, want %v", peer, got, want)
			}
		}
	})
	t.Run("env", func(t *testing.T) {
		p, err := Load(`[{"type":"cidr","cidrs":["192.0.2.0/24"]}]`, "", fsys, clk)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Admit("192.0.2.9:1", nil).Admitted || p.Admit("127.0.0.1:1", nil).Admitted {
			t.Fatal("env policy not applied")
		}
	})
	t.Run("file", func(t *testing.T) {
		p, err := Load("", "/etc/finelog/policy.json", fsys, clk)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Admit("10.1.1.1:1", nil).Admitted {
			t.Fatal("file policy not applied")
		}
	})
	t.Run("both set", func(t *testing.T) {
		_, err := Load(`[{"type":"cidr","cidrs":["10.0.0.0/8"]}]`, "/etc/finelog/policy.json", fsys, clk)
		if err == nil || !strings.Contains(err.Error(), "FINELOG_AUTH_POLICY") || !strings.Contains(err.Error(), "/etc/finelog/policy.json") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("env error names the source", func(t *testing.T) {
		_, err := Load(`[]`, "", fsys, clk)
		if err == nil || !strings.HasPrefix(err.Error(), "FINELOG_AUTH_POLICY: ") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("file error names the source and layer", func(t *testing.T) {
		_, err := Load("", "/etc/finelog/bad.json", fsys, clk)
		if err == nil || !strings.HasPrefix(err.Error(), "policy file /etc/finelog/bad.json: layer 2 (jwt): ") {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), shortSecret) {
			t.Fatalf("error leaks the secret: %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if _, err := Load("", "/etc/finelog/none.json", fsys, clk); err == nil {
			t.Fatal("missing policy file accepted")
		}
	})
}

func TestPolicyMarshalRedactsAndCanonicalises(t *testing.T) {
	fsys := memFSWith(t, map[string]string{"/etc/finelog/west.key": testSecret2 + "\r\n"})
	in := `[{"type":"cidr","cidrs":["10.1.2.3/8","10.0.0.0/8","192.0.2.1","::ffff:198.51.100.0/120"]},
	        {"type":"jwt","audience":"store","keys":[{"cluster":"east","secret":"` + testSecret + `"},{"cluster":"west","secret_file":"/etc/finelog/west.key"}]}]`
	p, err := ParsePolicy([]byte(in), fsys, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"type":"cidr","cidrs":["10.0.0.0/8","192.0.2.1/32","198.51.100.0/24"]},` +
		`{"type":"jwt","keys":[{"cluster":"east","secret":"[redacted]"},{"cluster":"west","secret_file":"/etc/finelog/west.key"}],"leeway":"1m0s","audience":"store","max_lifetime":"720h0m0s"}]`
	if string(out) != want {
		t.Fatalf("MarshalJSON:\n got %s\nwant %s", out, want)
	}
	// The canonical form parses back (with the secret restored) to the
	// same canonical form.
	again := strings.Replace(string(out), `"[redacted]"`, `"`+testSecret+`"`, 1)
	p2, err := ParsePolicy([]byte(again), fsys, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p2.String() != string(out) {
		t.Fatalf("round trip:\n got %s\nwant %s", p2, out)
	}
	// The secret file's CRLF was trimmed: the key is exactly testSecret2.
	tok := forge(t, map[string]any{"alg": "HS256"}, map[string]any{"exp": time.Now().Add(time.Hour).Unix(), "aud": "store"}, "HS256", []byte(testSecret2))
	if v := p.Admit("203.0.113.1:1", bearer(tok)); !v.Admitted || v.Identity.Cluster != "west" {
		t.Fatalf("secret_file key: %+v", v)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	s := Secret(testSecret)
	var logBuf strings.Builder
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "secret", s)
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "secret", s)
	j, _ := json.Marshal(struct{ S Secret }{s})
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x %X", s, s, s, s, s, s, s),
		string(j), logBuf.String(), fmt.Sprintf("%v", []Secret{s}),
	}
	for _, o := range outs {
		if strings.Contains(o, testSecret) || strings.Contains(o, fmt.Sprintf("%x", testSecret)[:16]) || strings.Contains(o, "0123456789abcdef") {
			t.Errorf("secret leaked: %s", o)
		}
	}
}

func TestReadSecretFile(t *testing.T) {
	fsys := memFSWith(t, map[string]string{
		"/etc/finelog/a": testSecret + "\n",
		"/etc/finelog/b": testSecret + "\n\n",
		"/etc/finelog/c": testSecret,
		"/etc/finelog/d": " " + testSecret[:31] + "\n",
	})
	for name, want := range map[string]string{"a": testSecret, "b": testSecret + "\n", "c": testSecret} {
		s, err := ReadSecretFile(fsys, "/etc/finelog/"+name)
		if err != nil || string(s) != want {
			t.Errorf("%s: got %q, %v", name, string(s), err)
		}
	}
	if _, err := ReadSecretFile(fsys, "/etc/finelog/d"); err != nil {
		t.Errorf("32 bytes with a leading space is a valid key: %v", err)
	}
}
