package auth

import (
	"bytes"
	"encoding/json"
)

// stdClaims is claims without its UnmarshalJSON: encoding/json's own
// decoding of the struct, which the fast path below must agree with.
type stdClaims claims

// UnmarshalJSON decodes the claims object the way encoding/json decodes
// the struct (golang-jwt hands it the validated claims segment), without
// reflection when every member name is plain ASCII. encoding/json matches
// a name to a field exactly or else case-insensitively, sets a pointer
// field to nil on null, and otherwise calls the field's UnmarshalJSON with
// the raw value, stopping at the first error; so does this. Anything else
// is decoded by encoding/json itself.
func (c *claims) UnmarshalJSON(b []byte) error {
	orig := *c
	if ok, err := c.decodePlain(b); ok {
		return err
	}
	*c = orig
	return json.Unmarshal(b, (*stdClaims)(c))
}

// decodePlain reports whether it decoded b (and the decoding's error).
func (c *claims) decodePlain(b []byte) (bool, error) {
	w := plainMembers{b: b}
	for {
		name, raw, step := w.next()
		switch step {
		case memberEnd:
			return true, nil
		case memberUnsure:
			return false, nil
		}
		if err := c.set(name, raw); err != nil {
			return true, err
		}
	}
}

// set stores one member's raw value in the field its name selects.
func (c *claims) set(name, raw []byte) error {
	var date **strictDate
	var slot int
	switch {
	case fieldName(name, "exp"):
		date, slot = &c.Exp, 0
	case fieldName(name, "nbf"):
		date, slot = &c.Nbf, 1
	case fieldName(name, "iat"):
		date, slot = &c.Iat, 2
	case fieldName(name, "aud"):
		c.Aud = append(c.audBuf[:0:len(c.audBuf)], raw...)
		return nil
	default:
		return nil
	}
	if string(raw) == "null" {
		*date = nil
		return nil
	}
	// encoding/json allocates the pointer before calling UnmarshalJSON,
	// so a failed value leaves a zero date behind, as here.
	c.dates[slot] = strictDate{}
	*date = &c.dates[slot]
	return (*date).UnmarshalJSON(raw)
}

// fieldName is encoding/json's match of an ASCII member name to a field
// tag: exact, or equal under ASCII case folding.
func fieldName(name []byte, tag string) bool {
	return bytes.EqualFold(name, []byte(tag))
}
