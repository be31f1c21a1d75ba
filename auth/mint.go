package auth

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finelog/finelog/internal/clock"
)

// MaxTokenTTL bounds minted token lifetimes: these are meant to be
// short-lived and refreshed, not long-lived credentials to copy around.
const MaxTokenTTL = 30 * 24 * time.Hour

// mintClaims is what our tokens carry. sub repeats the cluster for humans
// reading a token; the verifier derives identity from the key, not from sub.
type mintClaims struct {
	Sub string           `json:"sub"`
	Aud string           `json:"aud,omitempty"` // one audience, as a string (RFC 7519 §4.1.3)
	Iat *jwt.NumericDate `json:"iat"`
	Nbf *jwt.NumericDate `json:"nbf"`
	Exp *jwt.NumericDate `json:"exp"`
}

func (c mintClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp, nil }
func (c mintClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf, nil }
func (c mintClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat, nil }
func (c mintClaims) GetIssuer() (string, error)                   { return "", nil }
func (c mintClaims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c mintClaims) GetAudience() (jwt.ClaimStrings, error) {
	if c.Aud == "" {
		return nil, nil
	}
	return jwt.ClaimStrings{c.Aud}, nil
}

// Mint signs an HS256 token for cluster, valid from now for ttl, scoped to
// audience when it is not empty.
func Mint(secret Secret, cluster string, ttl time.Duration, audience string, now time.Time) (string, error) {
	if err := checkSecretLen(len(secret)); err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	if cluster == "" {
		return "", errors.New("mint: cluster is required")
	}
	if err := checkLabel(cluster); err != nil {
		return "", fmt.Errorf("mint: cluster: %w", err)
	}
	// Whole seconds: exp is a NumericDate and a sub-second ttl would be
	// rounded away into an already-expired token.
	if ttl < time.Second || ttl > MaxTokenTTL {
		return "", fmt.Errorf("mint: ttl %v is outside [1s, %v]", ttl, MaxTokenTTL)
	}
	now = now.Truncate(time.Second)
	c := mintClaims{
		Sub: cluster,
		Iat: &jwt.NumericDate{Time: now},
		Nbf: &jwt.NumericDate{Time: now},
		Exp: &jwt.NumericDate{Time: now.Add(ttl)},
	}
	c.Aud = audience
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("mint: sign: %w", err)
	}
	return tok, nil
}

// Minter hands out tokens for one cluster key, minting a fresh one once
// two thirds of the current token's lifetime have passed, so a token taken
// just before the refresh still has a third of its ttl to reach the server.
// It is safe for concurrent use.
type Minter struct {
	secret   Secret
	cluster  string
	audience string
	ttl      time.Duration
	clk      clock.Clock

	mu        sync.Mutex
	tok       string
	refreshAt time.Time
}

// NewMinter returns a Minter. Bad arguments surface from the first Token.
func NewMinter(secret Secret, cluster, audience string, ttl time.Duration, clk clock.Clock) *Minter {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Minter{secret: secret, cluster: cluster, audience: audience, ttl: ttl, clk: clk}
}

// Token returns a current token, minting one if needed.
func (m *Minter) Token() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clk.Now()
	// A clock that jumped backwards past the mint time also forces a
	// refresh: the cached token's iat would be in the future.
	if m.tok != "" && now.Before(m.refreshAt) && !now.Before(m.refreshAt.Add(-m.ttl*2/3)) {
		return m.tok, nil
	}
	tok, err := Mint(m.secret, m.cluster, m.ttl, m.audience, now)
	if err != nil {
		return "", err
	}
	m.tok = tok
	m.refreshAt = now.Truncate(time.Second).Add(m.ttl * 2 / 3)
	return tok, nil
}
