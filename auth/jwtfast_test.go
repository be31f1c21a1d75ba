package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// fastLayers are the two jwt layer shapes the fast path is compared on:
// one key with an audience and leeway, and four keys with neither (so the
// key search runs and aud is not checked).
var fastLayers = []string{
	`[{"type":"jwt","audience":"store","leeway":"30s","max_lifetime":"48h","keys":[{"cluster":"east","secret":"` + modelSecrets["east"] + `"}]}]`,
	`[{"type":"jwt","keys":[{"cluster":"east","secret":"` + modelSecrets["east"] + `"},{"cluster":"west","secret":"` + modelSecrets["west"] + `"},{"cluster":"north","secret":"` + modelSecrets["north"] + `"},{"cluster":"south","secret":"` + modelSecrets["south"] + `"}]}]`,
}

func fastVerifier(t testing.TB, layerIdx int, now time.Time) *verifier {
	t.Helper()
	p, err := ParsePolicy([]byte(fastLayers[layerIdx]), nil, clock.NewFake(now))
	if err != nil {
		t.Fatal(err)
	}
	return p.layers[0].verifier
}

// signRaw builds header.payload.MAC with HMAC-SHA256 under key, by hand.
func signRaw(header, payload string, key []byte) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

func sameDate(a, b *strictDate) bool {
	return (a == nil) == (b == nil) && (a == nil || a.nd.Equal(b.nd.Time))
}

func sameClaims(a, b *claims) bool {
	return sameDate(a.Exp, b.Exp) && sameDate(a.Nbf, b.Nbf) && sameDate(a.Iat, b.Iat) && bytes.Equal(a.Aud, b.Aud)
}

// TestFastPathTakesMintedTokens: the tokens this service mints are the
// shape the fast path exists for; if it deferred them the speed-up would
// silently be gone.
func TestFastPathTakesMintedTokens(t *testing.T) {
	now := time.Unix(modelT0, 0)
	for _, c := range []struct {
		layer   int
		cluster string
		aud     string
	}{{0, "east", "store"}, {1, "east", ""}, {1, "south", ""}} {
		v := fastVerifier(t, c.layer, now)
		tok, err := Mint(Secret(modelSecrets[c.cluster]), c.cluster, time.Hour, c.aud, now)
		if err != nil {
			t.Fatal(err)
		}
		idx, cl, ok := v.verifyFast(tok)
		if !ok || v.keys[idx].cluster != c.cluster {
			t.Fatalf("layer %d: fast path on a minted %s token = (%d, %v), want its key", c.layer, c.cluster, idx, ok)
		}
		if !cl.Exp.nd.Equal(now.Add(time.Hour)) {
			t.Fatalf("exp = %v, want %v", cl.Exp.nd.Time, now.Add(time.Hour))
		}
	}
}

