package fuzz

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// Keys and clock shared by the auth targets. The committed seed tokens were
// minted with these secrets at fuzzNow (see the corpus files).
const (
	fuzzNow        = 1_800_000_000
	fuzzEastSecret = "fuzz-east-secret-0123456789abcdef0123"
	fuzzWestSecret = "fuzz-west-secret-0123456789abcdef0123"
	fuzzFileSecret = "fuzz-file-secret-from-disk-0123456789abcdef"
)

var fuzzKeys = map[string]string{"east": fuzzEastSecret, "west": fuzzWestSecret}

// FuzzVerifyToken feeds arbitrary Authorization header values to a policy
// with a jwt layer (two keys) in front of a cidr layer that does not admit
// the peer. It never panics, and it never admits a request unless the
// bearer token's MAC verifies under the identified key, checked here
// independently with crypto/hmac, with alg HS256 and an exp the clock has
// not passed.
func FuzzVerifyToken(f *testing.F) {
	now := time.Unix(fuzzNow, 0)
	for _, c := range []string{"east", "west"} {
		tok, err := auth.Mint(auth.Secret(fuzzKeys[c]), c, time.Hour, "", now)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("Bearer " + tok)
	}
	f.Add("")
	f.Add("Bearer ")
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.")

	policy := `[{"type":"jwt","leeway":"60s","keys":[{"cluster":"east","secret":"` + fuzzEastSecret + `"},{"cluster":"west","secret":"` + fuzzWestSecret + `"}]},
	            {"type":"cidr","cidrs":["10.0.0.0/8"]}]`
	clk := clock.NewFake(now)
	p, err := auth.ParsePolicy([]byte(policy), vfs.NewMemFS(), clk)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, authz string) {
		h := http.Header{"Authorization": {authz}}
		v := p.Admit("192.0.2.1:443", h)
		// A second look (served from the verified-token cache when the
		// first admitted) must agree.
		if again := p.Admit("192.0.2.1:443", h); again != v {
			t.Fatalf("verdict changed on repeat: %+v then %+v", v, again)
		}
		if !v.Admitted {
			if v.Code == auth.CodeOK || v.Identity != (auth.Identity{}) {
				t.Fatalf("denied verdict with OK code or identity: %+v", v)
			}
			if len(authz) > 24 && strings.Contains(v.Reason, authz[len(authz)-24:]) {
				t.Fatalf("reason echoes the credential: %q", v.Reason)
			}
			return
		}
		if v.Identity.Kind != "jwt" || v.Layer != 1 {
			t.Fatalf("admitted by %+v; only the jwt layer can admit 192.0.2.1", v)
		}
		secret, ok := fuzzKeys[v.Identity.Cluster]
		if !ok {
			t.Fatalf("identity %q is not a configured key", v.Identity.Cluster)
		}
		// RFC 6750 §2.1: the scheme in any case, one or more spaces, the
		// token, nothing else; only HTTP's optional whitespace (space, tab)
		// around the value is not part of it.
		v6750 := strings.Trim(authz, " \t")
		if len(v6750) < 7 || !strings.EqualFold(v6750[:7], "bearer ") {
			t.Fatalf("admitted without a Bearer scheme followed by a space: %q", authz)
		}
		tok := strings.TrimLeft(v6750[7:], " ")
		if strings.ContainsFunc(tok, func(r rune) bool {
			return !(r == '.' || r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) {
			t.Fatalf("admitted a token with characters outside base64url and '.': %q", tok)
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("admitted a token with %d segments", len(parts))
		}
		sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
		if err != nil {
			t.Fatalf("admitted a token whose signature is not base64url: %v", err)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if !hmac.Equal(mac.Sum(nil), sig) {
			t.Fatalf("admitted a token whose MAC does not verify under key %q", v.Identity.Cluster)
		}
		var hdr map[string]any
		if err := decodeSeg(parts[0], &hdr); err != nil || hdr["alg"] != "HS256" {
			t.Fatalf("admitted a token with header %v (%v)", hdr, err)
		}
		var cl map[string]json.RawMessage
		if err := decodeSeg(parts[1], &cl); err != nil {
			t.Fatalf("admitted a token with undecodable claims: %v", err)
		}
		exp, err := strconv.ParseFloat(string(cl["exp"]), 64)
		if err != nil {
			t.Fatalf("admitted a token whose exp is %s", cl["exp"])
		}
		if float64(fuzzNow) >= exp+60 {
			t.Fatalf("admitted a token that expired at %v (now %d, leeway 60s)", exp, fuzzNow)
		}
	})
}

func decodeSeg(seg string, v any) error {
	b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// FuzzParsePolicy: ParsePolicy never panics, never puts a secret in an
// error or in the policy's description, and an accepted policy round-trips:
// its canonical description, with the redacted secrets put back from the
// input, parses to a policy with the same description and the same
// decisions.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		`[{"type":"cidr","cidrs":["10.0.0.0/8","::1"]}]`,
		`[{"type":"jwt","leeway":"30s","audience":"a","keys":[{"cluster":"east","secret":"` + fuzzEastSecret + `"}]},{"type":"cidr","cidrs":["127.0.0.1"]}]`,
		`[{"type":"jwt","keys":[{"cluster":"disk","secret_file":"/keys/disk.key"}]}]`,
		`[]`,
		`[{"type":"cidr","cidrs":["10.0.0.0/33"]}]`,
	} {
		f.Add([]byte(s))
	}
	fsys := vfs.NewMemFS()
	if err := fsys.MkdirAll("/keys"); err != nil {
		f.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(fsys, "/keys/disk.key", []byte(fuzzFileSecret+"\n")); err != nil {
		f.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(fsys, "/keys/short.key", []byte("short\n")); err != nil {
		f.Fatal(err)
	}
	clk := clock.NewFake(time.Unix(fuzzNow, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := auth.ParsePolicy(data, fsys, clk)
		if err != nil {
			if strings.Contains(err.Error(), fuzzFileSecret[:20]) {
				t.Fatalf("error leaks the secret file's contents: %v", err)
			}
			return
		}
		desc, err := p.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(desc, []byte(fuzzFileSecret[:20])) {
			t.Fatalf("description leaks the secret file's contents: %s", desc)
		}
		// Every inline secret is redacted in the description.
		var out []map[string]any
		if err := json.Unmarshal(desc, &out); err != nil {
			t.Fatalf("description is not JSON: %v\n%s", err, desc)
		}
		var in []map[string]any
		if err := json.Unmarshal(data, &in); err != nil {
			t.Fatalf("accepted input is not a JSON list of objects: %v", err)
		}
		if len(in) != len(out) {
			t.Fatalf("%d layers in, %d described", len(in), len(out))
		}
		for i := range out {
			inKeys, _ := in[i]["keys"].([]any)
			outKeys, _ := out[i]["keys"].([]any)
			if len(inKeys) != len(outKeys) {
				t.Fatalf("layer %d: %d keys in, %d described", i+1, len(inKeys), len(outKeys))
			}
			for j := range outKeys {
				ok, ik := outKeys[j].(map[string]any), inKeys[j].(map[string]any)
				if s, has := ik["secret"]; has {
					if ok["secret"] != "[redacted]" {
						t.Fatalf("layer %d key %d: inline secret described as %v", i+1, j+1, ok["secret"])
					}
					ok["secret"] = s // restore for the round trip
				}
			}
		}
		restored, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := auth.ParsePolicy(restored, fsys, clk)
		if err != nil {
			t.Fatalf("canonical form rejected: %v\ninput %s\ncanonical %s", err, data, desc)
		}
		desc2, _ := p2.MarshalJSON()
		if !bytes.Equal(desc, desc2) {
			t.Fatalf("round trip changed the policy:\n%s\n%s", desc, desc2)
		}
		// Same decisions on a few probes: peers across families, and a
		// token under each inline key.
		headers := []http.Header{nil}
		for i := range in {
			keys, _ := in[i]["keys"].([]any)
			for _, k := range keys {
				km := k.(map[string]any)
				s, _ := km["secret"].(string)
				c, _ := km["cluster"].(string)
				if tok, err := auth.Mint(auth.Secret(s), c, time.Hour, "", clk.Now()); err == nil {
					headers = append(headers, http.Header{"Authorization": {"Bearer " + tok}})
				}
			}
		}
		for _, peer := range []string{"127.0.0.1:1", "[::1]:1", "10.1.2.3:1", "[::ffff:10.1.2.3]:1", "192.0.2.1:1", "[2001:db8::1]:1"} {
			for _, h := range headers {
				if a, b := p.Admit(peer, h), p2.Admit(peer, h); a != b {
					t.Fatalf("peer %s: original %+v, round-tripped %+v", peer, a, b)
				}
			}
		}
	})
}
