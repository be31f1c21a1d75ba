package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finelog/finelog/internal/clock"
)

// maxTokenBytes bounds the bearer token we are willing to parse. Our own
// tokens are ~200 bytes; anything near this limit is not a credential.
const maxTokenBytes = 4096

// forbiddenHeaders are JOSE header parameters that either ask the verifier
// to fetch or trust a key named by the token itself (jku, jwk, x5u) or
// demand extensions we do not implement (crit). RFC 7515 §4.1.11 requires
// rejecting a crit we do not understand; the key-carrying ones are how
// key-confusion attacks begin.
var forbiddenHeaders = []string{"crit", "jku", "jwk", "x5u"}

// Sentinel causes raised inside the key function, so the verdict can say
// which check failed without parsing library messages.
var (
	errForbiddenHeader = errors.New("forbidden JOSE header")
	errClaimRange      = errors.New("time claim out of range")
)

// verifier checks bearer tokens for one jwt layer.
type verifier struct {
	keys        []jwtKey
	parser      *jwt.Parser
	validator   *jwt.Validator
	clk         clock.Clock
	leeway      time.Duration
	maxLifetime time.Duration
	cache       tokenCache
}

func newVerifier(l *layer, clk clock.Clock) *verifier {
	// Every option is spelled out, including the ones that match the
	// library defaults today, so a library upgrade cannot loosen them.
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(l.leeway),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(clk.Now),
	}
	if l.audience != "" {
		opts = append(opts, jwt.WithAudience(l.audience))
	}
	// Built once: the fast path validates claims with the same options
	// the parser validates them with.
	return &verifier{keys: l.keys, parser: jwt.NewParser(opts...), validator: jwt.NewValidator(opts...), clk: clk, leeway: l.leeway, maxLifetime: l.maxLifetime}
}

// cause is a denial reason: a short operator-facing text plus a stable,
// low-cardinality label for metrics.
type cause struct {
	label  string
	reason string
	code   Code
}

var (
	causeNoCredential   = cause{"no_credential", "no layer admitted the request and no bearer token was presented", CodeUnauthenticated}
	causePeerNotAllowed = cause{"peer_not_allowed", "peer address is not admitted by any layer", CodePermissionDenied}
	causeBearerSyntax   = cause{"bearer_malformed", "Authorization header is not a single well-formed Bearer token", CodeUnauthenticated}
	causeTokenMalformed = cause{"token_malformed", "token is malformed", CodeUnauthenticated}
	causeAlg            = cause{"token_alg", "token alg is not HS256", CodeUnauthenticated}
	causeHeader         = cause{"token_header", "token carries a forbidden header (crit, jku, jwk or x5u)", CodeUnauthenticated}
	causeSignature      = cause{"token_signature", "token signature does not verify under any configured key", CodeUnauthenticated}
	causeExpired        = cause{"token_expired", "token is expired", CodeUnauthenticated}
	causeNotYetValid    = cause{"token_not_yet_valid", "token is not valid yet (nbf)", CodeUnauthenticated}
	causeIssuedFuture   = cause{"token_issued_in_future", "token is issued in the future (iat)", CodeUnauthenticated}
	causeClaims         = cause{"token_claims", "token claims are missing or of the wrong type (exp is required)", CodeUnauthenticated}
	causeAudience       = cause{"token_audience", "token audience does not match this layer", CodePermissionDenied}
	causeLifetime       = cause{"token_lifetime", "token lifetime (exp - iat, or exp - now without iat) exceeds this layer's max_lifetime", CodeUnauthenticated}
	causeDuplicateName  = cause{"token_duplicate_name", "token header or claims repeat a name", CodeUnauthenticated}
	// A bearer is presented but the policy has no jwt layer to verify it:
	// refused rather than admitted by address, so that sending a token
	// never changes who the request is to something else.
	causeBearerUnverifiable = cause{"bearer_unverifiable", "a bearer token was presented but no jwt layer can verify it; send the request without one", CodeUnauthenticated}
)