// TestFastPathDefers: every header the pinned grammar does not cover, and
// every failing token, leaves the verdict to the full path; the verdicts
// are the ones the full path gives.
func TestFastPathDefers(t *testing.T) {
	now := time.Unix(modelT0, 0)
	exp := `{"exp":1800003600,"aud":"store"}`
	key := []byte(modelSecrets["east"])
	for _, c := range []struct {
		name, header, payload string
		key                   []byte
		want                  cause // zero: admitted by the full path
	}{
		{"kid header", `{"alg":"HS256","kid":"k1"}`, exp, key, cause{}},
		{"escaped name", `{"\u0061lg":"HS256"}`, exp, key, cause{}},
		{"escaped value", `{"alg":"HS\u0032\u0035\u0036"}`, exp, key, cause{}},
		{"non-string typ", `{"alg":"HS256","typ":1}`, exp, key, cause{}},
		{"escaped claim name", `{"alg":"HS256"}`, `{"\u0065xp":1800003600,"aud":"store"}`, key, cause{}},
		{"alg none", `{"alg":"none"}`, exp, key, causeAlg},
		{"alg lower case", `{"alg":"hs256"}`, exp, key, causeAlg},
		{"alg upper-case name", `{"ALG":"HS256"}`, exp, key, causeAlg},
		{"alg twice", `{"alg":"HS256","alg":"HS256"}`, exp, key, causeDuplicateName},
		{"crit", `{"alg":"HS256","crit":["exp"]}`, exp, key, causeHeader},
		{"jwk", `{"alg":"HS256","jwk":{}}`, exp, key, causeHeader},
		{"wrong key", `{"alg":"HS256"}`, exp, []byte(modelSecrets["rogue"]), causeSignature},
		{"expired", `{"alg":"HS256"}`, `{"exp":1799999000,"aud":"store"}`, key, causeExpired},
		{"no exp", `{"alg":"HS256"}`, `{"aud":"store"}`, key, causeClaims},
		{"exp string", `{"alg":"HS256"}`, `{"exp":"1800003600","aud":"store"}`, key, causeClaims},
		{"exp hex", `{"alg":"HS256"}`, `{"exp":0x1,"aud":"store"}`, key, causeTokenMalformed},
		{"other audience", `{"alg":"HS256"}`, `{"exp":1800003600,"aud":"other"}`, key, causeAudience},
		{"trailing junk", `{"alg":"HS256"}`, exp + `x`, key, causeTokenMalformed},
		{"array claims", `{"alg":"HS256"}`, `[1]`, key, causeTokenMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := fastVerifier(t, 0, now)
			tok := signRaw(c.header, c.payload, c.key)
			if _, _, ok := v.verifyFast(tok); ok {
				t.Fatalf("fast path accepted %s %s", c.header, c.payload)
			}
			_, got, ok, _ := v.verifyFull(tok)
			if ok != (c.want == cause{}) || got != c.want {
				t.Fatalf("full path = (%v, %q), want %q", ok, got.label, c.want.label)
			}
			_, got2, ok2 := v.verify(tok)
			if ok2 != ok || got2 != got {
				t.Fatalf("verify = (%v, %q), full path = (%v, %q)", ok2, got2.label, ok, got.label)
			}
		})
	}
}

