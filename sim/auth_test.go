package sim

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/auth"
)

// Pools the generators draw from. Prefixes are masked (the parser rejects
// host bits) and include non-byte-aligned masks and a v4-mapped prefix.
var (
	cidrPool = []string{"10.0.0.0/8", "10.1.2.0/23", "10.20.30.40", "192.168.0.0/17", "127.0.0.0/8",
		"::1/128", "2001:db8::/33", "::ffff:10.1.0.0/112", "172.16.0.0/12", "0.0.0.0/0", "8.8.8.8/32"}
	peerPool = []string{"127.0.0.1:1", "[::1]:2", "10.1.2.3:3", "10.1.3.255:4", "[::ffff:10.1.2.3]:5",
		"192.168.127.1:6", "192.168.128.1:7", "[2001:db8::1]:8", "[2001:db8:8000::1]:9", "172.16.5.4:10",
		"8.8.8.8:11", "10.20.30.40:12", "[::ffff:127.0.0.1]:13", "not-an-address"}
	labelPool  = []string{"east", "west", "north", "south-1", "ml.gpu_2"}
	secretPool = []string{
		"0123456789abcdef0123456789abcdef",
		"another-secret-that-is-32-bytes!",
		"a much longer secret used by the west cluster key",
		"sim-relay-secret-east-0123456789abcdef",
		"ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
	}
	wrongSecret = "this secret is configured nowhere at all"
	leewayPool  = []time.Duration{-1, 0, time.Second, 30 * time.Second, 60 * time.Second, 5 * time.Minute}
	audPool     = []string{"", "global", "other"}
)

func genPolicy(t *rapid.T) PolicySpec {
	n := rapid.IntRange(1, 3).Draw(t, "layers")
	if rapid.IntRange(0, 7).Draw(t, "no_policy") == 0 {
		n = 0
	}
	var p PolicySpec
	labels := rapid.Permutation(labelPool).Draw(t, "labels")
	secrets := rapid.Permutation(secretPool).Draw(t, "secrets")
	next := 0
	for i := 0; i < n; i++ {
		if rapid.Bool().Draw(t, "cidr") {
			cs := rapid.SliceOfNDistinct(rapid.SampledFrom(cidrPool), 1, 3, rapid.ID[string]).Draw(t, "cidrs")
			p.Layers = append(p.Layers, LayerSpec{Kind: "cidr", CIDRs: cs})
			continue
		}
		k := rapid.IntRange(1, 2).Draw(t, "keys")
		l := LayerSpec{Kind: "jwt",
			Leeway:   rapid.SampledFrom(leewayPool).Draw(t, "leeway"),
			Audience: rapid.SampledFrom(audPool).Draw(t, "audience")}
		for j := 0; j < k && next < len(labels); j++ {
			l.Keys = append(l.Keys, KeySpec{Cluster: labels[next], Secret: secrets[next]})
			next++
		}
		p.Layers = append(p.Layers, l)
	}
	return p
}

// allKeys lists the policy's keys (for minting valid tokens).
func allKeys(p PolicySpec) []KeySpec {
	var ks []KeySpec
	for _, l := range p.Layers {
		ks = append(ks, l.Keys...)
	}
	return ks
}

// genAuthCase draws a request against a policy; tokens may be valid,
// expired, not yet valid (skewed minter), forged, alg none, HS512, carry a
// forbidden header, a string exp, no exp, or be missing.
func genAuthCase(t *rapid.T) AuthCase {
	p := genPolicy(t)
	now := Epoch.Add(time.Duration(rapid.Int64Range(0, 86400*1000).Draw(t, "now_ms")) * time.Millisecond)
	c := AuthCase{Policy: p, Peer: rapid.SampledFrom(peerPool).Draw(t, "peer"), Header: http.Header{}, Now: now}
	if rapid.IntRange(0, 4).Draw(t, "xff") == 0 {
		// Must be ignored: any client can set it.
		c.Header.Set("X-Forwarded-For", "127.0.0.1")
		c.Header.Set("X-Real-IP", "10.1.2.3")
	}
	keys := allKeys(p)
	key := KeySpec{Cluster: rapid.SampledFrom(labelPool).Draw(t, "label"), Secret: wrongSecret}
	if len(keys) > 0 && rapid.IntRange(0, 4).Draw(t, "wrongkey") != 0 {
		key = rapid.SampledFrom(keys).Draw(t, "key")
	}
	// Minter's clock relative to the verifier: mostly close, sometimes far.
	skew := time.Duration(rapid.Int64Range(-3*3600, 600).Draw(t, "mint_skew_s")) * time.Second
	if rapid.Bool().Draw(t, "near") {
		skew = time.Duration(rapid.Int64Range(-400, 400).Draw(t, "mint_skew_near_s")) * time.Second
	}
	ttl := time.Duration(rapid.Int64Range(1, 7200).Draw(t, "ttl_s")) * time.Second
	aud := rapid.SampledFrom(audPool).Draw(t, "token_aud")
	for _, l := range p.Layers {
		for _, k := range l.Keys {
			if k == key && rapid.IntRange(0, 2).Draw(t, "aud_matches") != 0 {
				aud = l.Audience
			}
		}
	}
	mintAt := now.Add(skew)
	iat := mintAt.Truncate(time.Second).Unix()
	claims := map[string]any{"sub": key.Cluster, "iat": iat, "nbf": iat, "exp": iat + int64(ttl/time.Second)}
	if aud != "" {
		claims["aud"] = []string{aud}
	}
	kind := rapid.IntRange(0, 10).Draw(t, "token_kind")
	var tok string
	var err error
	desc := fmt.Sprintf("key=%s(secret#%s) mint_skew=%v ttl=%v aud=%q", key.Cluster, secretTag(key.Secret), skew, ttl, aud)
	switch kind {
	case 0:
		c.Token = "none"
		return c
	case 1, 2, 3:
		c.Token = "minted " + desc
		tok, err = auth.Mint(auth.Secret(key.Secret), key.Cluster, ttl, aud, mintAt)
	case 4:
		alg := rapid.SampledFrom([]string{"none", "None", "NONE", "nOnE"}).Draw(t, "none_alg")
		c.Token = "alg " + alg + " " + desc
		tok, err = RawToken(map[string]any{"alg": alg, "typ": "JWT"}, claims, "")
	case 5:
		c.Token = "HS512 " + desc
		tok, err = RawToken(map[string]any{"alg": "HS512", "typ": "JWT"}, claims, key.Secret)
	case 6:
		c.Token = "tampered (exp extended) " + desc
		tok, err = auth.Mint(auth.Secret(key.Secret), key.Cluster, ttl, aud, mintAt)
		if err == nil {
			forged := map[string]any{}
			for k, v := range claims {
				forged[k] = v
			}
			forged["exp"] = iat + 30*24*3600
			tok, err = Tamper(tok, forged)
		}
	case 7:
		h := rapid.SampledFrom([]string{"jku", "jwk", "x5u", "crit"}).Draw(t, "bad_header")
		c.Token = "header " + h + " " + desc
		tok, err = RawToken(map[string]any{"alg": "HS256", "typ": "JWT", h: "https://attacker.example/k"}, claims, key.Secret)
	case 8:
		c.Token = "exp as string " + desc
		claims["exp"] = fmt.Sprint(iat + 3600)
		tok, err = RawToken(map[string]any{"alg": "HS256", "typ": "JWT"}, claims, key.Secret)
	case 9:
		c.Token = "no exp " + desc
		delete(claims, "exp")
		tok, err = RawToken(map[string]any{"alg": "HS256", "typ": "JWT"}, claims, key.Secret)
	case 10:
		v := rapid.SampledFrom([]string{"Basic dXNlcjpwYXNz", "Bearer ", "Bearer not-a-jwt", "bearer a.b"}).Draw(t, "odd_authz")
		c.Token = "odd header"
		c.Header.Set("Authorization", v)
		return c
	}
	if err != nil {
		t.Fatalf("building token %s: %v", c.Token, err)
	}
	c.Header.Set("Authorization", "Bearer "+tok)
	return c
}

