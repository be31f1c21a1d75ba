package sim

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// PolicySpec is a policy as the simulation generates it: rendered to the
// FINELOG_AUTH_POLICY JSON for the real parser and interpreted directly by
// the reference model. An empty Layers list means "no policy configured".
type PolicySpec struct {
	Layers []LayerSpec
}

// LayerSpec is one policy layer.
type LayerSpec struct {
	Kind     string // "cidr" or "jwt"
	CIDRs    []string
	Keys     []KeySpec
	Leeway   time.Duration // < 0: omitted, the documented default (60 s)
	Audience string
}

// KeySpec is one jwt key: its cluster label and raw secret bytes.
type KeySpec struct {
	Cluster string
	Secret  string
}

// DefaultLeeway is the jwt layer's leeway when the policy gives none.
const DefaultLeeway = 60 * time.Second

// JSON renders the policy the way an operator writes FINELOG_AUTH_POLICY.
func (p PolicySpec) JSON() []byte {
	var layers []map[string]any
	for _, l := range p.Layers {
		switch l.Kind {
		case "cidr":
			layers = append(layers, map[string]any{"type": "cidr", "cidrs": l.CIDRs})
		case "jwt":
			var keys []map[string]any
			for _, k := range l.Keys {
				keys = append(keys, map[string]any{"cluster": k.Cluster, "secret": k.Secret})
			}
			m := map[string]any{"type": "jwt", "keys": keys}
			if l.Leeway >= 0 {
				m["leeway"] = l.Leeway.String()
			}
			if l.Audience != "" {
				m["audience"] = l.Audience
			}
			layers = append(layers, m)
		}
	}
	b, err := json.Marshal(layers)
	if err != nil {
		panic(err) // only strings and slices: cannot fail
	}
	return b
}

// String is a readable, secret-free rendering for traces and logs.
func (p PolicySpec) String() string {
	if len(p.Layers) == 0 {
		return "<no policy: loopback only>"
	}
	var parts []string
	for _, l := range p.Layers {
		switch l.Kind {
		case "cidr":
			parts = append(parts, "cidr"+fmt.Sprint(l.CIDRs))
		case "jwt":
			var ks []string
			for _, k := range l.Keys {
				ks = append(ks, fmt.Sprintf("%s(secret#%s)", k.Cluster, secretTag(k.Secret)))
			}
			parts = append(parts, fmt.Sprintf("jwt%v leeway=%v aud=%q", ks, l.Leeway, l.Audience))
		}
	}
	return strings.Join(parts, " → ")
}

// secretTag names a secret in logs without revealing it.
func secretTag(s string) string {
	h := sha256.Sum256([]byte(s))
	return fmt.Sprintf("%x", h[:3])
}

// ModelVerdict is the reference model's decision.
type ModelVerdict struct {
	Admitted bool
	// Layer is the index of the deciding layer, -1 when no layer decided
	// (nothing matched) or there is no policy.
	Layer int
	// Identity: the key's cluster label for jwt; "cidr" for an address match
	// (the exact spelling of a cidr identity is the implementation's).
	Identity string
	Why      string
}

// ModelAdmit is the reference model of default-deny ingress, written from
// the policy's specification (DESIGN.md "Auth", issue 4) and independent of
// the auth package: layers in order, the first admit wins, a jwt layer with
// no bearer falls through, a bad bearer is rejected at once, nothing admitted
// is denied, no policy is loopback only.
func ModelAdmit(p PolicySpec, remoteAddr string, h http.Header, now time.Time) ModelVerdict {
	ip, ipOK := peerIP(remoteAddr)
	bearer, hasBearer := bearerToken(h)
	if len(p.Layers) == 0 {
		if hasBearer {
			return ModelVerdict{Layer: -1, Why: "no policy, bearer presented"}
		}
		if ipOK && ip.IsLoopback() {
			return ModelVerdict{Admitted: true, Layer: -1, Identity: "cidr", Why: "no policy, loopback peer"}
		}
		return ModelVerdict{Layer: -1, Why: "no policy, not loopback"}
	}
	for i, l := range p.Layers {
		switch l.Kind {
		case "cidr":
			// A presented bearer is always verified: cidr layers admit
			// only requests without one.
			if !ipOK || hasBearer {
				continue
			}
			for _, c := range l.CIDRs {
				if prefixContains(c, ip) {
					return ModelVerdict{Admitted: true, Layer: i, Identity: "cidr", Why: "peer in " + c}
				}
			}
		case "jwt":
			if !hasBearer {
				continue
			}
			id, why := modelVerify(l, bearer, now)
			if id == "" {
				return ModelVerdict{Layer: i, Why: "bad bearer: " + why}
			}
			return ModelVerdict{Admitted: true, Layer: i, Identity: id, Why: "jwt " + id}
		default:
			return ModelVerdict{Layer: i, Why: "unknown layer"}
		}
	}
	return ModelVerdict{Layer: -1, Why: "no layer admitted"}
}

