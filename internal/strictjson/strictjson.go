// Package strictjson decodes configuration JSON strictly and describes its
// errors without quoting the input.
//
// Policy and peers files hold secrets or sit next to them, and an operator
// may paste a key into the wrong field. encoding/json's own messages can
// quote fragments of the input, and its decoder accepts "Secret" for
// "secret" and keeps the last of two fields with one name, which lets a
// file say two things at once. Everything here refuses those and names
// problems by position, field and type only.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// CheckObject reports the first problem with data as one JSON object whose
// field names are all in allowed (compared exactly), none given twice, with
// nothing but whitespace after it.
func CheckObject(data []byte, allowed []string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return errors.New(Problem(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errors.New(Problem(err))
		}
		name, _ := tok.(string)
		if !contains(allowed, name) {
			return fmt.Errorf("unknown field %s (allowed: %s)", QuoteShort(name), strings.Join(allowed, ", "))
		}
		if seen[name] {
			return fmt.Errorf("field %q appears twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("field %q: %s", name, Problem(err))
		}
	}
	if _, err := dec.Token(); err != nil {
		return errors.New(Problem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// DecodeOne decodes exactly one JSON value into v, refusing unknown fields
// and anything but whitespace after the value.
func DecodeOne(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(Problem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// Problem describes a decoding error by position, field and type only.
func Problem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q: got JSON %s, want %s", te.Field, te.Value, kind(te.Type))
		}
		return fmt.Sprintf("got JSON %s, want %s", te.Value, kind(te.Type))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// DisallowUnknownFields. CheckObject normally reports these
		// first; the name is shortened like any other quoted input.
		name, uerr := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		if uerr != nil {
			return "unknown field"
		}
		return "unknown field " + QuoteShort(name)
	default:
		return "malformed JSON"
	}
}

// QuoteShort quotes s for an error message, cut to a length that cannot
// carry a whole secret.
func QuoteShort(s string) string {
	const limit = 24
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// kind names a Go type as the JSON a user should have written.
func kind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return t.String()
	}
}

func contains(list []string, s string) bool {
	for _, a := range list {
		if a == s {
			return true
		}
	}
	return false
}
