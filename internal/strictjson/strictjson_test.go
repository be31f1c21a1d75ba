package strictjson

import (
	"strings"
	"testing"
)

// TestProblemNeverQuotesInputAtLength: decoding errors describe where and
// what, and shorten any quoted input, since the input may hold a secret.
func TestProblemNeverQuotesInputAtLength(t *testing.T) {
	var v struct {
		A string `json:"a"`
	}
	long := strings.Repeat("s", 40)
	for _, in := range []string{`{"` + long + `":1}`, `{"a":` + long + `}`, `{"a":1}`, `{"a":"` + long} {
		err := DecodeOne([]byte(in), &v)
		if err == nil {
			t.Fatalf("%s: accepted", in)
		}
		if strings.Contains(err.Error(), long[:30]) {
			t.Errorf("%s: error quotes the input: %v", in, err)
		}
		if err := CheckObject([]byte(in), []string{"a"}); err != nil && strings.Contains(err.Error(), long[:30]) {
			t.Errorf("%s: CheckObject quotes the input: %v", in, err)
		}
	}
}

func TestCheckObject(t *testing.T) {
	allowed := []string{"cluster", "secret"}
	for _, tc := range []struct{ in, want string }{
		{`{"cluster":"east","secret":"x"}`, ""},
		{`{}`, ""},
		{`  {"cluster":"east"}  `, ""},
		{`{"Cluster":"east"}`, `unknown field "Cluster" (allowed: cluster, secret)`},
		{`{"cluster":"a","cluster":"b"}`, `field "cluster" appears twice`},
		{`{"cluster":"a"} {}`, "unexpected data after the JSON value"},
		{`["cluster"]`, "not a JSON object"},
		{`{"cluster":`, "unexpected end of input"},
		{`{"cluster" "a"}`, "malformed JSON at byte"},
		{``, "unexpected end of input"},
	} {
		err := CheckObject([]byte(tc.in), allowed)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

// TestProblemNamesJSONKinds: a type mismatch says what to write, in JSON's
// words, not Go's.
func TestProblemNamesJSONKinds(t *testing.T) {
	var v struct {
		S string         `json:"s"`
		L []string       `json:"l"`
		O struct{}       `json:"o"`
		B bool           `json:"b"`
		N int            `json:"n"`
		M map[string]int `json:"m"`
		P *string        `json:"p"`
	}
	for in, want := range map[string]string{
		`{"s":1}`:   `field "s": got JSON number, want a string`,
		`{"l":"x"}`: `field "l": got JSON string, want a list`,
		`{"o":[]}`:  `field "o": got JSON array, want an object`,
		`{"b":1}`:   `field "b": got JSON number, want true or false`,
		`{"n":"1"}`: `field "n": got JSON string, want a number`,
		`{"m":1}`:   `field "m": got JSON number, want an object`,
		`{"p":1}`:   `field "p": got JSON number, want a string`,
		`{"x":1}`:   `unknown field "x"`,
	} {
		err := DecodeOne([]byte(in), &v)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}
