package auth

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/strictjson"
	"github.com/finelog/finelog/internal/vfs"
)

// Limits on policy contents. They exist so a typo cannot silently turn the
// gate into something much weaker (a ten-minute leeway) or much costlier.
const (
	// DefaultMaxLifetime is the longest token lifetime (exp - iat, or
	// exp - now without iat) a jwt layer accepts unless it sets
	// "max_lifetime": the longest a token can be minted for.
	DefaultMaxLifetime = MaxTokenTTL
	// DefaultLeeway is the clock-skew allowance of a jwt layer that does not
	// set "leeway".
	DefaultLeeway = 60 * time.Second
	// MaxLeeway bounds "leeway": exp stops meaning anything past a few
	// minutes of slack.
	MaxLeeway = 5 * time.Minute
	// maxPolicyBytes bounds the policy document.
	maxPolicyBytes = 1 << 20
	maxLabelBytes  = 128
	maxAudience    = 256
)

// EnvPolicy is the environment variable holding the policy JSON.
const EnvPolicy = "FINELOG_AUTH_POLICY"

// Layer types.
const (
	LayerCIDR = "cidr"
	LayerJWT  = "jwt"
)

// Policy is a parsed, validated ingress policy: an ordered list of layers.
// It is immutable after construction and safe for concurrent use.
type Policy struct {
	layers []*layer
	clk    clock.Clock
	hasJWT bool
}

// layer is one entry of the policy. Exactly one of the type-specific parts
// is used, chosen by typ.
type layer struct {
	typ string

	// cidr; names[i] is prefixes[i].String(), kept so that an admit does
	// not format (and allocate) on the hot path.
	prefixes []netip.Prefix
	names    []string

	// admin: a cidr layer's peers reach /metrics and /debug/*.
	admin bool

	// jwt
	keys        []jwtKey
	leeway      time.Duration
	audience    string
	maxLifetime time.Duration
	verifier    *verifier
}

// jwtKey is one configured HMAC key. file is kept only so MarshalJSON can
// describe where the key came from; the secret itself never leaves.
type jwtKey struct {
	cluster string
	secret  Secret
	file    string
	read    ReadScope
	admin   bool
}

// LoopbackOnly is the policy used when none is configured: admit
// 127.0.0.0/8 and ::1 (a v4-mapped loopback peer matches the v4 rule).
func LoopbackOnly(clk clock.Clock) *Policy {
	if clk == nil {
		clk = clock.Real{}
	}
	l := &layer{typ: LayerCIDR, admin: true}
	l.addPrefix(netip.MustParsePrefix("127.0.0.0/8"))
	l.addPrefix(netip.MustParsePrefix("::1/128"))
	return &Policy{clk: clk, layers: []*layer{l}}
}

// Load builds the policy from FINELOG_AUTH_POLICY JSON (envValue) or a policy
// file path; exactly one may be set. With neither, the policy is
// LoopbackOnly. Errors name the source, the layer (1-based), its type and
// the field, never a secret.
func Load(envValue, policyFile string, fsys vfs.FS, clk clock.Clock) (*Policy, error) {
	if fsys == nil {
		fsys = vfs.OS{}
	}
	switch {
	case envValue != "" && policyFile != "":
		return nil, fmt.Errorf("both %s and policy file %s are set; set exactly one", EnvPolicy, policyFile)
	case envValue != "":
		p, err := ParsePolicy([]byte(envValue), fsys, clk)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvPolicy, err)
		}
		return p, nil
	case policyFile != "":
		data, err := readLimited(fsys, policyFile)
		if err != nil {
			return nil, fmt.Errorf("policy file %s: %w", policyFile, err)
		}
		p, err := ParsePolicy(data, fsys, clk)
		if err != nil {
			return nil, fmt.Errorf("policy file %s: %w", policyFile, err)
		}
		return p, nil
	default:
		return LoopbackOnly(clk), nil
	}
}

func readLimited(fsys vfs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("policy is larger than %d bytes", maxPolicyBytes)
	}
	return data, nil
}

