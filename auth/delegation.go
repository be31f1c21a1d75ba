package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/strictjson"
)

// ProxiedReadClaim is the private JWT claim that marks a token as a
// delegation for one proxied read; its value is the cluster that made the
// proxied request. The claim says what the token is: nothing is inferred
// from a token's length or shape.
const ProxiedReadClaim = "finelog_proxied_read_by"

var proxiedReadClaimBytes = []byte(ProxiedReadClaim)

// maxSubjectBytes bounds the caller name taken from a token for logs.
const maxSubjectBytes = 128

// MaxDelegationTTL bounds a delegation token's lifetime. It covers one
// request (a long-poll included) and little else, so a captured token is
// worth almost nothing.
const MaxDelegationTTL = 60 * time.Second

// Delegation is a proxied read as the serving store sees it.
type Delegation struct {
	// By is the cluster that proxied the read.
	By string
	// Subject is the original caller's identity at the proxying store, as
	// that store wrote it (sub). Informational: it names who asked.
	Subject string
	// Verified is true when a jwt layer admitted the request, so the
	// token's MAC verified under the key labelled By. The policy verifies
	// every presented bearer, so an admitted delegation always is; were a
	// request ever admitted otherwise, its token's restrictions would
	// still apply and its names would not be trusted.
	Verified bool
}

// delegationClaims is what MintDelegation signs.
type delegationClaims struct {
	Sub string           `json:"sub"`
	Aud string           `json:"aud"`
	Iat *jwt.NumericDate `json:"iat"`
	Nbf *jwt.NumericDate `json:"nbf"`
	Exp *jwt.NumericDate `json:"exp"`
	By  string           `json:"finelog_proxied_read_by"`
}

func (c delegationClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp, nil }
func (c delegationClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf, nil }
func (c delegationClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat, nil }
func (c delegationClaims) GetIssuer() (string, error)                   { return "", nil }
func (c delegationClaims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c delegationClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Aud}, nil
}

// MintDelegation signs an HS256 token for one proxied read: by is this
// store's cluster (the label the peer's policy gives this key), audience
// the peer's cluster, subject the caller's identity here. ttl is at most
// MaxDelegationTTL.
func MintDelegation(secret Secret, by, audience, subject string, ttl time.Duration, now time.Time) (string, error) {
	if err := checkSecretLen(len(secret)); err != nil {
		return "", fmt.Errorf("mint delegation: %w", err)
	}
	for _, f := range []struct{ name, v string }{{"proxying cluster", by}, {"audience", audience}} {
		if f.v == "" {
			return "", fmt.Errorf("mint delegation: %s is required", f.name)
		}
		if err := checkLabel(f.v); err != nil {
			return "", fmt.Errorf("mint delegation: %s: %w", f.name, err)
		}
	}
	if ttl < time.Second || ttl > MaxDelegationTTL {
		return "", fmt.Errorf("mint delegation: ttl %v is outside [1s, %v]", ttl, MaxDelegationTTL)
	}
	now = now.Truncate(time.Second)
	c := delegationClaims{
		Sub: subject,
		Aud: audience,
		Iat: &jwt.NumericDate{Time: now},
		Nbf: &jwt.NumericDate{Time: now},
		Exp: &jwt.NumericDate{Time: now.Add(ttl)},
		By:  by,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("mint delegation: sign: %w", err)
	}
	return tok, nil
}

type delegationKey struct{}

// WithDelegation returns ctx carrying d.
func WithDelegation(ctx context.Context, d Delegation) context.Context {
	return context.WithValue(ctx, delegationKey{}, d)
}

// DelegationFrom returns the delegation DelegationGate attached to ctx: a
// request carrying one is a proxied read and must be answered locally.
func DelegationFrom(ctx context.Context) (Delegation, bool) {
	d, ok := ctx.Value(delegationKey{}).(Delegation)
	return d, ok
}

// DelegationGateOptions configures DelegationGate.
type DelegationGateOptions struct {
	// Cluster is this store's --cluster. Empty: every delegation token is
	// refused, since none can be addressed to this store.
	Cluster string
	// Paths a delegation token may reach (the FetchLogs procedure).
	Paths []string
	// Logger receives a line per refused delegation token (nil discards).
	Logger *slog.Logger
	// Served, when set, is called for every admitted proxied read, with
	// the proxying cluster (for a metric).
	Served func(by string)
	// Registerer, when set, counts refusals in finelog_auth_denied_total
	// (reason "delegation_refused"), beside Middleware's denials.
	Registerer prometheus.Registerer
	// Clock drives the refusal log's rate limit (nil: the wall clock).
	Clock clock.Clock
}

