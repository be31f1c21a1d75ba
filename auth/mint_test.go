package auth

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

func decodeSegment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMintVerifies(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok, err := Mint(Secret(testSecret), "east", time.Hour, "store.west", now)
	if err != nil {
		t.Fatal(err)
	}
	if !hmacValid(tok, []byte(testSecret)) {
		t.Fatal("minted token's MAC does not verify with crypto/hmac")
	}
	hdr := decodeSegment(t, tok, 0)
	if hdr["alg"] != "HS256" || hdr["typ"] != "JWT" || len(hdr) != 2 {
		t.Fatalf("header = %v", hdr)
	}
	cl := decodeSegment(t, tok, 1)
	if cl["sub"] != "east" || cl["aud"] != "store.west" || cl["iat"] != float64(now.Unix()) || cl["exp"] != float64(now.Add(time.Hour).Unix()) {
		t.Fatalf("claims = %v", cl)
	}
	policy := `[{"type":"jwt","audience":"store.west","keys":[{"cluster":"east","secret":"` + testSecret + `"}]}]`
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{-61 * time.Second, false}, // before iat/nbf beyond leeway
		{-59 * time.Second, true},
		{0, true},
		{time.Hour + 59*time.Second, true},
		{time.Hour + 60*time.Second, false},
	} {
		p, err := ParsePolicy([]byte(policy), nil, clock.NewFake(now.Add(tc.at)))
		if err != nil {
			t.Fatal(err)
		}
		if v := p.Admit("192.0.2.1:1", bearer(tok)); v.Admitted != tc.want || (tc.want && v.Identity.Cluster != "east") {
			t.Errorf("at %v: %+v, want admitted %v", tc.at, v, tc.want)
		}
	}
}

func TestMintRejectsBadArguments(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name    string
		secret  string
		cluster string
		ttl     time.Duration
		want    string
	}{
		{"short secret", shortSecret, "east", time.Hour, "need at least 32"},
		{"no cluster", testSecret, "", time.Hour, "cluster is required"},
		{"bad cluster", testSecret, "ea st", time.Hour, "cluster"},
		{"zero ttl", testSecret, "east", 0, "ttl"},
		{"sub-second ttl", testSecret, "east", time.Millisecond, "ttl"},
		{"huge ttl", testSecret, "east", 365 * 24 * time.Hour, "ttl"},
	} {
		_, err := Mint(Secret(tc.secret), tc.cluster, tc.ttl, "", now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want mention of %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s: error leaks the secret", tc.name)
		}
	}
}

func TestMinterRefreshesBeforeExpiry(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(start)
	m := NewMinter(Secret(testSecret), "east", "", 90*time.Second, clk)
	p, err := ParsePolicy([]byte(`[{"type":"jwt","leeway":"0s","keys":[{"cluster":"east","secret":"`+testSecret+`"}]}]`), nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.Token()
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(59 * time.Second)
	if again, _ := m.Token(); again != first {
		t.Fatal("token re-minted before two thirds of its ttl")
	}
	clk.Advance(time.Second) // 60 s = 2/3 of 90 s
	second, err := m.Token()
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("token not refreshed at two thirds of its ttl")
	}
	// Whatever the Minter hands out is always accepted by a zero-leeway
	// verifier on the same clock, across many refresh cycles.
	for i := 0; i < 400; i++ {
		tok, err := m.Token()
		if err != nil {
			t.Fatal(err)
		}
		if v := p.Admit("192.0.2.1:1", bearer(tok)); !v.Admitted {
			t.Fatalf("after %v: minter token refused: %s", clk.Now().Sub(start), v.Reason)
		}
		clk.Advance(7 * time.Second)
	}
	// A clock stepped backwards past the mint time forces a new token
	// rather than handing out one "issued in the future".
	cur, _ := m.Token()
	clk.Set(clk.Now().Add(-10 * time.Minute))
	back, _ := m.Token()
	if back == cur {
		t.Fatal("clock stepped back: minter kept a token issued in the future")
	}
	if v := p.Admit("192.0.2.1:1", bearer(back)); !v.Admitted {
		t.Fatalf("token after clock step back refused: %s", v.Reason)
	}
}

func TestMinterReportsBadConfig(t *testing.T) {
	m := NewMinter(Secret(shortSecret), "east", "", time.Hour, clock.NewFake(time.Unix(0, 0)))
	if _, err := m.Token(); err == nil {
		t.Fatal("minter with a short secret handed out a token")
	}
}