func peerIP(remoteAddr string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func prefixContains(cidr string, ip netip.Addr) bool {
	var p netip.Prefix
	if strings.Contains(cidr, "/") {
		var err error
		p, err = netip.ParsePrefix(cidr)
		if err != nil {
			return false
		}
	} else {
		a, err := netip.ParseAddr(cidr)
		if err != nil {
			return false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Contains(ip)
}

// bearerToken reads "Authorization: Bearer <t>" only. The scheme is
// case-insensitive (RFC 6750 §2.1 / RFC 7235 §2.1).
func bearerToken(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	if v == "" {
		return "", false
	}
	v = strings.Trim(v, " \t")
	if len(v) < 6 || !strings.EqualFold(v[:6], "bearer") {
		// Some other scheme: not a bearer token, so a jwt layer has
		// nothing to check and falls through.
		return "", false
	}
	// RFC 6750: "Bearer", one or more spaces, the token, nothing else.
	// Anything else naming the scheme is a bad bearer ("" never verifies).
	if len(v) == 6 || v[6] != ' ' {
		return "", true
	}
	return strings.TrimLeft(v[7:], " "), true
}

// modelVerify returns the matched key's cluster label, or "" and why not.
func modelVerify(l LayerSpec, tok string, now time.Time) (string, string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", "not three segments"
	}
	hdrJSON, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return "", "header encoding"
	}
	var hdr map[string]any
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		return "", "header json"
	}
	if alg, _ := hdr["alg"].(string); alg != "HS256" {
		return "", fmt.Sprintf("alg %v", hdr["alg"])
	}
	for _, bad := range []string{"crit", "jku", "jwk", "x5u"} {
		if _, ok := hdr[bad]; ok {
			return "", "header " + bad
		}
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil {
		return "", "signature encoding"
	}
	label := ""
	for _, k := range l.Keys {
		m := hmac.New(sha256.New, []byte(k.Secret))
		m.Write([]byte(parts[0] + "." + parts[1]))
		if hmac.Equal(m.Sum(nil), sig) {
			label = k.Cluster
			break
		}
	}
	if label == "" {
		return "", "signature matches no key"
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return "", "payload encoding"
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return "", "payload json"
	}
	leeway := l.Leeway
	if leeway < 0 {
		leeway = DefaultLeeway
	}
	exp, ok, bad := numericDate(claims, "exp")
	if bad || !ok {
		return "", "exp missing or malformed"
	}
	if !now.Before(exp.Add(leeway)) {
		return "", "expired"
	}
	if nbf, ok, bad := numericDate(claims, "nbf"); bad {
		return "", "nbf malformed"
	} else if ok && now.Before(nbf.Add(-leeway)) {
		return "", "not yet valid"
	}
	if iat, ok, bad := numericDate(claims, "iat"); bad {
		return "", "iat malformed"
	} else if ok && now.Before(iat.Add(-leeway)) {
		return "", "issued in the future"
	}
	if l.Audience != "" && !hasAudience(claims["aud"], l.Audience) {
		return "", "audience"
	}
	return label, ""
}

// numericDate reads a JWT NumericDate claim: present, and malformed when it
// is not a JSON number.
func numericDate(claims map[string]any, name string) (t time.Time, present, malformed bool) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, false
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, true, true
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, true, true
	}
	// Dates before 1970 or after 9999 are not times but mistakes or
	// attacks on float conversion; a fractional date keeps its fraction.
	if f < 0 || f > 253402300799 {
		return time.Time{}, true, true
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, false
}

func hasAudience(v any, want string) bool {
	switch a := v.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}