// FuzzFastPathAgrees is the differential check: the fast path never
// accepts a token golang-jwt's full ParseWithClaims path (with our key
// function and checks) rejects, and when it accepts, the key and claims
// are the full path's; verify, which tries the fast path first, gives the
// full path's verdict and cause on every input. The fuzzer writes the
// header and claims JSON; the MAC is computed over them (or spoiled, or
// made under a key no layer has) so the inputs reach the claim checks.
func FuzzFastPathAgrees(f *testing.F) {
	now := time.Unix(modelT0, 0)
	minted, err := Mint(Secret(modelSecrets["east"]), "east", time.Hour, "store", now)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(minted, ".")
	mh, _ := base64.RawURLEncoding.DecodeString(parts[0])
	mp, _ := base64.RawURLEncoding.DecodeString(parts[1])
	headers := []string{string(mh), `{"alg":"HS256"}`, `{"typ":"JWT","alg":"HS256"}`, ` { "alg" : "HS256" , "typ":"x" } `,
		`{"alg":"none"}`, `{"alg":"HS256","kid":"a"}`, `{"alg":"HS256","crit":[]}`, `{"alg":"HS256","alg":"none"}`, `{"\u0061lg":"HS256"}`}
	payloads := []string{string(mp), `{"exp":1800003600}`, `{"exp":1800003600.5,"nbf":1799999990,"iat":1800000010,"aud":["store","x"]}`,
		`{"exp":1800003600,"aud":"other"}`, `{"exp":"1800003600"}`, `{"exp":1800003600,"EXP":1}`, `{"Exp":1800003600,"aud":null}`,
		`{"exp":1e300}`, `{"exp":-1}`, `{"exp":1800003600} `, `{"exp":1800003600,"x":{"y":[1,"}"]}}`, `null`, `[]`}
	for i, h := range headers {
		for j, p := range payloads {
			f.Add(h, p, uint8(i+j), int64(j*17-40))
		}
	}
	f.Add(minted, "", uint8(0x80), int64(0))
	f.Fuzz(func(t *testing.T, header, payload string, mode uint8, skew int64) {
		if len(header) > maxTokenBytes || len(payload) > maxTokenBytes {
			return
		}
		at := now.Add(time.Duration(skew%7200) * time.Second)
		layer := int(mode>>2) & 1
		var tok string
		switch {
		case mode&0x80 != 0:
			tok = header // the fuzzer writes the whole token
		default:
			key := []byte(modelSecrets[[]string{"east", "west", "south", "rogue"}[mode&3]])
			tok = signRaw(header, payload, key)
			if mode&0x40 != 0 {
				tok = tok[:len(tok)-1] + string("AB"[len(tok)%2])
			}
		}
		v := fastVerifier(t, layer, at)
		fIdx, fCl, fOK := v.verifyFast(tok)
		idx, c, ok, cl := v.verifyFull(tok)
		if fOK {
			if !ok {
				t.Fatalf("fast path accepted %q, full path rejects it: %s", tok, c.label)
			}
			if fIdx != idx {
				t.Fatalf("fast path key %d, full path key %d for %q", fIdx, idx, tok)
			}
			if !sameClaims(fCl, cl) {
				t.Fatalf("claims differ for %q: fast %+v, full %+v", tok, fCl, cl)
			}
		}
		// verify on a fresh verifier (empty cache): the full path's verdict,
		// plus the lifetime bound it applies to admitted tokens.
		vIdx, vc, vOK := fastVerifier(t, layer, at).verify(tok)
		if ok && !v.lifetimeOK(cl.Exp.nd.Time, cl.Iat.numeric(), at) {
			ok, idx, c = false, -1, causeLifetime
		}
		if vOK != ok || vc != c || (ok && vIdx != idx) {
			t.Fatalf("verify = (%d, %q, %v), full path = (%d, %q, %v) for %q", vIdx, vc.label, vOK, idx, c.label, ok, tok)
		}
	})
}

// The fast path takes exactly the headers we mint and their harmless
// variants; everything else goes to golang-jwt's full parse.
func TestPinnedHeader(t *testing.T) {
	for _, c := range []struct {
		json string
		want bool
	}{
		{`{"alg":"HS256","typ":"JWT"}`, true},
		{`{"alg":"HS256"}`, true},
		{` { "typ" : "JWT" , "alg" : "HS256" } `, true},
		{`{"typ":"JWT"}`, false},                       // no alg
		{`{}`, false},                                  // no alg
		{`{"alg":"none"}`, false},                      // not the pinned alg
		{`{"alg":"HS384"}`, false},                     // not the pinned alg
		{`{"alg":"HS256","alg":"HS256"}`, false},       // repeated
		{`{"alg":"HS256","typ":"a","typ":"b"}`, false}, // repeated
		{`{"alg":"HS256","kid":"k1"}`, false},          // any other member
		{`{"alg":"HS256","crit":["exp"]}`, false},      // any other member
		{`{"alg":"HS\u0032\u00356"}`, false},           // escapes
		{`{"\u0061lg":"HS256"}`, false},                // escaped name
		{`{"alg":"HS256","typ":1}`, false},             // typ not a string
		{`{"alg":"HS256"} x`, false},                   // trailing bytes
		{`{"alg":"HS256",}`, false},                    // trailing comma
		{`{"alg":"HS256"`, false},                      // truncated
		{`["alg","HS256"]`, false},                     // not an object
	} {
		if got := pinnedHeader([]byte(c.json)); got != c.want {
			t.Errorf("pinnedHeader(%s) = %v, want %v", c.json, got, c.want)
		}
	}
}
