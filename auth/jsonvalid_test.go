package auth

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

var jsonValidCases = []string{
	`{}`, ` {"exp":1800003600,"aud":["a","b"],"x":{"y":null,"z":[true,false]}} `, `[]`, `"s"`, `0`, `-0.5e+3`, `1E9`,
	`{"a":"\u00e9\n\"\\\/"}`, "{\"a\":\"\xff\"}", `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`,
	`{"a":tru}`, `{"a":nul}`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `{,}`, `{"a":"\x"}`, `{"a":"\u12G4"}`, `{"a":"\u12"}`,
	"{\"a\":\"\x01\"}", `{"a":1}x`, `{"a":1}{}`, ``, ` `, `{`, `"`, `[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]`,
	`{"a":1e+}`, `-`, `--1`, `+1`, `{"a":0x10}`, `{"a":Infinity}`, "{\"a\":1}\t\r\n",
}

// TestValidJSON pins validJSON to encoding/json.Valid on hand-picked
// edges of the grammar; FuzzValidJSON explores the rest.
func TestValidJSON(t *testing.T) {
	for _, s := range jsonValidCases {
		checkValidJSON(t, s)
	}
}

func checkValidJSON(t *testing.T, s string) {
	t.Helper()
	got, want := validJSON([]byte(s)), json.Valid([]byte(s))
	if got == want {
		return
	}
	// Only deeper nesting than validJSON follows may differ, and only
	// towards "invalid" (the full path then decides).
	if want && !got && strings.Count(s, "[")+strings.Count(s, "{") > maxFastDepth {
		return
	}
	t.Fatalf("validJSON(%q) = %v, encoding/json.Valid = %v", s, got, want)
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonValidCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxTokenBytes {
			return
		}
		checkValidJSON(t, s)
	})
}

// FuzzSmallInteger: the digit-run shortcut gives exactly strconv's float.
func FuzzSmallInteger(f *testing.F) {
	for _, s := range []string{"0", "1800003600", "999999999999999", "9999999999999999", "007", "1e3", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := smallInteger([]byte(s))
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || got != want {
			t.Fatalf("smallInteger(%q) = %v, strconv.ParseFloat = %v, %v", s, got, want, err)
		}
	})
}