// claims are the registered claims the verifier acts on, decoded
// strictly: a time claim given as a JSON string is an error (encoding/json
// would otherwise accept "123" into a json.Number). Claims we do not act on
// (iss, sub, private claims) are ignored, as RFC 7519 §4 asks; aud is kept
// raw and only interpreted when the layer sets an audience.
type claims struct {
	Exp *strictDate     `json:"exp"`
	Nbf *strictDate     `json:"nbf"`
	Iat *strictDate     `json:"iat"`
	Aud json.RawMessage `json:"aud"`

	// dates and audBuf back Exp/Nbf/Iat and Aud when decodePlain fills
	// them, so decoding a token's claims is one allocation, not five.
	// encoding/json ignores unexported fields.
	dates  [3]strictDate
	audBuf [64]byte
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp.numeric(), nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf.numeric(), nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat.numeric(), nil }
func (c *claims) GetIssuer() (string, error)                   { return "", nil }
func (c *claims) GetSubject() (string, error)                  { return "", nil }

// GetAudience accepts a string or a list of strings (RFC 7519 §4.1.3);
// anything else is the wrong type.
func (c *claims) GetAudience() (jwt.ClaimStrings, error) {
	if len(c.Aud) == 0 || string(c.Aud) == "null" {
		return nil, nil
	}
	if s, ok := plainJSONString(c.Aud); ok {
		return jwt.ClaimStrings{s}, nil
	}
	var aud jwt.ClaimStrings
	if err := json.Unmarshal(c.Aud, &aud); err != nil {
		return nil, jwt.ErrInvalidType
	}
	return aud, nil
}

// plainJSONString reads a JSON string of printable ASCII without escapes,
// the shape of every audience we mint, without a trip through reflection.
// Anything else is left to encoding/json.
func plainJSONString(b []byte) (string, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	inner := b[1 : len(b)-1]
	for _, c := range inner {
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
			return "", false
		}
	}
	return string(inner), true
}

// maxUnixSeconds is 9999-12-31T23:59:59Z: beyond it a NumericDate is a
// mistake or an attack on float→int conversion, not a time.
const maxUnixSeconds = 253402300799

// strictDate holds its NumericDate by value so the getters the Validator
// calls hand out a pointer to it instead of allocating one per call.
type strictDate struct{ nd jwt.NumericDate }

func (d *strictDate) numeric() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.nd
}

func (d *strictDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || !(b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) {
		return jwt.ErrInvalidType
	}
	f, ok := smallInteger(b)
	if !ok {
		var err error
		f, err = strconv.ParseFloat(string(b), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return jwt.ErrInvalidType
		}
	}
	if f < 0 || f > maxUnixSeconds {
		return errClaimRange
	}
	sec, frac := math.Modf(f)
	// Not jwt.NewNumericDate: it truncates to whole seconds, which would
	// move a fractional exp or nbf away from what the token says.
	d.nd = jwt.NumericDate{Time: time.Unix(int64(sec), int64(frac*1e9))}
	return nil
}

// smallInteger reads a run of at most 15 decimal digits, the form every
// NumericDate we mint takes. Such a number is below 2^53, so its float64
// is exact and equal to what strconv.ParseFloat returns for it; anything
// else (a sign, a fraction, an exponent, more digits) is left to ParseFloat.
func smallInteger(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return float64(n), true
}

// bearer is what the Authorization header offers.
type bearerState int

const (
	bearerNone      bearerState = iota // no Authorization header, or a non-Bearer scheme
	bearerToken                        // exactly one Bearer token
	bearerMalformed                    // "Bearer" with no token, several headers, junk
)

