package auth

import (
	"net/http"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// The Authorization syntax is RFC 6750's: the scheme in any case, one or
// more spaces, the token, nothing else. Anything else that names the
// Bearer scheme is a malformed credential (401), never "no credential".
func TestBearerSyntax(t *testing.T) {
	p, err := ParsePolicy([]byte(`[{"type":"jwt","keys":[{"cluster":"east","secret":"`+testSecret+`"}]},{"type":"cidr","cidrs":["192.0.2.0/24"]}]`), nil,
		clock.NewFake(time.Unix(modelT0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	tok := forge(t, map[string]any{"alg": "HS256"}, map[string]any{"exp": modelT0 + 60}, "HS256", []byte(testSecret))
	for _, tc := range []struct {
		value string
		want  string // "east", "malformed" or "cidr"
	}{
		{"Bearer " + tok, "east"},
		{"bearer " + tok, "east"},
		{"BeArer   " + tok, "east"},
		{" \tBearer " + tok + " \t", "east"}, // HTTP optional whitespace around the value
		{"BeArer \f" + tok, "malformed"},     // the fuzz finding
		{"Bearer\t" + tok, "malformed"},
		{"Bearer " + tok + "\f", "malformed"},
		{"Bearer " + tok + " x", "malformed"},
		{"Bearer\v" + tok, "malformed"},
		{"Bearer", "malformed"},
		{"Bearerx " + tok, "malformed"},
		{"Basic dXNlcjpwYXNz", "cidr"},
		{"", "cidr"},
	} {
		v := p.Admit("192.0.2.7:1", http.Header{"Authorization": {tc.value}})
		got := "malformed"
		switch {
		case v.Admitted && v.Identity.Kind == LayerJWT:
			got = v.Identity.Cluster
		case v.Admitted:
			got = "cidr"
		case v.Cause != causeBearerSyntax.label:
			got = "denied " + v.Cause
		}
		if got != tc.want {
			t.Errorf("Authorization %q: %s (%+v), want %s", tc.value, got, v, tc.want)
		}
	}
}

// A name repeated in the claims or the header is refused: the verifier
// reads the last "exp", another parser the first.
func TestDuplicateTokenNamesRefused(t *testing.T) {
	p, err := ParsePolicy([]byte(`[{"type":"jwt","keys":[{"cluster":"east","secret":"`+testSecret+`"}]}]`), nil,
		clock.NewFake(time.Unix(modelT0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	exp := "1800000060"
	for name, parts := range map[string][2]string{
		"claims exp twice":  {`{"alg":"HS256"}`, `{"exp":1,"exp":` + exp + `}`},
		"claims iat twice":  {`{"alg":"HS256"}`, `{"exp":` + exp + `,"iat":1,"iat":1}`},
		"header alg twice":  {`{"alg":"none","alg":"HS256"}`, `{"exp":` + exp + `}`},
		"nested is allowed": {`{"alg":"HS256"}`, `{"exp":` + exp + `,"x":{"a":1},"y":{"a":1}}`},
	} {
		tok := forgeRaw([]byte(parts[0]), []byte(parts[1]), "HS256", []byte(testSecret))
		v := p.Admit("192.0.2.7:1", bearer(tok))
		if name == "nested is allowed" {
			if !v.Admitted {
				t.Errorf("%s: %+v, want admitted", name, v)
			}
			continue
		}
		if v.Admitted || v.Cause != causeDuplicateName.label {
			t.Errorf("%s: %+v, want refused as %s", name, v, causeDuplicateName.label)
		}
	}
}