// TestDefaultDeny is property 5: over random policies, peers, tokens and
// verifier clocks the real auth admits iff the reference model does.
func TestDefaultDeny(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genAuthCase(t)
		if err := CheckAdmission(c, RealAdmitter); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCanaryAdmitAll: a verifier that admits everything must be caught.
func TestCanaryAdmitAll(t *testing.T) {
	admitAll := func(AuthCase) (AuthDecision, error) {
		return AuthDecision{Admitted: true, Layer: 1, Identity: "cidr"}, nil
	}
	caught := 0
	for seed := 0; seed < 200 && caught == 0; seed++ {
		c := rapid.Custom(genAuthCase).Example(seed)
		if CheckAdmission(c, admitAll) != nil {
			caught++
		}
	}
	if caught == 0 {
		t.Fatal("an admit-everything verifier passed 200 generated cases: the default-deny property cannot fail")
	}
	// And the model itself must deny something a real attacker would try.
	forged := AuthCase{
		Policy: PolicySpec{Layers: []LayerSpec{{Kind: "jwt", Leeway: -1, Keys: []KeySpec{{Cluster: "east", Secret: secretPool[0]}}}}},
		Peer:   "8.8.8.8:1", Header: http.Header{}, Now: Epoch,
	}
	tok, err := RawToken(map[string]any{"alg": "none"}, map[string]any{"sub": "east", "exp": Epoch.Unix() + 60}, "")
	if err != nil {
		t.Fatal(err)
	}
	forged.Header.Set("Authorization", "Bearer "+tok)
	if err := CheckAdmission(forged, admitAll); err == nil {
		t.Fatal("an admit-everything verifier admitted an alg=none token without the checker noticing")
	}
}

// TestAuthGeneratorCoverage keeps the default-deny property from going
// vacuous: the generator must reach every kind of decision.
func TestAuthGeneratorCoverage(t *testing.T) {
	seen := map[string]int{}
	for seed := 0; seed < 2000; seed++ {
		c := rapid.Custom(genAuthCase).Example(seed)
		v := ModelAdmit(c.Policy, c.Peer, c.Header, c.Now)
		switch {
		case v.Admitted && v.Identity == "cidr":
			seen["admit cidr"]++
		case v.Admitted:
			seen["admit jwt"]++
		case len(v.Why) > 10 && v.Why[:10] == "bad bearer":
			seen["reject "+v.Why[12:]]++
		default:
			seen["deny: "+v.Why]++
		}
	}
	t.Logf("decisions over 2000 cases: %v", seen)
	for _, want := range []string{"admit cidr", "admit jwt", "reject expired", "reject not yet valid", "reject signature matches no key",
		"reject alg none", "reject alg HS512", "reject header jku", "reject exp missing or malformed", "reject audience", "deny: no layer admitted",
		"deny: no policy, not loopback"} {
		if seen[want] == 0 && !(want == "reject alg none" && seen["reject alg None"]+seen["reject alg NONE"]+seen["reject alg nOnE"] > 0) &&
			!(want == "reject header jku" && seen["reject header jwk"]+seen["reject header x5u"]+seen["reject header crit"] > 0) {
			t.Errorf("generator never produced %q in 2000 cases; saw %v", want, seen)
		}
	}
}
