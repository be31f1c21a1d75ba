package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

func scopePolicy(t *testing.T, keyExtra string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(`[{"type":"jwt","keys":[{"cluster":"east","secret":"`+testSecret+`"`+keyExtra+`}]},
		{"type":"cidr","cidrs":["10.0.0.0/8"],"admin":false},{"type":"cidr","cidrs":["127.0.0.1"]}]`), nil, clock.NewFake(time.Unix(modelT0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Read scopes and the admin flag reach the identity; omitted, a key reads
// every cluster (the behaviour before scopes) and is not admin.
func TestKeyScopesReachIdentity(t *testing.T) {
	tok := func() string {
		return forge(t, map[string]any{"alg": "HS256"}, map[string]any{"exp": modelT0 + 60}, "HS256", []byte(testSecret))
	}
	for _, tc := range []struct {
		extra     string
		wantRead  []string
		wantAdmin bool
	}{
		{``, nil, false},
		{`,"read":["*"]`, nil, false},
		{`,"read":["own"]`, []string{"east"}, false},
		{`,"read":["west","own","west"],"admin":true`, []string{"east", "west"}, true},
	} {
		v := scopePolicy(t, tc.extra).Admit("192.0.2.1:1", bearer(tok()))
		if !v.Admitted {
			t.Fatalf("%s: %+v", tc.extra, v)
		}
		got := v.Identity.Read.Clusters()
		if strings.Join(got, ",") != strings.Join(tc.wantRead, ",") || v.Identity.Admin != tc.wantAdmin {
			t.Errorf("key%s: read %v admin %v, want read %v admin %v", tc.extra, got, v.Identity.Admin, tc.wantRead, tc.wantAdmin)
		}
		if tc.wantRead == nil && (!v.Identity.Read.Allows("anything") || !v.Identity.Read.All()) {
			t.Errorf("key%s: default scope does not read every cluster", tc.extra)
		}
		if tc.wantRead != nil && (v.Identity.Read.Allows("north") || !v.Identity.Read.Allows("east")) {
			t.Errorf("key%s: scope %q allows north or refuses east", tc.extra, v.Identity.Read)
		}
	}
	p := scopePolicy(t, ``)
	if v := p.Admit("10.1.1.1:1", nil); !v.Admitted || v.Identity.Admin {
		t.Errorf(`cidr layer with "admin": false: %+v, want admitted without admin`, v)
	}
	if v := p.Admit("127.0.0.1:1", nil); !v.Admitted || !v.Identity.Admin {
		t.Errorf("cidr layer without admin field: %+v, want admin (the default)", v)
	}
	if !p.OwnsNamespace("east") || p.OwnsNamespace("west") {
		t.Error("OwnsNamespace: want east (a key label) only")
	}
}

func TestBadScopesRefused(t *testing.T) {
	for extra, want := range map[string]string{
		`,"read":[]`:                   `"read": is empty`,
		`,"read":["*","east"]`:         `"*" (every cluster) cannot be combined`,
		`,"read":["no/slash"]`:         `entry 1: want "own", "*" or a cluster label`,
		`,"read":"own"`:                `"keys.read": got JSON string, want a list`,
		`,"admin":"yes"`:               `"keys.admin": got JSON string, want true or false`,
		`,"Read":["own"]`:              `unknown field "Read"`,
		`,"read":["own"],"read":["*"]`: `appears twice`,
	} {
		_, err := ParsePolicy([]byte(`[{"type":"jwt","keys":[{"cluster":"east","secret":"`+testSecret+`"`+extra+`}]}]`), nil, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("key%s: err %v, want one containing %q", extra, err, want)
		}
	}
	for field, want := range map[string]string{
		`"max_lifetime":"0s"`:    `"max_lifetime": 0s is outside [1s, 720h0m0s]`,
		`"max_lifetime":"1000h"`: `outside`,
		`"max_lifetime":"soon"`:  `is not a duration`,
	} {
		_, err := ParsePolicy([]byte(`[{"type":"jwt",`+field+`,"keys":[{"cluster":"east","secret":"`+testSecret+`"}]}]`), nil, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one containing %q", field, err, want)
		}
	}
}