// Wire shapes of the policy document. Field sets per layer type are
// enforced by strictjson.CheckObject before these are decoded.
type layerJSON struct {
	Type        string    `json:"type"`
	CIDRs       []string  `json:"cidrs,omitempty"`
	Keys        []keyJSON `json:"keys,omitempty"`
	Leeway      string    `json:"leeway,omitempty"`
	Audience    string    `json:"audience,omitempty"`
	MaxLifetime string    `json:"max_lifetime,omitempty"`
	// Admin (cidr layers): whether admitted peers reach /metrics and
	// /debug/*; unset means true.
	Admin *bool `json:"admin,omitempty"`
}

type keyJSON struct {
	Cluster    string   `json:"cluster"`
	Secret     *string  `json:"secret,omitempty"`
	SecretFile string   `json:"secret_file,omitempty"`
	Read       []string `json:"read,omitempty"`
	Admin      bool     `json:"admin,omitempty"`
}

var (
	cidrFields = []string{"type", "cidrs", "admin"}
	jwtFields  = []string{"type", "keys", "leeway", "audience", "max_lifetime"}
	keyFields  = []string{"cluster", "secret", "secret_file", "read", "admin"}
)

// ParsePolicy parses and validates a policy document: a JSON list of
// layers. secret_file paths are read through fsys; clk is the time source
// for token verification.
func ParsePolicy(data []byte, fsys vfs.FS, clk clock.Clock) (*Policy, error) {
	if fsys == nil {
		fsys = vfs.OS{}
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("policy is %d bytes, limit is %d", len(data), maxPolicyBytes)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("policy is empty; want a JSON list of layers such as [{\"type\":\"cidr\",\"cidrs\":[\"127.0.0.1\"]}]")
	}
	if trimmed[0] != '[' {
		return nil, errors.New("policy must be a JSON list of layers")
	}
	var raws []json.RawMessage
	if err := strictjson.DecodeOne(trimmed, &raws); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(raws) == 0 {
		return nil, errors.New("policy has no layers; an empty list would deny everything (omit the policy for loopback-only)")
	}
	p := &Policy{clk: clk}
	labels := map[string]int{} // cluster label → layer number
	for i, raw := range raws {
		n := i + 1
		l, err := parseLayer(n, raw, fsys, clk, labels)
		if err != nil {
			return nil, err
		}
		if l.typ == LayerJWT {
			p.hasJWT = true
		}
		p.layers = append(p.layers, l)
	}
	return p, nil
}

func parseLayer(n int, raw json.RawMessage, fsys vfs.FS, clk clock.Clock, labels map[string]int) (*layer, error) {
	var head struct {
		Type *string `json:"type"`
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("layer %d: must be a JSON object", n)
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("layer %d: field \"type\": %s", n, strictjson.Problem(err))
	}
	if head.Type == nil {
		return nil, fmt.Errorf("layer %d: missing field \"type\" (want %q or %q)", n, LayerCIDR, LayerJWT)
	}
	typ := *head.Type
	var allowed []string
	switch typ {
	case LayerCIDR:
		allowed = cidrFields
	case LayerJWT:
		allowed = jwtFields
	default:
		return nil, fmt.Errorf("layer %d: unknown type %s (want %q or %q)", n, strictjson.QuoteShort(typ), LayerCIDR, LayerJWT)
	}
	where := fmt.Sprintf("layer %d (%s)", n, typ)
	if err := strictjson.CheckObject(raw, allowed); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if typ == LayerJWT {
		// Key objects get the same exact-field check as layers, before the
		// decoder's own (case-insensitive) unknown-field check.
		var keyRaws struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(raw, &keyRaws); err != nil {
			return nil, fmt.Errorf("%s: %s", where, strictjson.Problem(err))
		}
		for j, kr := range keyRaws.Keys {
			if err := strictjson.CheckObject(kr, keyFields); err != nil {
				return nil, fmt.Errorf("%s: key %d: %w", where, j+1, err)
			}
		}
	}
	var lj layerJSON
	if err := strictjson.DecodeOne(raw, &lj); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	switch typ {
	case LayerCIDR:
		l, err := parseCIDRLayer(lj)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return l, nil
	case LayerJWT:
		l, err := parseJWTLayer(n, lj, fsys, clk, labels)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return l, nil
	}
	// Unreachable: the type switch above returned for every other type.
	return nil, fmt.Errorf("layer %d: unknown type", n)
}

