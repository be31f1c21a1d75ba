package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"connectrpc.com/connect"
)

// Code is the class of a verdict. The zero value is a denial, so a Verdict
// that was never filled in does not admit.
type Code int

const (
	// CodeUnauthenticated: no credential admitted the request, or a bearer
	// token failed verification. The caller can fix it with a credential.
	CodeUnauthenticated Code = iota
	// CodePermissionDenied: the caller is known (or no credential could
	// help) and is refused.
	CodePermissionDenied
	// CodeOK: admitted.
	CodeOK
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodePermissionDenied:
		return "permission_denied"
	default:
		return "unauthenticated"
	}
}

// ConnectCode maps the verdict code to the Connect/gRPC code a denied RPC
// carries (0 for CodeOK).
func (c Code) ConnectCode() connect.Code {
	switch c {
	case CodeOK:
		return 0
	case CodePermissionDenied:
		return connect.CodePermissionDenied
	default:
		return connect.CodeUnauthenticated
	}
}

// HTTPStatus is the status a denied plain-HTTP request gets.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeOK:
		return http.StatusOK
	case CodePermissionDenied:
		return http.StatusForbidden
	default:
		return http.StatusUnauthorized
	}
}

// Verdict is the decision for one request.
type Verdict struct {
	Admitted bool
	Code     Code
	// Layer is the 1-based index of the deciding layer; 0 means no layer
	// decided and the default deny applied.
	Layer    int
	Identity Identity
	// Reason is short and safe to log: it never contains the token.
	Reason string
	// Cause is a stable low-cardinality label for metrics
	// ("token_expired", "peer_not_allowed", ...); empty when admitted.
	Cause string
}

// Identity is who an admitted request is.
type Identity struct {
	Kind    string // "cidr" or "jwt"
	Cluster string // jwt: the matched key's cluster label
	CIDR    string // cidr: the prefix that admitted the peer
	// Read is the clusters whose rows this identity may read (a jwt
	// key's "read"; every cluster for a cidr identity).
	Read ReadScope
	// Admin: may reach /metrics and /debug/* (a jwt key's "admin"; a cidr
	// layer's "admin", true unless set false).
	Admin bool
}

func (id Identity) String() string {
	switch id.Kind {
	case LayerJWT:
		return "jwt cluster " + id.Cluster
	case LayerCIDR:
		return "cidr " + id.CIDR
	default:
		return "none"
	}
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity Middleware attached to ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Step is one layer's part in a decision, for `finelog policy check`.
type Step struct {
	Layer   int
	Type    string
	Outcome string // "admit", "reject", "next"
	Detail  string
}

// Admit decides one request: remoteAddr is http.Request.RemoteAddr
// ("ip:port"), h its headers. Only the transport peer and the
// Authorization header are consulted; X-Forwarded-For, Forwarded and
// X-Real-IP are ignored because any client can set them.
func (p *Policy) Admit(remoteAddr string, h http.Header) Verdict {
	return p.decide(remoteAddr, h, nil)
}

// Explain is Admit plus a per-layer account of how the decision was made.
func (p *Policy) Explain(remoteAddr string, h http.Header) (Verdict, []Step) {
	var steps []Step
	v := p.decide(remoteAddr, h, &steps)
	return v, steps
}

// peerAddr parses RemoteAddr into a comparable address: zone dropped and
// v4-mapped v6 unmapped, so ::ffff:10.1.2.3 meets the 10.0.0.0/8 rule.
func peerAddr(remoteAddr string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}
	if a, err := netip.ParseAddr(remoteAddr); err == nil {
		return a.WithZone("").Unmap(), true
	}
	return netip.Addr{}, false
}

