package auth

import (
	"encoding/base64"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finelog/finelog/internal/clock"
)

// measureCPU pins the benchmark goroutine to its OS thread and reports
// that thread's CPU time per op as cpu-ns/op when b.Loop is done.
func measureCPU(b *testing.B) func() {
	runtime.LockOSThread()
	start, ok := threadCPU()
	return func() {
		end, ok2 := threadCPU()
		runtime.UnlockOSThread()
		if ok && ok2 && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkAdmitCIDR is the per-request cost of a cidr decision: parse
// RemoteAddr, walk a realistic policy (jwt layer first, so the bearer check
// runs and falls through) and match the third prefix of the cidr layer.
// Target: under 200 ns.
func BenchmarkAdmitCIDR(b *testing.B) {
	p, err := ParsePolicy([]byte(`[{"type":"cidr","cidrs":["127.0.0.0/8","::1"]},
		{"type":"cidr","cidrs":["192.168.0.0/16","2001:db8::/32","10.64.0.0/10"]}]`), nil, clock.NewFake(time.Unix(modelT0, 0)))
	if err != nil {
		b.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/proto"}}
	b.ReportAllocs()
	defer measureCPU(b)()
	for b.Loop() {
		if v := p.Admit("10.65.3.4:51234", h); !v.Admitted {
			b.Fatal(v.Reason)
		}
	}
}

// BenchmarkAdmitJWT is the per-request cost of verifying a bearer token
// (HS256, one key). Target: under 5 µs.
func BenchmarkAdmitJWT(b *testing.B) {
	clk := clock.NewFake(time.Unix(modelT0, 0))
	p, err := ParsePolicy([]byte(`[{"type":"cidr","cidrs":["127.0.0.0/8"]},{"type":"jwt","audience":"store","keys":[{"cluster":"east","secret":"`+testSecret+`"}]}]`), nil, clk)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := Mint(Secret(testSecret), "east", time.Hour, "store", clk.Now())
	if err != nil {
		b.Fatal(err)
	}
	h := bearer(tok)
	b.ReportAllocs()
	defer measureCPU(b)()
	for b.Loop() {
		if v := p.Admit("192.0.2.1:51234", h); !v.Admitted {
			b.Fatal(v.Reason)
		}
	}
}

// BenchmarkAdmitJWTFourKeys: the matching key is the last of four, so the
// key search runs four HMACs before the library verifies.
func BenchmarkAdmitJWTFourKeys(b *testing.B) {
	clk := clock.NewFake(time.Unix(modelT0, 0))
	p, err := ParsePolicy(renderPolicy([]mLayer{{jwt: true, keys: modelLabels}}), nil, clk)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := Mint(Secret(modelSecrets["south"]), "south", time.Hour, "", clk.Now())
	if err != nil {
		b.Fatal(err)
	}
	h := bearer(tok)
	b.ReportAllocs()
	defer measureCPU(b)()
	for b.Loop() {
		if v := p.Admit("192.0.2.1:51234", h); !v.Admitted || v.Identity.Cluster != "south" {
			b.Fatal(v.Reason)
		}
	}
}

// BenchmarkAdmitJWTCold verifies a different token every time (more tokens
// than the verified-token cache holds), so no iteration is a cache hit: the
// cost of a client's first request with a new token (verifyFast, with
// golang-jwt's HS256 Verify and Validator). Target: under 3 µs.
func BenchmarkAdmitJWTCold(b *testing.B) {
	clk := clock.NewFake(time.Unix(modelT0, 0))
	p, err := ParsePolicy([]byte(`[{"type":"jwt","audience":"store","keys":[{"cluster":"east","secret":"`+testSecret+`"}]}]`), nil, clk)
	if err != nil {
		b.Fatal(err)
	}
	hs := make([]http.Header, 3*tokenCacheSize)
	for i := range hs {
		tok, err := Mint(Secret(testSecret), "east", time.Hour+time.Duration(i)*time.Second, "store", clk.Now())
		if err != nil {
			b.Fatal(err)
		}
		hs[i] = bearer(tok)
	}
	b.ReportAllocs()
	defer measureCPU(b)()
	i := 0
	for b.Loop() {
		if v := p.Admit("192.0.2.1:51234", hs[i%len(hs)]); !v.Admitted {
			b.Fatal(v.Reason)
		}
		i++
	}
}

// BenchmarkHS256VerifyFloor is the bare HMAC-SHA256 check of one token's
// signature through golang-jwt: the floor under BenchmarkAdmitJWTCold.
func BenchmarkHS256VerifyFloor(b *testing.B) {
	clk := clock.NewFake(time.Unix(modelT0, 0))
	tok, err := Mint(Secret(testSecret), "east", time.Hour, "store", clk.Now())
	if err != nil {
		b.Fatal(err)
	}
	dot := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	key := []byte(testSecret)
	b.ReportAllocs()
	defer measureCPU(b)()
	for b.Loop() {
		if err := jwt.SigningMethodHS256.Verify(tok[:dot], sig, key); err != nil {
			b.Fatal(err)
		}
	}
}
