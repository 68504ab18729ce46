// Package auth issues and verifies Bazaar's access tokens: EdDSA (Ed25519) JWTs with a
// key id, whose public keys the users service publishes as a JWKS. Every service and
// the gateway verify with the same code here, so going round the gateway gets nobody
// in: the algorithm is pinned; iss, aud, exp and iat are checked; the header must say
// the token is an access token (typ at+jwt, RFC 9068) and carry no crit extensions
// (RFC 8725); a token may not live longer than a cap; and, given a revocation list,
// the tokens of an ended session are refused.
package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
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
	// TokenType is the typ header of an access token (RFC 9068 §2.1). Checking it
	// keeps any other JWT that the same key might ever sign from passing for one.
	TokenType = "at+jwt"
)

// DefaultMaxLifetime is the longest a token may live (exp − iat) for a Verifier that
// was not given another cap. The users service's ACCESS_TOKEN_TTL may not exceed it. A
// token that claims to live longer was not issued by Bazaar as configured: a leaked
// signing key's forgery, or a bug, and refusing it bounds the damage either can do.
const DefaultMaxLifetime = time.Hour

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = 30 * time.Second

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
	// SessionID (the sid claim) names the log-in the token descends from: the users
	// service's refresh-token family. Ending the session revokes it. Empty for a
	// token that belongs to no session.
	SessionID string
}

// claims is the token's wire form.
type claims struct {
	jwt.RegisteredClaims
	Role      Role   `json:"role"`
	SessionID string `json:"sid,omitempty"`
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

// WithClock makes the signer tell the time with now (tests set it); it returns s.
func (s *Signer) WithClock(now func() time.Time) *Signer {
	s.now = now
	return s
}

// TTL is how long the tokens this signer issues are valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Sign issues a token for p, typed as an access token; a fresh jti is minted.
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
		Role:      p.Role,
		SessionID: p.SessionID,
	})
	tok.Header["kid"] = s.kid
	tok.Header["typ"] = TokenType
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

// Verifier checks tokens against a key set and, optionally, a revocation list. Its
// With methods configure it in place and return it, for chaining; they are for
// setting it up, before it verifies anything (they are not safe to call meanwhile).
// In place rather than on a copy, so that a call whose result is dropped still takes
// effect: a revocation check that silently did not would be a hole.
type Verifier struct {
	keys        Keys
	maxLifetime time.Duration
	now         func() time.Time
	revocations Revocations
	log         *slog.Logger
	warned      atomic.Int64 // unix nanoseconds of the last revocation warning
	cache       *tokenCache  // nil: every token is verified from scratch
}

// NewVerifier verifies with keys, accepting only EdDSA access tokens (typ at+jwt, no
// crit header) from Issuer for Audience that carry an expiry and an issue time no more
// than DefaultMaxLifetime apart, with Leeway for clock skew.
func NewVerifier(keys Keys) *Verifier {
	return &Verifier{keys: keys, maxLifetime: DefaultMaxLifetime, now: time.Now}
}

// WithMaxLifetime makes v accept tokens living (exp − iat) up to d; it returns v.
func (v *Verifier) WithMaxLifetime(d time.Duration) *Verifier {
	v.maxLifetime = d
	return v
}

// WithClock makes v tell the time with now (tests set it); it returns v.
func (v *Verifier) WithClock(now func() time.Time) *Verifier {
	v.now = now
	return v
}

// WithRevocations makes v also refuse the tokens of sessions r says have ended; it
// returns v. When r fails, the token is accepted on its signature and claims alone and
// the failure is logged (see Verify).
func (v *Verifier) WithRevocations(r Revocations) *Verifier {
	v.revocations = r
	return v
}

// WithCache makes v remember up to size tokens that it has verified, so that a
// token presented again is not parsed and its signature not checked again: until
// its exp, and at most CacheMaxAge. Only the token's own proof is remembered. With
// revocations (WithRevocations), whether its session has ended is asked again once
// the last answer is older than recheck: a session ended meanwhile is refused within
// recheck rather than at once (0: asked for every request, as without a cache). It
// returns v; size must be positive.
func (v *Verifier) WithCache(size int, recheck time.Duration) *Verifier {
	v.cache = newTokenCache(size, recheck)
	return v
}

// WithLogger makes v log to log (a revocation list it cannot read); it returns v.
// Without one, Require logs to its own logger and Verify to slog.Default.
func (v *Verifier) WithLogger(log *slog.Logger) *Verifier {
	v.log = log
	return v
}

// errNotAccessToken is why a token with the wrong header is refused; it is logged, the
// client sees only "invalid".
var errNotAccessToken = errors.New("not an access token: typ must be at+jwt and there must be no crit header")

// checkHeader enforces RFC 8725 §3.11 and RFC 9068 §2.1 (typ) and RFC 7515 §4.1.11
// (crit: Bazaar understands no extension, so any crit header must fail the token).
func checkHeader(h map[string]any) error {
	if _, ok := h["crit"]; ok {
		return errNotAccessToken
	}
	typ, _ := h["typ"].(string)
	typ = strings.ToLower(typ)
	if typ != TokenType && typ != "application/"+TokenType {
		return errNotAccessToken
	}
	return nil
}

