package auth

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// TestAdmitConcurrent hammers one policy from several goroutines with a mix
// of good, expired and forged tokens while the clock moves, so the race
// detector sees the verified-token cache under contention, and every
// verdict is still the one the token deserves at that moment.
func TestAdmitConcurrent(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(start)
	p, err := ParsePolicy([]byte(`[{"type":"jwt","leeway":"0s","keys":[{"cluster":"east","secret":"`+testSecret+`"},{"cluster":"west","secret":"`+testSecret2+`"}]}]`), nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	// Valid for the whole run: the clock moves at most 100 s.
	good, _ := Mint(Secret(testSecret2), "west", time.Hour, "", start)
	expired, _ := Mint(Secret(testSecret), "east", time.Minute, "", start.Add(-time.Hour))
	forged := forge(t, map[string]any{"alg": "HS256"}, map[string]any{"exp": 4102444800}, "HS256", []byte("not-a-configured-secret-0123456789"))
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				if g == 0 && i%3 == 0 {
					clk.Advance(time.Second)
				}
				if v := p.Admit("192.0.2.1:1", bearer(good)); !v.Admitted || v.Identity.Cluster != "west" {
					errs <- "good token: " + v.Reason
					return
				}
				if v := p.Admit("192.0.2.1:1", bearer(expired)); v.Admitted {
					errs <- "expired token admitted"
					return
				}
				if v := p.Admit("192.0.2.1:1", bearer(forged)); v.Admitted {
					errs <- "forged token admitted"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestOversizeAndOddTokens(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	p, err := ParsePolicy([]byte(`[{"type":"jwt","keys":[{"cluster":"east","secret":"`+testSecret+`"}]}]`), nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	// A genuine token whose payload is padded past the size limit.
	big := forge(t, map[string]any{"alg": "HS256"}, map[string]any{"exp": 1_800_003_600, "pad": strings.Repeat("x", maxTokenBytes)}, "HS256", []byte(testSecret))
	if v := p.Admit("192.0.2.1:1", bearer(big)); v.Admitted || v.Cause != causeBearerSyntax.label {
		t.Fatalf("oversize token: %+v", v)
	}
	// Just under the limit is fine.
	ok := forge(t, map[string]any{"alg": "HS256"}, map[string]any{"exp": 1_800_003_600, "pad": strings.Repeat("x", maxTokenBytes/2)}, "HS256", []byte(testSecret))
	if v := p.Admit("192.0.2.1:1", bearer(ok)); !v.Admitted {
		t.Fatalf("token of %d bytes refused: %+v", len(ok), v)
	}
	// A newline inside a segment: the base64 decoder would skip it, the
	// character check does not.
	parts := strings.Split(ok, ".")
	nl := parts[0] + ".\n" + parts[1] + "." + parts[2]
	if v := p.Admit("192.0.2.1:1", bearer(nl)); v.Admitted {
		t.Fatal("token with an embedded newline admitted")
	}
}
