package auth

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// TestRFC7515AppendixA1 runs the JWS example of RFC 7515 A.1 (copied from
// the shared test vectors) through the verifier on an injected clock: the
// signature is valid, so the token is admitted before exp and rejected once
// exp + 60 s leeway has passed.
func TestRFC7515AppendixA1(t *testing.T) {
	data, err := os.ReadFile("testdata/jwt-rfc7515-a1.json")
	if err != nil {
		t.Fatal(err)
	}
	var vec struct {
		Token   string `json:"token"`
		KeyJWKK string `json:"key_jwk_k"`
		Expect  struct {
			SignatureValid bool  `json:"signature_valid"`
			ExpUnix        int64 `json:"exp_unix"`
			AdmittedEarly  bool  `json:"admitted_at_unix_1300819300"`
			AdmittedLate   bool  `json:"admitted_at_unix_1300819500_with_60s_leeway"`
		} `json:"expect"`
	}
	if err := json.Unmarshal(data, &vec); err != nil {
		t.Fatal(err)
	}
	key, err := base64.RawURLEncoding.DecodeString(vec.KeyJWKK)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 64 {
		t.Fatalf("A.1 key is %d bytes, want 64", len(key))
	}
	if got := hmacValid(vec.Token, key); got != vec.Expect.SignatureValid {
		t.Fatalf("independent HMAC check = %v, vector says %v", got, vec.Expect.SignatureValid)
	}
	// The key is binary, so it comes from a file. ReadSecretFile drops one
	// trailing newline, so writing key+"\n" stores exactly the key.
	fsys := vfs.NewMemFS()
	if err := fsys.MkdirAll("/keys"); err != nil {
		t.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(fsys, "/keys/a1", append(append([]byte{}, key...), '\n')); err != nil {
		t.Fatal(err)
	}
	policy := []byte(`[{"type":"jwt","leeway":"60s","keys":[{"cluster":"joe","secret_file":"/keys/a1"}]}]`)
	for _, tc := range []struct {
		at   int64
		want bool
	}{
		{1300819300, vec.Expect.AdmittedEarly},
		{1300819500, vec.Expect.AdmittedLate},
		{vec.Expect.ExpUnix + 59, true},  // inside the leeway
		{vec.Expect.ExpUnix + 60, false}, // leeway is exclusive
	} {
		t.Run(strconv.FormatInt(tc.at, 10), func(t *testing.T) {
			clk := clock.NewFake(time.Unix(tc.at, 0))
			p, err := ParsePolicy(policy, fsys, clk)
			if err != nil {
				t.Fatal(err)
			}
			v := p.Admit("192.0.2.1:443", bearer(vec.Token))
			if v.Admitted != tc.want {
				t.Fatalf("at %d: admitted = %v (%s), want %v", tc.at, v.Admitted, v.Reason, tc.want)
			}
			if tc.want && v.Identity.Cluster != "joe" {
				t.Fatalf("identity = %+v, want cluster joe", v.Identity)
			}
			if !tc.want && v.Cause != causeExpired.label {
				t.Fatalf("cause = %s, want %s", v.Cause, causeExpired.label)
			}
		})
	}
	// The same token with one signature byte flipped must fail even while
	// it is within its validity period.
	bad := []byte(vec.Token)
	if bad[len(bad)-2] == 'A' {
		bad[len(bad)-2] = 'B'
	} else {
		bad[len(bad)-2] = 'A'
	}
	p, err := ParsePolicy(policy, fsys, clock.NewFake(time.Unix(1300819300, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Admit("192.0.2.1:443", bearer(string(bad))); v.Admitted {
		t.Fatal("token with a flipped signature byte was admitted")
	}
}

// TestPyJWTToken checks interoperability with PyJWT: jwt.encode(payload,
// secret, algorithm="HS256") serialises the header with sorted keys and
// compact separators and MACs with the raw secret bytes (no decoding, no
// hashing of the key). The token is written out literally here.
func TestPyJWTToken(t *testing.T) {
	secret := "pyjwt-shared-secret-for-cluster-east!"
	header := `{"alg":"HS256","typ":"JWT"}`
	payload := `{"sub":"east","iat":1700000000,"exp":1700003600,"aud":"finelog"}`
	tok := forgeRaw([]byte(header), []byte(payload), "HS256", []byte(secret))

	pol, err := json.Marshal([]map[string]any{{
		"type": "jwt", "audience": "finelog",
		"keys": []map[string]any{{"cluster": "east", "secret": secret}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(pol, vfs.NewMemFS(), clock.NewFake(time.Unix(1700000100, 0)))
	if err != nil {
		t.Fatal(err)
	}
	v := p.Admit("192.0.2.1:1", bearer(tok))
	if !v.Admitted || v.Identity.Cluster != "east" || v.Layer != 1 {
		t.Fatalf("PyJWT token: %+v", v)
	}
	// And a token PyJWT would make with another secret is refused.
	other := forgeRaw([]byte(header), []byte(payload), "HS256", []byte(secret+"x"))
	if v := p.Admit("192.0.2.1:1", bearer(other)); v.Admitted || v.Cause != causeSignature.label {
		t.Fatalf("token under another secret: %+v", v)
	}
}