// Verify checks a token and returns its principal. A bad, expired, tampered or foreign
// token is apperr.Unauthorized, and so is one that is not typed as an access token,
// has a crit header, lacks iat, lives longer than the cap, or (with revocations)
// belongs to an ended session; an unreachable key source is apperr.Unavailable.
//
// A revocation list that cannot be read does not refuse the token: revocation fails
// open, and the failure is logged (at most every few seconds). The trade-off: while
// Redis is down, a session ended meanwhile keeps working until its access tokens
// expire (ACCESS_TOKEN_TTL), as before revocation existed; failing closed instead
// would log every user out whenever Redis blinks.
//
// With a cache (WithCache), a token verified before is taken from it, and its
// session's end is noticed within the cache's recheck time.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	p, err := v.verify(ctx, token, nil)
	if err != nil {
		return Principal{}, err
	}
	return *p, nil
}

// verify is Verify; the principal it returns is shared and must not be changed.
func (v *Verifier) verify(ctx context.Context, token string, log *slog.Logger) (*Principal, error) {
	if v.cache == nil {
		p, _, err := v.verifyToken(ctx, token)
		if err != nil {
			return nil, err
		}
		if v.revoked(ctx, p, log) {
			return nil, errSessionEnded
		}
		return p, nil
	}
	now := v.now()
	if e := v.cache.get(token, now); e != nil {
		if v.cachedRevoked(ctx, e, now, log) {
			return nil, errSessionEnded
		}
		return e.principal, nil
	}
	p, exp, err := v.verifyToken(ctx, token)
	if err != nil {
		return nil, err
	}
	revoked := v.revoked(ctx, p, log)
	until := now.Add(CacheMaxAge)
	if exp.Before(until) {
		until = exp
	}
	if now.Before(until) {
		v.cache.put(token, p, now, until, revoked)
	}
	if revoked {
		return nil, errSessionEnded
	}
	return p, nil
}

// errSessionEnded refuses a token of a session that has ended.
var errSessionEnded = apperr.E(apperr.Unauthorized, "the session has ended; log in again")

// revoked reports whether the revocation list says p's session has ended. A list
// that cannot be read says no, and is logged (see Verify).
func (v *Verifier) revoked(ctx context.Context, p *Principal, log *slog.Logger) bool {
	if v.revocations == nil || p.SessionID == "" {
		return false
	}
	revoked, err := v.revocations.Revoked(ctx, p.SessionID)
	if err != nil {
		v.warnRevocations(ctx, log, err)
		return false
	}
	return revoked
}

// cachedRevoked is revoked for a cached token: the cached verdict while it is younger
// than the cache's recheck time, else the list's, which is then cached. An unreadable
// list is not asked again until the recheck time has passed either, so that while
// Redis is out each token costs one failed look-up per recheck time rather than one
// per request.
func (v *Verifier) cachedRevoked(ctx context.Context, e *cachedToken, now time.Time, log *slog.Logger) bool {
	if e.revoked.Load() {
		return true
	}
	if v.revocations == nil || e.principal.SessionID == "" || now.UnixNano()-e.checked.Load() < int64(v.cache.recheck) {
		return false
	}
	e.checked.Store(now.UnixNano())
	if v.revoked(ctx, e.principal, log) {
		e.revoked.Store(true)
		return true
	}
	return false
}

// verifyToken checks the token's signature, header and claims: everything but the
// revocation list. It returns the principal and the token's expiry.
func (v *Verifier) verifyToken(ctx context.Context, token string) (*Principal, time.Time, error) {
	var c claims
	var keyErr error
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{Algorithm}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(v.now),
	)
	_, err := parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if err := checkHeader(t.Header); err != nil {
			return nil, err
		}
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
			return nil, time.Time{}, keyErr
		}
		return nil, time.Time{}, apperr.Wrap(err, apperr.Unauthorized, "the access token is invalid or expired")
	}
	// The parser checks iat only when present; an access token must have it (RFC 9068
	// §2.2), or its lifetime could not be bounded.
	if c.IssuedAt == nil || c.ExpiresAt.Sub(c.IssuedAt.Time) > v.maxLifetime {
		return nil, time.Time{}, apperr.E(apperr.Unauthorized, "the access token is invalid or expired")
	}
	id, err := uuid.Parse(c.Subject)
	if err != nil || !c.Role.Valid() {
		return nil, time.Time{}, apperr.E(apperr.Unauthorized, "the access token is invalid or expired")
	}
	return &Principal{UserID: id, Role: c.Role, TokenID: c.ID, SessionID: c.SessionID}, c.ExpiresAt.Time, nil
}

// revocationWarnEvery is the least time between two warnings about an unreadable
// revocation list: often enough to be seen, seldom enough not to flood the log.
const revocationWarnEvery = 5 * time.Second

func (v *Verifier) warnRevocations(ctx context.Context, log *slog.Logger, err error) {
	now := time.Now().UnixNano()
	last := v.warned.Load()
	if now-last < int64(revocationWarnEvery) || !v.warned.CompareAndSwap(last, now) {
		return
	}
	switch {
	case v.log != nil:
		log = v.log
	case log == nil:
		log = slog.Default()
	}
	log.WarnContext(ctx, "session revocations cannot be checked; tokens are accepted on their signature and expiry alone", "err", err)
}
