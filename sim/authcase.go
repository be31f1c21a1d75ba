package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

// AuthCase is one generated ingress request: a policy, the transport peer,
// the headers, and the verifier's clock reading.
type AuthCase struct {
	Policy PolicySpec
	Peer   string
	Header http.Header
	Now    time.Time
	// Token describes how the bearer was made, for failure messages (it
	// never holds the secret).
	Token string
}

// AuthDecision is what an implementation under test decided.
type AuthDecision struct {
	Admitted bool
	Layer    int    // 1-based deciding layer; 0 = default deny
	Identity string // jwt: key label; cidr: "cidr"
}

// Admitter decides a case. RealAdmitter runs the auth package; canaries
// substitute broken ones.
type Admitter func(c AuthCase) (AuthDecision, error)

// RealAdmitter parses the case's policy with the real auth package on a
// fake clock reading c.Now and asks it.
func RealAdmitter(c AuthCase) (AuthDecision, error) {
	clk := clock.NewFake(c.Now)
	var p *auth.Policy
	if len(c.Policy.Layers) == 0 {
		p = auth.LoopbackOnly(clk)
	} else {
		var err error
		p, err = auth.ParsePolicy(c.Policy.JSON(), vfs.NewMemFS(), clk)
		if err != nil {
			return AuthDecision{}, fmt.Errorf("policy %s rejected: %w", c.Policy, err)
		}
	}
	v := p.Admit(c.Peer, c.Header)
	if v.Admitted != (v.Code == auth.CodeOK) {
		return AuthDecision{}, fmt.Errorf("verdict is inconsistent: admitted=%v code=%v", v.Admitted, v.Code)
	}
	d := AuthDecision{Admitted: v.Admitted, Layer: v.Layer}
	switch v.Identity.Kind {
	case auth.LayerJWT:
		d.Identity = v.Identity.Cluster
	case auth.LayerCIDR:
		d.Identity = "cidr"
	}
	return d, nil
}

// CheckAdmission is property 5: the implementation admits a request iff
// the reference model does, through the same layer and as the same identity.
func CheckAdmission(c AuthCase, admit Admitter) error {
	got, err := admit(c)
	if err != nil {
		return err
	}
	want := ModelAdmit(c.Policy, c.Peer, c.Header, c.Now)
	mismatch := got.Admitted != want.Admitted
	if !mismatch && got.Admitted && len(c.Policy.Layers) > 0 {
		mismatch = got.Layer != want.Layer+1 || got.Identity != want.Identity
	}
	if mismatch {
		return fmt.Errorf("default-deny: policy %s, peer %s, token %s, authorization %q, verifier at %s:\n  implementation: %+v\n  model:          %+v",
			c.Policy, c.Peer, c.Token, redactBearer(c.Header.Get("Authorization")), c.Now.Format(time.RFC3339Nano), got, want)
	}
	return nil
}

// redactBearer keeps a token's header and claims readable in a failure
// message but drops its signature.
func redactBearer(v string) string {
	for i := len(v) - 1; i >= 0; i-- {
		if v[i] == '.' {
			return v[:i] + ".<sig>"
		}
	}
	return v
}

// RawToken builds a compact JWS from a header and claims, signed with
// HMAC-SHA256 or -SHA512 (alg decides; "none"-like algs get an empty
// signature). It exists to forge what a well-behaved minter never makes.
func RawToken(header, claims map[string]any, secret string) (string, error) {
	hj, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(hj) + "." + enc.EncodeToString(cj)
	var h func() hash.Hash
	switch header["alg"] {
	case "HS256":
		h = sha256.New
	case "HS512":
		h = sha512.New
	default:
		return signing + ".", nil
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil)), nil
}

// Tamper replaces a token's claims while keeping its signature: a forgery.
func Tamper(tok string, claims map[string]any) (string, error) {
	var parts [3]string
	n := 0
	start := 0
	for i := 0; i <= len(tok); i++ {
		if i == len(tok) || tok[i] == '.' {
			if n == 3 {
				return "", errors.New("token has more than three segments")
			}
			parts[n] = tok[start:i]
			n++
			start = i + 1
		}
	}
	if n != 3 {
		return "", errors.New("token does not have three segments")
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(cj) + "." + parts[2], nil
}