// bearerFrom extracts the token from Authorization: Bearer. Tokens are
// read from this header only: never from the query string or a cookie,
// where they end up in access logs and browser history.
//
// The syntax is RFC 6750 §2.1: the scheme (case-insensitive), one or more
// spaces, the token, nothing else. Only HTTP's optional whitespace (space,
// tab) around the whole value is ignored, as every HTTP parser strips it.
// A value whose scheme is Bearer but that does not have that shape is a
// malformed credential, never "no credential": it must not fall through to
// a layer that admits requests without one.
func bearerFrom(h http.Header) (string, bearerState) {
	vals := h.Values("Authorization")
	if len(vals) == 0 {
		return "", bearerNone
	}
	state := bearerNone
	var tok string
	for _, v := range vals {
		v = strings.Trim(v, " \t")
		const scheme = "bearer"
		if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
			continue
		}
		// Two credentials in one request is ambiguous; refuse rather
		// than pick one.
		if state != bearerNone {
			return "", bearerMalformed
		}
		rest := v[len(scheme):]
		// "Bearer" with no token (or "Bearer\t<t>", "Bearerx") is a bearer
		// credential that cannot verify: rejected like any other bad token.
		if !strings.HasPrefix(rest, " ") {
			return "", bearerMalformed
		}
		rest = strings.TrimLeft(rest, " ")
		if !wellFormedCompact(rest) {
			return "", bearerMalformed
		}
		tok, state = rest, bearerToken
	}
	return tok, state
}

// wellFormedCompact checks the JWS compact shape before the parser sees
// it: three base64url segments, no padding, nothing else. The standard
// base64 decoder silently skips \r and \n, so this also keeps the MAC input
// and the decoded bytes in one-to-one correspondence.
func wellFormedCompact(s string) bool {
	if len(s) == 0 || len(s) > maxTokenBytes {
		return false
	}
	dots := 0
	for i := 0; i < len(s); i++ {
		switch compactClass[s[i]] {
		case compactDot:
			dots++
		case compactOther:
			return false
		}
	}
	return dots == 2
}

const (
	compactOther = iota // not allowed in a compact JWS
	compactB64          // base64url alphabet
	compactDot          // segment separator
)

// compactClass classifies each byte for wellFormedCompact: one table
// load per byte instead of a chain of range compares, since every
// request with a bearer token runs this over the whole token.
var compactClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = compactB64
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = compactB64
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = compactB64
	}
	t['-'], t['_'] = compactB64, compactB64
	t['.'] = compactDot
	return t
}()

// verify checks one token against the layer. It returns the index of the
// key whose MAC matched, or the cause of rejection.
//
// A client presents the same token on every request until it refreshes it,
// so the outcome of the checks that do not depend on time (shape, alg,
// headers, MAC, claim types, audience) is remembered per token; on a repeat
// only the time claims are re-checked against the clock, exactly as the
// library checks them. Anything that fails goes through the full path so
// the cause is reported the same way.
func (v *verifier) verify(tok string) (int, cause, bool) {
	sum := sha256.Sum256([]byte(tok))
	now := v.clk.Now()
	if e, ok := v.cache.get(sum); ok && e.timesOK(now, v.leeway) {
		if !v.lifetimeOK(e.exp, e.iat, now) {
			return -1, causeLifetime, false
		}
		return e.keyIdx, cause{}, true
	}
	keyIdx, cl, ok := v.verifyFast(tok)
	c := cause{}
	if !ok {
		keyIdx, c, ok, cl = v.verifyFull(tok)
	}
	if ok {
		if !v.lifetimeOK(cl.Exp.numeric().Time, cl.Iat.numeric(), now) {
			return -1, causeLifetime, false
		}
		v.cache.put(sum, cachedToken{
			keyIdx: keyIdx,
			exp:    cl.Exp.numeric().Time,
			nbf:    cl.Nbf.numeric(),
			iat:    cl.Iat.numeric(),
		})
	}
	return keyIdx, c, ok
}

// lifetimeOK bounds how long a token is good for: exp - iat, or exp - now
// when it has no iat, at most the layer's max_lifetime. A leaked token
// minted for years is otherwise a credential for years.
func (v *verifier) lifetimeOK(exp time.Time, iat *jwt.NumericDate, now time.Time) bool {
	start := now
	if iat != nil {
		start = iat.Time
	}
	return exp.Sub(start) <= v.maxLifetime
}

