package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/internal/clock"
)

const (
	homeKey = "home-delegation-key-0123456789abcdef"
	westKey = "west-delegation-key-0123456789abcdef"
)

// delegationServer is east's gate: a jwt layer with home's and west's keys
// in front of a loopback cidr layer, then DelegationGate, then a handler
// that reports the delegation it saw.
func delegationServer(t *testing.T, cluster string, clk clock.Clock) http.Handler {
	t.Helper()
	jwtLayer := `{"type":"jwt","keys":[{"cluster":"home","secret":"` + homeKey + `"},{"cluster":"west","secret":"` + westKey + `"}]}`
	// Loopback is admitted by address before any token is looked at.
	policy := `[{"type":"cidr","cidrs":["127.0.0.0/8"]},` + jwtLayer + `]`
	p, err := ParsePolicy([]byte(policy), nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, ok := DelegationFrom(r.Context())
		if !ok {
			w.Write([]byte("direct"))
			return
		}
		w.Write([]byte("proxied by=" + d.By + " sub=" + d.Subject + " verified=" + map[bool]string{true: "yes", false: "no"}[d.Verified]))
	})
	gate := DelegationGate(DelegationGateOptions{Cluster: cluster, Paths: []string{loggingpbconnect.LogServiceFetchLogsProcedure}})
	return Middleware(p, MiddlewareOptions{Clock: clk})(gate(inner))
}

func TestDelegationGate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(now)
	east := delegationServer(t, "east", clk)
	fetch := loggingpbconnect.LogServiceFetchLogsProcedure
	push := loggingpbconnect.LogServicePushLogsProcedure
	mint := func(key, by, aud string) string {
		tok, err := MintDelegation(Secret(key), by, aud, "jwt cluster ops", 30*time.Second, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	plain, err := Mint(Secret(homeKey), "home", time.Hour, "", now)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, peer, path, token string
		code                    int
		body                    string
	}{
		{"proxied read for east", "192.0.2.1:1", fetch, mint(homeKey, "home", "east"), 200, "proxied by=home sub=jwt cluster ops verified=yes"},
		// A token addressed to west replayed at east, with a key east trusts.
		{"aud of another peer", "192.0.2.1:1", fetch, mint(homeKey, "home", "west"), 403, `addressed to \"west\"`},
		{"push with a delegation", "192.0.2.1:1", push, mint(homeKey, "home", "east"), 403, "FetchLogs only"},
		{"claim names another cluster than its key", "192.0.2.1:1", fetch, mint(westKey, "home", "east"), 403, `signed with the key of \"west\"`},
		// A presented bearer is always verified, even from a peer a cidr
		// layer would admit: a delegation under an unknown key never gets
		// here, and one under a known key is held to the rules.
		{"loopback, unknown key", "127.0.0.1:1", fetch, mint("some-other-key-0123456789abcdefghij", "home", "east"), 401, "does not verify"},
		{"loopback push with delegation", "127.0.0.1:1", push, mint(homeKey, "home", "east"), 403, "FetchLogs only"},
		{"loopback proxied read", "127.0.0.1:1", fetch, mint(homeKey, "home", "east"), 200, "verified=yes"},
		{"ordinary token is not a delegation", "192.0.2.1:1", push, plain, 200, "direct"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader("{}"))
			req.RemoteAddr = c.peer
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+c.token)
			rec := httptest.NewRecorder()
			east.ServeHTTP(rec, req)
			if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.body) {
				t.Fatalf("got %d %q, want %d containing %q", rec.Code, rec.Body.String(), c.code, c.body)
			}
			if c.code == 403 && !strings.Contains(rec.Body.String(), `"code":"permission_denied"`) {
				t.Fatalf("refusal is not a Connect permission_denied: %s", rec.Body.String())
			}
		})
	}

	t.Run("store without --cluster refuses every delegation", func(t *testing.T) {
		noName := delegationServer(t, "", clk)
		req := httptest.NewRequest(http.MethodPost, fetch, strings.NewReader("{}"))
		req.RemoteAddr = "192.0.2.1:1"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+mint(homeKey, "home", "east"))
		rec := httptest.NewRecorder()
		noName.ServeHTTP(rec, req)
		if rec.Code != 403 || !strings.Contains(rec.Body.String(), "no --cluster") {
			t.Fatalf("got %d %s", rec.Code, rec.Body.String())
		}
	})

	t.Run("expired delegation is refused by the jwt layer", func(t *testing.T) {
		tok := mint(homeKey, "home", "east")
		clk.Advance(2 * time.Minute)
		defer clk.Set(now)
		req := httptest.NewRequest(http.MethodPost, fetch, strings.NewReader("{}"))
		req.RemoteAddr = "192.0.2.1:1"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		east.ServeHTTP(rec, req)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), "expired") {
			t.Fatalf("got %d %s", rec.Code, rec.Body.String())
		}
	})
}

func TestMintDelegationClaims(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok, err := MintDelegation(Secret(homeKey), "home", "east", "cidr 127.0.0.0/8", MaxDelegationTTL, now)
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.MapClaims
	if _, err := jwt.NewParser(jwt.WithTimeFunc(func() time.Time { return now })).ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return []byte(homeKey), nil }); err != nil {
		t.Fatal(err)
	}
	if c["aud"] != "east" || c["sub"] != "cidr 127.0.0.0/8" || c[ProxiedReadClaim] != "home" || c["exp"].(float64) != float64(now.Unix()+60) {
		t.Fatalf("claims %v", c)
	}
	for _, bad := range []struct {
		by, aud string
		ttl     time.Duration
		want    string
	}{
		{"home", "east", 61 * time.Second, "ttl"},
		{"home", "", time.Second * 10, "audience is required"},
		{"", "east", time.Second * 10, "proxying cluster is required"},
		{"home", "ea st", time.Second * 10, "audience"},
	} {
		if _, err := MintDelegation(Secret(homeKey), bad.by, bad.aud, "x", bad.ttl, now); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("MintDelegation(%q, %q, %v) = %v, want error with %q", bad.by, bad.aud, bad.ttl, err, bad.want)
		}
	}
	if _, err := MintDelegation(Secret("short"), "home", "east", "x", time.Second*10, now); err == nil {
		t.Error("a short key was accepted")
	}
}

// TestDelegationClaimEscaped: a claim name spelled with a JSON escape is
// the same claim, and is treated as one.
func TestDelegationClaimEscaped(t *testing.T) {
	payload := `{"sub":"x","aud":"west","exp":1800000060,"finelog_proxied_read_b\u0079":"home"}`
	tok := forgeRaw([]byte(`{"alg":"HS256","typ":"JWT"}`), []byte(payload), "HS256", []byte(homeKey))
	c, present := proxiedReadClaims(bearer(tok))
	if !present || c.by != "home" || c.aud != "west" {
		t.Fatalf("escaped claim: present %v, %+v", present, c)
	}
}

func BenchmarkDelegationGateOrdinaryToken(b *testing.B) {
	tok, err := Mint(Secret(homeKey), "home", time.Hour, "", time.Unix(1_800_000_000, 0))
	if err != nil {
		b.Fatal(err)
	}
	h := bearer(tok)
	for b.Loop() {
		if _, present := proxiedReadClaims(h); present {
			b.Fatal("ordinary token seen as a delegation")
		}
	}
}
