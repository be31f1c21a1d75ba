package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/internal/clock"
)

// This file checks Policy.Admit against a small reference model written
// from the specification (issue 4), over random policies, peers, tokens and
// clock skews. The model never parses: peers, prefixes and tokens are
// generated as structured values, the model decides from those values, and
// only the implementation sees their rendered strings.

var modelSecrets = map[string]string{
	"east":  "model-secret-east-0123456789abcdef",
	"west":  "model-secret-west-0123456789abcdef",
	"north": "model-secret-north-0123456789abcde",
	"south": "model-secret-south-0123456789abcde",
	"rogue": "model-secret-rogue-0123456789abcde", // never in a policy
}

var modelLabels = []string{"east", "west", "north", "south"}

const modelT0 = 1_800_000_000

type mAddr struct {
	v6    bool
	b     [16]byte // v4 uses b[:4]
	form  string   // v4: "plain" or "mapped"; v6: "plain" or "zoned"; "junk" for an unparseable peer
	junky string
}

func (a mAddr) String() string {
	switch {
	case a.form == "junk":
		return a.junky
	case !a.v6 && a.form == "mapped":
		return fmt.Sprintf("[::ffff:%d.%d.%d.%d]:443", a.b[0], a.b[1], a.b[2], a.b[3])
	case !a.v6:
		return fmt.Sprintf("%d.%d.%d.%d:443", a.b[0], a.b[1], a.b[2], a.b[3])
	case a.form == "zoned":
		return "[" + netip.AddrFrom16(a.b).String() + "%eth0]:443"
	default:
		return "[" + netip.AddrFrom16(a.b).String() + "]:443"
	}
}

type mPrefix struct {
	v6     bool
	b      [16]byte
	bits   int
	mapped bool // v4 rule written as ::ffff:a.b.c.d/(96+bits)
	bare   bool // written without /bits (then bits is the full length)
}

func (p mPrefix) String() string {
	if !p.v6 {
		ip := fmt.Sprintf("%d.%d.%d.%d", p.b[0], p.b[1], p.b[2], p.b[3])
		switch {
		case p.bare:
			return ip
		case p.mapped:
			return fmt.Sprintf("::ffff:%s/%d", ip, 96+p.bits)
		default:
			return fmt.Sprintf("%s/%d", ip, p.bits)
		}
	}
	ip := netip.AddrFrom16(p.b).String()
	if p.bare {
		return ip
	}
	return fmt.Sprintf("%s/%d", ip, p.bits)
}

// contains is the model's prefix match: same family, first bits equal.
func (p mPrefix) contains(a mAddr) bool {
	if a.form == "junk" || a.v6 != p.v6 {
		return false
	}
	for i := 0; i < p.bits; i++ {
		bit := func(b [16]byte) byte { return b[i/8] >> (7 - i%8) & 1 }
		if bit(p.b) != bit(a.b) {
			return false
		}
	}
	return true
}

type mLayer struct {
	jwt      bool
	prefixes []mPrefix
	keys     []string
	leeway   *time.Duration // nil = default
	audience string
	// maxLifetime in seconds; 0 = the default (longer than any generated token)
	maxLifetime int64
}

type mToken struct {
	kind      string // "missing", "basic", "emptybearer" (a bad bearer), "jwt"
	signer    string
	alg       string
	exp       *int64
	expString bool
	nbf, iat  *int64
	aud       any // nil, string or []string
	badHeader string
}

