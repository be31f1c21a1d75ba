package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"net/http"
)

// forge builds a compact JWS by hand: base64url(header) "." base64url(payload)
// "." base64url(HMAC(key, signing input)), hashed as alg says. It is
// deliberately independent of golang-jwt and of Mint, so the tests check the
// verifier against tokens it did not produce.
func forge(t fataler, header, payload map[string]any, alg string, key []byte) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return forgeRaw(hb, pb, alg, key)
}

// fataler is the part of testing.TB that rapid.T also has.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

func forgeRaw(header, payload []byte, alg string, key []byte) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	var h func() hash.Hash
	switch alg {
	case "HS384":
		h = sha512.New384
	case "HS512":
		h = sha512.New
	case "":
		return signing + "."
	default:
		h = sha256.New
	}
	m := hmac.New(h, key)
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

// hmacValid is the independent check of "this token's MAC verifies under
// key": HMAC-SHA256 over the first two segments, compared in constant time.
func hmacValid(tok string, key []byte) bool {
	dot := -1
	for i := len(tok) - 1; i >= 0; i-- {
		if tok[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tok[:dot]))
	return hmac.Equal(m.Sum(nil), sig)
}

func bearer(tok string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	return h
}
