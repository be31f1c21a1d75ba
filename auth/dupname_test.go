package auth

import (
	"encoding/base64"
	"testing"
)

// memberNameCases are JSON texts whose repeated-name verdict the in-place
// walk must agree with encoding/json's tokenizer on.
var memberNameCases = []struct {
	json string
	dup  bool
}{
	{`{"alg":"HS256","typ":"JWT"}`, false},
	{`{"exp":1,"exp":9e9}`, true},
	{` { "a" : [1,{"a":2}], "b":{"c":"}\"a"}, "a" : null } `, true},
	{`{"a":[1,{"a":2}],"b":{"a":"x"}}`, false},
	{`{"e\u0078p":1,"exp":2}`, true},
	{`{"exp":1,"e\u0078p":2}`, true},
	{"{\"\xff\":1,\"\xfe\":2}", true}, // both decode to U+FFFD
	{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"c":19}`, true},
	{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18}`, false},
	{`{}`, false},
	{`[]`, false},
	{`{"a":1,"a"`, true},
	{`{"a":[}, "a":1}`, false},
	{`{"a":1 "a":2}`, false},
}

func TestRepeatedNamesMatchTheTokenizer(t *testing.T) {
	for _, c := range memberNameCases {
		if got := dupMember([]byte(c.json)); got != c.dup {
			t.Fatalf("tokenizer on %q = %v, case says %v", c.json, got, c.dup)
		}
		enc := base64.RawURLEncoding.EncodeToString([]byte(c.json))
		if got := repeatsName(enc + "." + enc + ".sig"); got != c.dup {
			t.Errorf("repeatsName(%q) = %v, want %v", c.json, got, c.dup)
		}
		if plainNamesRepeat([]byte(c.json)) == walkDistinct && c.dup {
			t.Errorf("in-place walk calls %q distinct; it repeats a name", c.json)
		}
	}
}

// TestRepeatedNameWalkDoesNotAllocate: the in-place walk is what keeps the
// first-seen token check cheap.
func TestRepeatedNameWalkDoesNotAllocate(t *testing.T) {
	b := []byte(`{"aud":["store","x"],"exp":1767225600,"iat":1767222000,"nbf":1767222000,"sub":"east"}`)
	if n := testing.AllocsPerRun(100, func() {
		if plainNamesRepeat(b) != walkDistinct {
			t.Fatal("not distinct")
		}
	}); n != 0 {
		t.Errorf("%v allocations per walk, want 0", n)
	}
}

// FuzzMemberNames: the in-place walk never calls an object distinct when
// encoding/json's tokenizer finds a repeated top-level name.
func FuzzMemberNames(f *testing.F) {
	for _, c := range memberNameCases {
		f.Add(c.json)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxTokenBytes {
			return
		}
		if plainNamesRepeat([]byte(s)) == walkDistinct && dupMember([]byte(s)) {
			t.Fatalf("walk says distinct, tokenizer finds a repeat in %q", s)
		}
	})
}