func (v *verifier) verifyFull(tok string) (int, cause, bool, *claims) {
	if repeatsName(tok) {
		return -1, causeDuplicateName, false, nil
	}
	keyIdx := -1
	var c claims
	t, err := v.parser.ParseWithClaims(tok, &c, func(t *jwt.Token) (any, error) {
		for _, h := range forbiddenHeaders {
			if _, present := t.Header[h]; present {
				return nil, errForbiddenHeader
			}
		}
		if len(v.keys) == 1 {
			keyIdx = 0
			return []byte(v.keys[0].secret), nil
		}
		// Several keys: find the one whose MAC matches (hmac.Equal is
		// constant-time) so the identity is the key that signed, then let
		// the library verify again under that key with all its checks.
		signing := tok[:strings.LastIndexByte(tok, '.')]
		for i, k := range v.keys {
			if macMatches(k.secret, signing, t.Signature) {
				keyIdx = i
				return []byte(k.secret), nil
			}
		}
		return nil, jwt.ErrTokenSignatureInvalid
	})
	if err == nil && t != nil && t.Valid && keyIdx >= 0 && c.Exp != nil {
		return keyIdx, cause{}, true, &c
	}
	return -1, classify(t, err, c.Exp != nil), false, nil
}

// tokenCacheSize bounds the verified-token cache per jwt layer. Only tokens
// whose MAC verified under a configured key get in, so an attacker cannot
// fill it; clearing it when full keeps eviction deterministic.
const tokenCacheSize = 1024

type tokenCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]cachedToken
}

// cachedToken is what remains to check of a verified token: its time claims.
type cachedToken struct {
	keyIdx   int
	exp      time.Time
	nbf, iat *jwt.NumericDate
}

// timesOK repeats golang-jwt's Validator time checks (exp required,
// nbf/iat optional, leeway applied the same way).
func (e cachedToken) timesOK(now time.Time, leeway time.Duration) bool {
	if !now.Before(e.exp.Add(leeway)) {
		return false
	}
	if e.nbf != nil && now.Before(e.nbf.Add(-leeway)) {
		return false
	}
	if e.iat != nil && now.Before(e.iat.Add(-leeway)) {
		return false
	}
	return true
}

func (c *tokenCache) get(k [sha256.Size]byte) (cachedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	return e, ok
}

func (c *tokenCache) put(k [sha256.Size]byte, e cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= tokenCacheSize {
		// Sized for a full cache up front: first-seen tokens are the ones
		// that insert, and growing the map in steps rehashes it each time.
		c.entries = make(map[[sha256.Size]byte]cachedToken, tokenCacheSize)
	}
	c.entries[k] = e
}

// macMatches reports whether sig is HMAC-SHA256(secret, signing).
func macMatches(secret Secret, signing string, sig []byte) bool {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signing))
	return hmac.Equal(m.Sum(nil), sig)
}

// classify maps a parse/verify failure to a cause. Order matters: a
// structural problem outranks a signature problem, which outranks any
// claim problem (claims of an unauthenticated token mean nothing).
func classify(t *jwt.Token, err error, hasExp bool) cause {
	if t != nil && t.Header != nil {
		if alg, _ := t.Header["alg"].(string); alg != jwt.SigningMethodHS256.Alg() {
			return causeAlg
		}
	}
	switch {
	case err == nil:
		// Parser said valid but no key index: treat as a signature failure.
		return causeSignature
	case errors.Is(err, errForbiddenHeader):
		return causeHeader
	case errors.Is(err, jwt.ErrTokenMalformed):
		if errors.Is(err, jwt.ErrInvalidType) || errors.Is(err, errClaimRange) {
			return causeClaims
		}
		return causeTokenMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return causeSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return causeExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return causeNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return causeIssuedFuture
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && hasExp:
		// exp is the only other required claim, so this is a missing aud
		// on a layer that requires one: the token is genuine but not
		// scoped to us.
		return causeAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing), errors.Is(err, jwt.ErrInvalidType):
		return causeClaims
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return causeAudience
	default:
		return causeTokenMalformed
	}
}
