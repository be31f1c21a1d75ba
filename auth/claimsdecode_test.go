package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

var claimsCases = []string{
	`{"exp":1767225600,"iat":1767222000,"aud":"store","sub":"east"}`,
	`{"EXP":1767225600.5,"Nbf":null,"aud":["a","b"]}`,
	`{"exp":1,"Exp":null}`,
	`{"exp":"1767225600"}`,
	`{"exp":{"a":1},"iat":2}`,
	`{"iat":[1],"exp":3}`,
	`{"exp":-1}`,
	`{"exp":1e400}`,
	`{"exp":true}`,
	`{"aud":null}`,
	`{"e\u0078p":5}`,
	"{\"\xc5\xbfub\":1}",
	`{}`,
	` { "x" : { "exp" : 1 } , "exp" : 2 } `,
	`[1,2]`,
	`"exp"`,
	`null`,
}

// decodeBoth decodes b as golang-jwt does (json.Unmarshal into *claims,
// which uses the in-place decoder) and with encoding/json's struct
// decoding, and fails the test if they differ.
func decodeBoth(t *testing.T, b []byte) {
	var fast, std claims
	errFast := json.Unmarshal(b, &fast)
	errStd := json.Unmarshal(b, (*stdClaims)(&std))
	if (errFast == nil) != (errStd == nil) {
		t.Fatalf("%q: in-place error %v, encoding/json error %v", b, errFast, errStd)
	}
	for _, sentinel := range []error{errClaimRange, jwt.ErrInvalidType} {
		if errors.Is(errFast, sentinel) != errors.Is(errStd, sentinel) {
			t.Fatalf("%q: in-place error %v, encoding/json error %v", b, errFast, errStd)
		}
	}
	if errFast != nil {
		return
	}
	same := func(a, b *strictDate) bool { return (a == nil) == (b == nil) && (a == nil || a.nd.Equal(b.nd.Time)) }
	if !same(fast.Exp, std.Exp) || !same(fast.Nbf, std.Nbf) || !same(fast.Iat, std.Iat) || !bytes.Equal(fast.Aud, std.Aud) {
		t.Fatalf("%q: in-place %+v, encoding/json %+v", b, fast, std)
	}
}

func TestClaimsDecodeMatchesEncodingJSON(t *testing.T) {
	for _, c := range claimsCases {
		decodeBoth(t, []byte(c))
	}
}

// FuzzClaimsDecode: for any input the in-place claims decoder gives the
// claims and the kind of error encoding/json's struct decoding gives.
func FuzzClaimsDecode(f *testing.F) {
	for _, c := range claimsCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxTokenBytes {
			return
		}
		decodeBoth(t, []byte(s))
	})
}