func genAddr(t *rapid.T) mAddr {
	var a mAddr
	switch rapid.IntRange(0, 9).Draw(t, "family") {
	case 0:
		return mAddr{form: "junk", junky: rapid.SampledFrom([]string{"", "@", "unix", "localhost:80", "1.2.3:4"}).Draw(t, "junk")}
	case 1, 2, 3:
		a.v6 = true
		a.form = rapid.SampledFrom([]string{"plain", "plain", "zoned"}).Draw(t, "v6form")
		// A small space so prefixes and peers collide often.
		a.b[0], a.b[1] = 0x20, 0x01
		a.b[2] = byte(rapid.IntRange(0, 3).Draw(t, "v6b2")) << 6
		a.b[15] = byte(rapid.IntRange(0, 3).Draw(t, "v6b15"))
	default:
		a.form = rapid.SampledFrom([]string{"plain", "plain", "mapped"}).Draw(t, "v4form")
		a.b[0] = rapid.SampledFrom([]byte{10, 127, 192}).Draw(t, "v4b0")
		a.b[1] = byte(rapid.IntRange(0, 3).Draw(t, "v4b1")) << 6
		a.b[3] = byte(rapid.IntRange(0, 3).Draw(t, "v4b3"))
	}
	return a
}

func genPrefix(t *rapid.T) mPrefix {
	base := genAddr(t)
	for base.form == "junk" {
		base = genAddr(t)
	}
	p := mPrefix{v6: base.v6, b: base.b}
	if p.v6 {
		p.bits = rapid.SampledFrom([]int{0, 3, 16, 17, 18, 64, 127, 128}).Draw(t, "v6bits")
	} else {
		p.bits = rapid.SampledFrom([]int{0, 7, 8, 9, 10, 24, 31, 32}).Draw(t, "v4bits")
		p.mapped = rapid.IntRange(0, 4).Draw(t, "mapped") == 0
	}
	if rapid.IntRange(0, 5).Draw(t, "bare") == 0 {
		p.bare, p.mapped = true, false
		if p.v6 {
			p.bits = 128
		} else {
			p.bits = 32
		}
	}
	return p
}

func genPolicy(t *rapid.T) []mLayer {
	n := rapid.IntRange(1, 4).Draw(t, "layers")
	free := append([]string(nil), modelLabels...)
	var ls []mLayer
	for i := 0; i < n; i++ {
		if len(free) > 0 && rapid.Bool().Draw(t, "isJWT") {
			k := rapid.IntRange(1, len(free)).Draw(t, "nkeys")
			l := mLayer{jwt: true, keys: free[:k]}
			free = free[k:]
			if lw := rapid.SampledFrom([]time.Duration{-1, 0, time.Second, 30 * time.Second, 5 * time.Minute}).Draw(t, "leeway"); lw >= 0 {
				l.leeway = &lw
			}
			l.audience = rapid.SampledFrom([]string{"", "", "a", "b"}).Draw(t, "audience")
			l.maxLifetime = rapid.SampledFrom([]int64{0, 0, 1, 300, 600}).Draw(t, "maxLifetime")
			ls = append(ls, l)
			continue
		}
		l := mLayer{}
		for j := rapid.IntRange(1, 3).Draw(t, "nprefixes"); j > 0; j-- {
			l.prefixes = append(l.prefixes, genPrefix(t))
		}
		ls = append(ls, l)
	}
	return ls
}

func renderPolicy(ls []mLayer) []byte {
	var out []map[string]any
	for _, l := range ls {
		if !l.jwt {
			var cidrs []string
			for _, p := range l.prefixes {
				cidrs = append(cidrs, p.String())
			}
			out = append(out, map[string]any{"type": "cidr", "cidrs": cidrs})
			continue
		}
		var keys []map[string]any
		for _, k := range l.keys {
			keys = append(keys, map[string]any{"cluster": k, "secret": modelSecrets[k]})
		}
		m := map[string]any{"type": "jwt", "keys": keys}
		if l.leeway != nil {
			m["leeway"] = l.leeway.String()
		}
		if l.audience != "" {
			m["audience"] = l.audience
		}
		if l.maxLifetime > 0 {
			m["max_lifetime"] = fmt.Sprintf("%ds", l.maxLifetime)
		}
		out = append(out, m)
	}
	b, _ := json.Marshal(out)
	return b
}

