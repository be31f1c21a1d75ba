// Package auth is finelogd's ingress gate. Every request passes through a
// Policy: an ordered list of layers (cidr, jwt) checked in order, where the
// first layer that admits wins and nothing admitted means denied. A bearer
// token that is presented is always verified, whatever the order: cidr
// layers admit only requests without one, and the first jwt layer decides a
// request with one (a token that fails is rejected at once, never retried
// against a later, weaker layer). A jwt layer with no bearer token falls
// through to the next layer. An admitted Identity carries what the key (or
// cidr layer) grants: its read scope and whether it is admin.
//
// The package also mints the HS256 tokens the relay and the federation proxy
// present (Mint, Minter), and wraps an http.Handler so that a denial is
// answered in the caller's protocol (plain HTTP, Connect, gRPC, gRPC-Web).
//
// Secrets are held in the Secret type, whose every printed or marshalled form
// is redacted, and no error, log line or Verdict ever carries a token.
package auth