// decide applies the layers in order. A bearer credential that is
// presented is always verified, whatever the order: cidr layers admit only
// requests that carry none, and the first jwt layer decides a request that
// carries one (valid: that key's identity; invalid: rejected, never tried
// against a later layer). So a stray or forged token from an admitted
// network is refused, and a valid token gets its own identity rather than
// the network's.
func (p *Policy) decide(remoteAddr string, h http.Header, trace *[]Step) Verdict {
	peer, peerOK := peerAddr(remoteAddr)
	tok, bstate := bearerFrom(h)
	for i, l := range p.layers {
		n := i + 1
		switch l.typ {
		case LayerCIDR:
			if bstate != bearerNone {
				if trace != nil {
					*trace = append(*trace, Step{n, l.typ, "next", "a bearer token is presented; a cidr layer admits only requests without one"})
				}
				continue
			}
			if peerOK {
				for j, pr := range l.prefixes {
					if pr.Contains(peer) {
						if trace != nil {
							*trace = append(*trace, Step{n, l.typ, "admit", fmt.Sprintf("peer %s is in %s", peer, pr)})
						}
						return Verdict{Admitted: true, Code: CodeOK, Layer: n,
							Identity: Identity{Kind: LayerCIDR, CIDR: l.names[j], Read: ReadAll, Admin: l.admin}, Reason: "peer admitted by cidr"}
					}
				}
			}
			if trace != nil {
				d := fmt.Sprintf("peer %s is in none of %s", peer, strings.Join(l.names, ", "))
				if !peerOK {
					d = fmt.Sprintf("peer address %q is not an IP address", remoteAddr)
				}
				*trace = append(*trace, Step{n, l.typ, "next", d})
			}
		case LayerJWT:
			switch bstate {
			case bearerNone:
				if trace != nil {
					*trace = append(*trace, Step{n, l.typ, "next", "no bearer token; falling through"})
				}
				continue
			case bearerToken:
				idx, c, ok := l.verifier.verify(tok)
				if ok {
					k := l.keys[idx]
					if trace != nil {
						*trace = append(*trace, Step{n, l.typ, "admit", fmt.Sprintf("token verifies under key %q", k.cluster)})
					}
					return Verdict{Admitted: true, Code: CodeOK, Layer: n,
						Identity: Identity{Kind: LayerJWT, Cluster: k.cluster, Read: k.read, Admin: k.admin}, Reason: "token admitted by jwt"}
				}
				if trace != nil {
					*trace = append(*trace, Step{n, l.typ, "reject", c.reason + "; a bad token is never tried against later layers"})
				}
				return deny(c, n)
			default:
				if trace != nil {
					*trace = append(*trace, Step{n, l.typ, "reject", causeBearerSyntax.reason})
				}
				return deny(causeBearerSyntax, n)
			}
		default:
			// Unknown layer kinds cannot be constructed; if one ever is,
			// it denies rather than being skipped.
			return deny(causePeerNotAllowed, n)
		}
	}
	// Default deny. A bearer that no jwt layer could verify is a bad
	// credential. If a jwt layer exists and no token was offered, a
	// credential would help: unauthenticated. Otherwise nothing the caller
	// can present changes the answer: permission denied.
	switch {
	case bstate == bearerMalformed:
		return deny(causeBearerSyntax, 0)
	case bstate == bearerToken:
		return deny(causeBearerUnverifiable, 0)
	case p.hasJWT:
		return deny(causeNoCredential, 0)
	}
	return deny(causePeerNotAllowed, 0)
}

func deny(c cause, layer int) Verdict {
	return Verdict{Code: c.code, Layer: layer, Reason: c.reason, Cause: c.label}
}

// Describe returns one human-readable line per layer, in order, for
// `finelog policy check`. Secrets appear only as their source.
func (p *Policy) Describe() []string {
	out := make([]string, 0, len(p.layers))
	for i, l := range p.layers {
		switch l.typ {
		case LayerCIDR:
			admin := ""
			if l.admin {
				admin = " (admin)"
			}
			out = append(out, fmt.Sprintf("layer %d: cidr %s%s", i+1, strings.Join(l.names, ", "), admin))
		case LayerJWT:
			keys := make([]string, 0, len(l.keys))
			for _, k := range l.keys {
				src := "inline secret"
				if k.file != "" {
					src = "secret_file " + k.file
				}
				scope := "reads every cluster"
				if !k.read.All() {
					scope = "reads " + strings.Join(k.read.Clusters(), "+")
				}
				if k.admin {
					scope += " and is admin"
				}
				keys = append(keys, fmt.Sprintf("%s (%s) %s", k.cluster, src, scope))
			}
			aud := "any audience"
			if l.audience != "" {
				aud = fmt.Sprintf("audience %q", l.audience)
			}
			out = append(out, fmt.Sprintf("layer %d: jwt HS256, leeway %v, max lifetime %v, %s, keys %s", i+1, l.leeway, l.maxLifetime, aud, strings.Join(keys, ", ")))
		}
	}
	return out
}
