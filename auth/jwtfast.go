package auth

import (
	"bytes"
	"encoding/base64"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// maxSigBytes is room for an HS256 MAC (32 bytes) with slack; a longer
// signature cannot verify and is left to the full path to report.
const maxSigBytes = 64

// fastSegmentBytes bounds a decoded header or claims segment on the fast
// path (ours are under 150 bytes), so its buffer stays small and on the
// stack; larger segments take the full path.
const fastSegmentBytes = 512

// verifyFast is the first-seen path for the one token shape this service
// mints: header {"alg":"HS256"} with at most a string "typ", plain-ASCII
// member names, no repeats. It does what golang-jwt's ParseWithClaims does
// for that shape (strict base64url, the same claims decoding, the library's
// HS256 Verify for the MAC and its Validator for exp/nbf/iat/aud), minus
// the header map, segment slices and token object it builds per call.
//
// It only ever accepts. Anything outside that shape and every failure
// returns ok=false with no verdict, and the caller runs the full library
// path, so every rejection is classified by one code path. The
// differential fuzz target FuzzFastPathAgrees holds it to accepting
// exactly the tokens the full path accepts, with the same claims and key.
func (v *verifier) verifyFast(tok string) (int, *claims, bool) {
	head, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return -1, nil, false
	}
	payload, sigSeg, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sigSeg, '.') >= 0 {
		return -1, nil, false
	}
	enc := base64.RawURLEncoding.Strict()
	if enc.DecodedLen(len(head)) > fastSegmentBytes || enc.DecodedLen(len(payload)) > fastSegmentBytes || enc.DecodedLen(len(sigSeg)) > maxSigBytes {
		return -1, nil, false
	}
	var buf [fastSegmentBytes]byte
	n, err := enc.Decode(buf[:], []byte(head))
	if err != nil || !pinnedHeader(buf[:n]) {
		return -1, nil, false
	}
	n, err = enc.Decode(buf[:], []byte(payload))
	if err != nil {
		return -1, nil, false
	}
	body := bytes.Trim(buf[:n], " \t\r\n")
	// encoding/json validates the whole input before it hands the value
	// to claims.UnmarshalJSON, so this does too (validJSON agrees with
	// json.Valid, FuzzValidJSON); a payload that is not an object is left
	// to the library's handling of it.
	if len(body) == 0 || body[0] != '{' || !validJSON(body) || plainNamesRepeat(body) != walkDistinct {
		return -1, nil, false
	}
	// What claims.UnmarshalJSON does when its reflection-free decoder
	// handles the object; the encoding/json fallback is the full path's.
	c := new(claims)
	if handled, err := c.decodePlain(body); !handled || err != nil || c.Exp == nil {
		return -1, nil, false
	}
	var sigBuf [maxSigBytes]byte
	n, err = enc.Decode(sigBuf[:], []byte(sigSeg))
	if err != nil {
		return -1, nil, false
	}
	sig := sigBuf[:n]
	signing := tok[:len(head)+1+len(payload)]
	keyIdx := 0
	if len(v.keys) > 1 {
		keyIdx = -1
		for i, k := range v.keys {
			if macMatches(k.secret, signing, sig) {
				keyIdx = i
				break
			}
		}
		if keyIdx < 0 {
			return -1, nil, false
		}
	}
	if jwt.SigningMethodHS256.Verify(signing, sig, []byte(v.keys[keyIdx].secret)) != nil {
		return -1, nil, false
	}
	if v.validator.Validate(c) != nil {
		return -1, nil, false
	}
	return keyIdx, c, true
}

// pinnedHeader reports whether b is a JOSE header this path may accept:
// a JSON object whose members are "alg" (the string "HS256", required)
// and optionally "typ" (a string), each once, names and values plain
// printable ASCII without escapes. That grammar is a subset of JSON in
// which a string's bytes are its value, so the map golang-jwt would decode
// holds exactly these members: no "none", no kid, no crit/jku/jwk/x5u.
func pinnedHeader(b []byte) bool {
	var sawAlg, sawTyp bool
	w := plainMembers{b: b}
	for {
		name, raw, step := w.next()
		switch step {
		case memberEnd:
			return sawAlg
		case memberUnsure:
			return false
		}
		val, end, ok := plainString(raw, 0)
		if !ok || end != len(raw) {
			return false
		}
		switch string(name) {
		case "alg":
			if sawAlg || string(val) != "HS256" {
				return false
			}
			sawAlg = true
		case "typ":
			if sawTyp {
				return false
			}
			sawTyp = true
		default:
			return false
		}
	}
}

// plainString reads a JSON string of printable ASCII without escapes at
// b[i:], returning its contents and the index past the closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, 0, false
		}
	}
	return nil, 0, false
}