func genToken(t *rapid.T) mToken {
	tok := mToken{kind: rapid.SampledFrom([]string{"missing", "basic", "emptybearer", "jwt", "jwt", "jwt", "jwt", "jwt"}).Draw(t, "tokkind")}
	if tok.kind != "jwt" {
		return tok
	}
	tok.signer = rapid.SampledFrom([]string{"east", "west", "north", "south", "rogue"}).Draw(t, "signer")
	tok.alg = rapid.SampledFrom([]string{"HS256", "HS256", "HS256", "HS256", "HS512", "none"}).Draw(t, "alg")
	off := func(name string) *int64 {
		if rapid.IntRange(0, 3).Draw(t, name+"?") == 0 {
			return nil
		}
		v := modelT0 + int64(rapid.IntRange(-400, 400).Draw(t, name))
		return &v
	}
	tok.exp = off("exp")
	tok.expString = tok.exp != nil && rapid.IntRange(0, 9).Draw(t, "expString") == 0
	tok.nbf = off("nbf")
	tok.iat = off("iat")
	tok.aud = rapid.SampledFrom([]any{nil, nil, "a", "b", []string{"b", "a"}}).Draw(t, "aud")
	tok.badHeader = rapid.SampledFrom([]string{"", "", "", "", "", "", "crit", "jku", "jwk", "x5u"}).Draw(t, "badHeader")
	return tok
}

func renderToken(t *rapid.T, tok mToken) http.Header {
	h := http.Header{}
	switch tok.kind {
	case "missing":
		return h
	case "basic":
		h.Set("Authorization", "Basic dXNlcjpwYXNz")
		return h
	case "emptybearer":
		h.Set("Authorization", "Bearer ")
		return h
	}
	header := map[string]any{"alg": tok.alg, "typ": "JWT"}
	if tok.badHeader != "" {
		header[tok.badHeader] = "x"
	}
	claims := map[string]any{}
	if tok.exp != nil {
		if tok.expString {
			claims["exp"] = fmt.Sprint(*tok.exp)
		} else {
			claims["exp"] = *tok.exp
		}
	}
	if tok.nbf != nil {
		claims["nbf"] = *tok.nbf
	}
	if tok.iat != nil {
		claims["iat"] = *tok.iat
	}
	if tok.aud != nil {
		claims["aud"] = tok.aud
	}
	signAlg := tok.alg
	if tok.alg == "none" {
		signAlg = ""
	}
	h.Set("Authorization", "Bearer "+forge(t, header, claims, signAlg, []byte(modelSecrets[tok.signer])))
	return h
}

type modelVerdict struct {
	admitted bool
	code     Code
	layer    int
	cluster  string
	inCIDR   bool
}

func model(ls []mLayer, peer mAddr, tok mToken, now int64) modelVerdict {
	hasJWT := false
	for _, l := range ls {
		hasJWT = hasJWT || l.jwt
	}
	// A presented bearer is always verified: cidr layers admit only
	// requests without one.
	bearer := tok.kind == "emptybearer" || tok.kind == "jwt"
	for i, l := range ls {
		n := i + 1
		if !l.jwt {
			if bearer {
				continue
			}
			for _, p := range l.prefixes {
				if p.contains(peer) {
					return modelVerdict{admitted: true, code: CodeOK, layer: n, inCIDR: true}
				}
			}
			continue
		}
		reject := modelVerdict{code: CodeUnauthenticated, layer: n}
		switch tok.kind {
		case "missing", "basic":
			continue
		case "emptybearer":
			return reject
		}
		if tok.alg != "HS256" || tok.badHeader != "" {
			return reject
		}
		signed := false
		for _, k := range l.keys {
			signed = signed || k == tok.signer
		}
		if !signed || tok.exp == nil || tok.expString {
			return reject
		}
		leeway := int64(60)
		if l.leeway != nil {
			leeway = int64(*l.leeway / time.Second)
		}
		if now >= *tok.exp+leeway {
			return reject
		}
		if tok.nbf != nil && now < *tok.nbf-leeway {
			return reject
		}
		if tok.iat != nil && now < *tok.iat-leeway {
			return reject
		}
		if l.audience != "" {
			ok := false
			switch a := tok.aud.(type) {
			case string:
				ok = a == l.audience
			case []string:
				for _, s := range a {
					ok = ok || s == l.audience
				}
			}
			if !ok {
				return modelVerdict{code: CodePermissionDenied, layer: n}
			}
		}
		if l.maxLifetime > 0 {
			start := now
			if tok.iat != nil {
				start = *tok.iat
			}
			if *tok.exp-start > l.maxLifetime {
				return reject
			}
		}
		return modelVerdict{admitted: true, code: CodeOK, layer: n, cluster: tok.signer}
	}
	if bearer || hasJWT {
		return modelVerdict{code: CodeUnauthenticated}
	}
	return modelVerdict{code: CodePermissionDenied}
}

func TestAdmitMatchesReferenceModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ls := genPolicy(t)
		peer := genAddr(t)
		tok := genToken(t)
		skew := int64(rapid.IntRange(-300, 300).Draw(t, "skew"))
		now := modelT0 + skew
		clk := clock.NewFake(time.Unix(now, 0))
		pj := renderPolicy(ls)
		p, err := ParsePolicy(pj, nil, clk)
		if err != nil {
			t.Fatalf("generated policy %s rejected: %v", pj, err)
		}
		h := renderToken(t, tok)
		got := p.Admit(peer.String(), h)
		want := model(ls, peer, tok, now)
		if got.Admitted != want.admitted || got.Code != want.code || got.Layer != want.layer || got.Identity.Cluster != want.cluster ||
			(want.inCIDR != (got.Identity.Kind == LayerCIDR)) {
			t.Fatalf("policy %s\npeer %s  token %s  now T0%+d\nimpl  %+v\nmodel %+v", pj, peer, tok, skew, got, want)
		}
		// A cidr identity names a prefix of the policy that contains the peer.
		if got.Identity.Kind == LayerCIDR {
			pr := netip.MustParsePrefix(got.Identity.CIDR)
			a, _ := peerAddr(peer.String())
			if !pr.Contains(a) || !strings.Contains(p.String(), got.Identity.CIDR) {
				t.Fatalf("cidr identity %s does not contain peer %s or is not in %s", pr, peer, p)
			}
		}
	})
}

func (tok mToken) String() string {
	if tok.kind != "jwt" {
		return tok.kind
	}
	opt := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("T0%+d", *p-modelT0)
	}
	return fmt.Sprintf("jwt{signer %s alg %s exp %s (string %v) nbf %s iat %s aud %v header %q}",
		tok.signer, tok.alg, opt(tok.exp), tok.expString, opt(tok.nbf), opt(tok.iat), tok.aud, tok.badHeader)
}

// TestRepeatedTokensMatchReferenceModel presents the same few tokens again
// and again while the clock jumps back and forth, so verdicts served from
// the verified-token cache are checked against the model too.
func TestRepeatedTokensMatchReferenceModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ls := genPolicy(t)
		clk := clock.NewFake(time.Unix(modelT0, 0))
		pj := renderPolicy(ls)
		p, err := ParsePolicy(pj, nil, clk)
		if err != nil {
			t.Fatalf("generated policy %s rejected: %v", pj, err)
		}
		toks := make([]mToken, rapid.IntRange(1, 3).Draw(t, "ntokens"))
		hdrs := make([]http.Header, len(toks))
		for i := range toks {
			toks[i] = genToken(t)
			hdrs[i] = renderToken(t, toks[i])
		}
		for step := rapid.IntRange(1, 20).Draw(t, "steps"); step > 0; step-- {
			skew := int64(rapid.IntRange(-500, 500).Draw(t, "skew"))
			clk.Set(time.Unix(modelT0+skew, 0))
			i := rapid.IntRange(0, len(toks)-1).Draw(t, "which")
			peer := genAddr(t)
			got := p.Admit(peer.String(), hdrs[i])
			want := model(ls, peer, toks[i], modelT0+skew)
			if got.Admitted != want.admitted || got.Code != want.code || got.Layer != want.layer || got.Identity.Cluster != want.cluster {
				t.Fatalf("policy %s\npeer %s  token %s  now T0%+d\nimpl  %+v\nmodel %+v", pj, peer, toks[i], skew, got, want)
			}
		}
	})
}
