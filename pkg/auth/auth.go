// Package auth issues and verifies Bazaar's access tokens: EdDSA (Ed25519) JWTs with a
// key id, whose public keys the users service publishes as a JWKS. Every service and
// the gateway verify with the same code here, so going round the gateway gets nobody
// in: the algorithm is pinned, and iss, aud and exp are checked.
package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// The fixed claims of every Bazaar token.
const (
	Issuer    = "bazaar-users"
	Audience  = "bazaar"
	Algorithm = "EdDSA"
)

// Role is what a user may do.
type Role string

// The roles.
const (
	RoleCustomer Role = "customer"
	RoleAdmin    Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleCustomer || r == RoleAdmin }

// Principal is the verified caller.
type Principal struct {
	UserID  uuid.UUID
	Role    Role
	TokenID string // jti
}

// claims is the token's wire form.
type claims struct {
	jwt.RegisteredClaims
	Role Role `json:"role"`
}

// Signer issues tokens with one private key.
type Signer struct {
	kid string
	key ed25519.PrivateKey
	ttl time.Duration
	now func() time.Time
}

// NewSigner issues tokens valid for ttl, signed by key and labelled kid.
func NewSigner(kid string, key ed25519.PrivateKey, ttl time.Duration) *Signer {
	return &Signer{kid: kid, key: key, ttl: ttl, now: time.Now}
}

// TTL is how long the tokens this signer issues are valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Sign issues a token for p; a fresh jti is minted.
func (s *Signer) Sign(p Principal) (string, error) {
	now := s.now()
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Audience:  jwt.ClaimStrings{Audience},
			Subject:   p.UserID.String(),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.ttl)),
			ID:        hex.EncodeToString(jti[:]),
		},
		Role: p.Role,
	})
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}

// Keys finds the public key with an id. It returns ErrUnknownKey when there is none,
// and an apperr.Unavailable error when it cannot tell (the key source is unreachable).
type Keys interface {
	Key(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

// ErrUnknownKey means no key has the token's kid.
var ErrUnknownKey = errors.New("unknown key id")

// StaticKeys is a fixed key set (the users service verifies with its own keys).
type StaticKeys map[string]ed25519.PublicKey

// Key implements Keys.
func (s StaticKeys) Key(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// Verifier checks tokens against a key set.
type Verifier struct {
	keys   Keys
	parser *jwt.Parser
}

// NewVerifier verifies with keys, accepting only EdDSA tokens from Issuer for Audience
// that carry an expiry, with 30 s of leeway for clock skew.
func NewVerifier(keys Keys) *Verifier {
	return &Verifier{keys: keys, parser: jwt.NewParser(
		jwt.WithValidMethods([]string{Algorithm}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30*time.Second),
	)}
}

// Verify checks a token and returns its principal. A bad, expired, tampered or foreign
// token is apperr.Unauthorized; an unreachable key source is apperr.Unavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	var c claims
	var keyErr error
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		k, err := v.keys.Key(ctx, kid)
		keyErr = err
		return k, err
	})
	if err != nil {
		if apperr.CodeOf(keyErr) == apperr.Unavailable {
			return Principal{}, keyErr
		}
		return Principal{}, apperr.Wrap(err, apperr.Unauthorized, "the access token is invalid or expired")
	}
	id, err := uuid.Parse(c.Subject)
	if err != nil || !c.Role.Valid() {
		return Principal{}, apperr.E(apperr.Unauthorized, "the access token is invalid or expired")
	}
	return Principal{UserID: id, Role: c.Role, TokenID: c.ID}, nil
}