func parseCIDRLayer(lj layerJSON) (*layer, error) {
	if len(lj.CIDRs) == 0 {
		return nil, errors.New("field \"cidrs\" is missing or empty; list at least one address or prefix")
	}
	l := &layer{typ: LayerCIDR, admin: lj.Admin == nil || *lj.Admin}
	seen := map[netip.Prefix]bool{}
	for i, s := range lj.CIDRs {
		p, err := parseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("field \"cidrs\" entry %d: %w", i+1, err)
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		l.addPrefix(p)
	}
	return l, nil
}

func (l *layer) addPrefix(p netip.Prefix) {
	l.prefixes = append(l.prefixes, p)
	l.names = append(l.names, p.String())
}

func parseJWTLayer(n int, lj layerJSON, fsys vfs.FS, clk clock.Clock, labels map[string]int) (*layer, error) {
	if len(lj.Keys) == 0 {
		return nil, errors.New("field \"keys\" is missing or empty; list at least one {\"cluster\":...,\"secret_file\":...}")
	}
	l := &layer{typ: LayerJWT, leeway: DefaultLeeway, audience: lj.Audience, maxLifetime: DefaultMaxLifetime}
	if lj.MaxLifetime != "" {
		d, err := time.ParseDuration(lj.MaxLifetime)
		if err != nil {
			return nil, fmt.Errorf("field \"max_lifetime\": %s is not a duration like \"24h\"", strictjson.QuoteShort(lj.MaxLifetime))
		}
		if d < time.Second || d > MaxTokenTTL {
			return nil, fmt.Errorf("field \"max_lifetime\": %v is outside [1s, %v]", d, MaxTokenTTL)
		}
		l.maxLifetime = d
	}
	if lj.Leeway != "" {
		d, err := time.ParseDuration(lj.Leeway)
		if err != nil {
			return nil, fmt.Errorf("field \"leeway\": %s is not a duration like \"60s\"", strictjson.QuoteShort(lj.Leeway))
		}
		if d < 0 || d > MaxLeeway {
			return nil, fmt.Errorf("field \"leeway\": %v is outside [0s, %v]", d, MaxLeeway)
		}
		l.leeway = d
	}
	if len(lj.Audience) > maxAudience {
		return nil, fmt.Errorf("field \"audience\" is %d bytes, limit is %d", len(lj.Audience), maxAudience)
	}
	for j, kj := range lj.Keys {
		if kj.Cluster == "" {
			return nil, fmt.Errorf("key %d: field \"cluster\" is required (the identity this key grants)", j+1)
		}
		if err := checkLabel(kj.Cluster); err != nil {
			return nil, fmt.Errorf("key %d: field \"cluster\": %w", j+1, err)
		}
		kw := fmt.Sprintf("key %q", kj.Cluster)
		if prev, dup := labels[kj.Cluster]; dup {
			return nil, fmt.Errorf("%s: duplicate key label (already used in layer %d); each label names one key", kw, prev)
		}
		labels[kj.Cluster] = n
		var k jwtKey
		k.cluster = kj.Cluster
		k.admin = kj.Admin
		read, err := parseReadScope(kj.Read, kj.Cluster)
		if err != nil {
			return nil, fmt.Errorf("%s: field \"read\": %w", kw, err)
		}
		k.read = read
		switch {
		case kj.Secret != nil && kj.SecretFile != "":
			return nil, fmt.Errorf("%s: fields \"secret\" and \"secret_file\" are both set; set exactly one", kw)
		case kj.Secret != nil:
			if err := checkSecretLen(len(*kj.Secret)); err != nil {
				return nil, fmt.Errorf("%s: field \"secret\": %w", kw, err)
			}
			k.secret = Secret(*kj.Secret)
		case kj.SecretFile != "":
			s, err := ReadSecretFile(fsys, kj.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("%s: field \"secret_file\": %w", kw, err)
			}
			k.secret = s
			k.file = kj.SecretFile
		default:
			return nil, fmt.Errorf("%s: one of \"secret\" or \"secret_file\" is required", kw)
		}
		// Two labels sharing one secret would make the identity of a
		// token ambiguous: whoever holds it could claim either cluster.
		for _, other := range l.keys {
			if len(other.secret) == len(k.secret) && subtle.ConstantTimeCompare(other.secret, k.secret) == 1 {
				return nil, fmt.Errorf("%s: same secret as key %q; every cluster needs its own key", kw, other.cluster)
			}
		}
		l.keys = append(l.keys, k)
	}
	l.verifier = newVerifier(l, clk)
	return l, nil
}