// DelegationGate runs after Middleware. A request whose bearer token
// carries ProxiedReadClaim is a proxied read: it is refused
// (permission_denied) unless the token's aud is this store's own cluster,
// its path is one of opts.Paths, and, when a jwt layer admitted it, the
// claim names the key that signed it. An admitted one carries a
// Delegation in its context. Other requests pass untouched.
//
// The claims are read from a token Middleware already verified (a policy
// verifies every presented bearer); should an identity other than a jwt
// one ever carry such a token, only its restrictions, never its names,
// are taken from it.
func DelegationGate(opts DelegationGateOptions) func(http.Handler) http.Handler {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	denied := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "finelog_auth_denied_total",
		Help: "Requests refused by the auth policy, by reason.",
	}, []string{"reason"})
	if opts.Registerer != nil {
		denied = registerOrReuse(opts.Registerer, denied)
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	// Refusals are logged at Middleware's rate: a replay flood must not
	// become a log flood.
	lim := &logLimiter{clk: clk, tokens: logBurst}
	ew := connect.NewErrorWriter()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, present := proxiedReadClaims(r.Header)
			if !present {
				next.ServeHTTP(w, r)
				return
			}
			id, _ := IdentityFrom(r.Context())
			d, why := admitDelegation(c, id, r.URL.Path, opts)
			if why != "" {
				denied.WithLabelValues("delegation_refused").Inc()
				if ok, suppressed := lim.allow(); ok {
					logger.Warn("auth: proxied-read token refused", "peer", r.RemoteAddr, "identity", id.String(),
						"reason", why, "path", r.URL.Path, "suppressed", suppressed)
				}
				writeDenial(w, r, ew, Verdict{Code: CodePermissionDenied, Reason: why, Cause: "delegation"})
				return
			}
			if opts.Served != nil {
				opts.Served(d.By)
			}
			logger.Debug("auth: proxied read admitted", "by", d.By, "caller", d.Subject, "verified", d.Verified)
			next.ServeHTTP(w, r.WithContext(WithDelegation(r.Context(), d)))
		})
	}
}

// admitDelegation decides a request carrying a proxied-read claim; a
// non-empty reason is a refusal. Deny is the default: every check must pass.
func admitDelegation(c proxiedRead, id Identity, path string, opts DelegationGateOptions) (Delegation, string) {
	if opts.Cluster == "" {
		return Delegation{}, "proxied-read token refused: this store has no --cluster, so no token is addressed to it"
	}
	if c.aud != opts.Cluster {
		return Delegation{}, fmt.Sprintf("proxied-read token is addressed to %s, not to this store (%s)", strictjson.QuoteShort(c.aud), opts.Cluster)
	}
	allowed := false
	for _, p := range opts.Paths {
		if path == p {
			allowed = true
			break
		}
	}
	if !allowed {
		return Delegation{}, "a proxied-read token admits FetchLogs only"
	}
	d := Delegation{By: c.by, Subject: c.sub}
	if id.Kind == LayerJWT {
		if c.by != id.Cluster {
			return Delegation{}, fmt.Sprintf("proxied-read token claims to come from %s but is signed with the key of %s", strictjson.QuoteShort(c.by), strictjson.QuoteShort(id.Cluster))
		}
		d.Verified = true
	}
	return d, ""
}

// proxiedRead is the part of a token's payload DelegationGate reads.
type proxiedRead struct {
	by, aud, sub string
}

// proxiedReadClaims reports whether the request's bearer token carries
// ProxiedReadClaim, with the claims that go with it. A token whose claim
// is present but malformed (not a string, aud not one string) counts as
// present with an empty aud, so it is refused rather than waved through.
func proxiedReadClaims(h http.Header) (proxiedRead, bool) {
	tok, state := bearerFrom(h)
	if state != bearerToken {
		return proxiedRead{}, false
	}
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return proxiedRead{}, false
	}
	// Every request with a bearer token passes here (pushes included), so
	// the common case skips the JSON parse: without the claim's name and
	// without a backslash (any escaped spelling of the name has one), the
	// claim cannot be there.
	if !bytes.Contains(payload, proxiedReadClaimBytes) && bytes.IndexByte(payload, '\\') < 0 {
		return proxiedRead{}, false
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return proxiedRead{}, false
	}
	byRaw, present := raw[ProxiedReadClaim]
	if !present {
		return proxiedRead{}, false
	}
	var c proxiedRead
	if json.Unmarshal(byRaw, &c.by) != nil || c.by == "" {
		return proxiedRead{}, true
	}
	if json.Unmarshal(raw["aud"], &c.aud) != nil {
		var list []string
		if json.Unmarshal(raw["aud"], &list) != nil || len(list) != 1 {
			return proxiedRead{by: c.by}, true
		}
		c.aud = list[0]
	}
	_ = json.Unmarshal(raw["sub"], &c.sub)
	// sub is only ever logged; an unverified token could make it anything.
	if len(c.sub) > maxSubjectBytes {
		c.sub = c.sub[:maxSubjectBytes] + "…"
	}
	return c, true
}