// CheckLabel reports whether s is a valid cluster label: what a jwt key's
// "cluster" may be, and what the server accepts as the cluster of rows a
// writer without a jwt identity names.
func CheckLabel(s string) error {
	if s == "" {
		return errors.New("label is empty")
	}
	return checkLabel(s)
}

// checkLabel keeps cluster labels to characters that are safe in a log
// line, a metric label and a header.
func checkLabel(s string) error {
	if len(s) > maxLabelBytes {
		return fmt.Errorf("label is %d bytes, limit is %d", len(s), maxLabelBytes)
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("label %s may use only letters, digits, '-', '_' and '.'", strictjson.QuoteShort(s))
		}
	}
	return nil
}

// parseCIDR accepts a prefix ("10.0.0.0/8", host bits are masked off) or a
// bare address (a host route). A v4-mapped v6 prefix of /96 or longer is rewritten to its v4 form,
// since peers are compared in unmapped form.
func parseCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("%s: zoned addresses are not supported", strictjson.QuoteShort(s))
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s is not a CIDR prefix like 10.0.0.0/8", strictjson.QuoteShort(s))
		}
		if p.Addr().Is4In6() && p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%s: a v4-mapped prefix must be /96 or longer; write the IPv4 prefix instead", strictjson.QuoteShort(s))
		}
		// Host bits are masked off, as net.ParseCIDR does; the canonical
		// form (MarshalJSON, `finelog policy check`) shows the result.
		p = p.Masked()
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s is not an IP address or CIDR prefix", strictjson.QuoteShort(s))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}

// MarshalJSON describes the policy in the input format, canonicalised
// (prefixes masked and deduplicated, leeway explicit), with inline secrets
// replaced by "[redacted]" and secret files named by path. It is safe to
// log and is what `finelog policy check` prints.
func (p *Policy) MarshalJSON() ([]byte, error) {
	out := make([]layerJSON, 0, len(p.layers))
	for _, l := range p.layers {
		lj := layerJSON{Type: l.typ}
		switch l.typ {
		case LayerCIDR:
			lj.CIDRs = append([]string(nil), l.names...)
			if !l.admin {
				lj.Admin = new(bool)
			}
		case LayerJWT:
			lj.Leeway = l.leeway.String()
			lj.Audience = l.audience
			lj.MaxLifetime = l.maxLifetime.String()
			for _, k := range l.keys {
				kj := keyJSON{Cluster: k.cluster, Read: k.read.Clusters(), Admin: k.admin}
				if k.file != "" {
					kj.SecretFile = k.file
				} else {
					r := redacted
					kj.Secret = &r
				}
				lj.Keys = append(lj.Keys, kj)
			}
		}
		out = append(out, lj)
	}
	return json.Marshal(out)
}

// String is the redacted JSON description.
func (p *Policy) String() string {
	b, err := p.MarshalJSON()
	if err != nil {
		return "<policy>"
	}
	return string(b)
}

// Layers reports the number of layers.
func (p *Policy) Layers() int { return len(p.layers) }
