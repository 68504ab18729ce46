package user

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// Store keeps users and refresh tokens. Implementations translate their own errors
// into the domain's: the ones named below, or an apperr.Unavailable error when the
// storage cannot be reached.
type Store interface {
	// CreateUser stores u and, in the same transaction, its user.registered event.
	// It returns ErrEmailTaken when another user has u's e-mail.
	CreateUser(ctx context.Context, u User) error
	// EnsureAdmin stores u with its user.registered event unless a user with u's
	// e-mail exists, and makes that user an admin either way; it is safe to call from
	// several processes at once. It returns the stored user and whether it was created.
	EnsureAdmin(ctx context.Context, u User) (User, bool, error)
	// UserByID returns the user, or ErrNotFound.
	UserByID(ctx context.Context, id uuid.UUID) (User, error)
	// UserByEmail returns the user with the e-mail, or ErrNotFound.
	UserByEmail(ctx context.Context, email Email) (User, error)
	// CreateRefreshToken stores the first token of a new family.
	CreateRefreshToken(ctx context.Context, t RefreshToken) error
	// RotateRefreshToken uses the token whose hash is old, once: in one transaction it
	// marks it used and stores next as its child (same user, family and session start;
	// next's ID, Hash and CreatedAt are taken as given, its ExpiresAt too but never past
	// the session's end, SessionStartedAt + sessionMaxAge) and returns the child. Of
	// concurrent calls with the same token at most one succeeds. A token that was
	// already used is ErrRefreshTokenReused, and its whole family is revoked first (the
	// token returned with the error names the family and user); an unknown, revoked or
	// expired (at now) token is ErrRefreshTokenInvalid; a token of a session that has
	// reached sessionMaxAge at now is ErrSessionExpired.
	RotateRefreshToken(ctx context.Context, old []byte, next RefreshToken, now time.Time, sessionMaxAge time.Duration) (RefreshToken, error)
	// RevokeRefreshTokenFamily revokes, at now, every token of the family of the token
	// whose hash is given, whether that token is live, used, revoked or expired, and
	// returns that token (its family and user). Tokens revoked already keep their time.
	// An unknown token is ErrRefreshTokenInvalid.
	RevokeRefreshTokenFamily(ctx context.Context, token []byte, now time.Time) (RefreshToken, error)
}

// Hasher turns passwords into encoded hashes and checks them.
type Hasher interface {
	// Hash encodes a new salted hash of plain.
	Hash(plain string) (string, error)
	// Verify reports whether plain matches encoded; an error means encoded is unreadable.
	Verify(plain, encoded string) (bool, error)
}

// TokenSigner issues access tokens (*auth.Signer is one).
type TokenSigner interface {
	Sign(p auth.Principal) (string, error)
	TTL() time.Duration
}

// SessionRevoker tells every token verifier (the gateway's, each service's) that a
// session has ended, so that the access tokens it was given stop working before they
// expire. *auth.RedisRevocationStore is one.
type SessionRevoker interface {
	// Revoke ends session sid for ttl, which outlasts each of its access tokens.
	Revoke(ctx context.Context, sid string, ttl time.Duration) error
}

// Throttle slows down password guessing: it is asked before a password is checked.
// The throttle package has the rule.
type Throttle interface {
	// Admit returns a *TooManyAttemptsError when an attempt to log in as email from the
	// client address from must wait. Otherwise the attempt counts as a failure unless
	// the release it returns is called (the password was right, or the check failed
	// for a reason that is not the caller's).
	Admit(ctx context.Context, email string, from netip.Addr) (func(context.Context), error)
}

// Tokens are what a login or refresh hands the client.
type Tokens struct {
	AccessToken string
	ExpiresIn   time.Duration // the access token's lifetime
	// RefreshToken is opaque: 32 random bytes, base64url. The server keeps only its hash.
	RefreshToken string
}

// Sessions are the rules and seams of sessions, for NewService.
type Sessions struct {
	// RefreshTTL is how long each refresh token lives from its issue (REFRESH_TOKEN_TTL).
	RefreshTTL time.Duration
	// MaxAge is the longest a session lives from its log-in, however often it is
	// refreshed (SESSION_MAX_AGE).
	MaxAge time.Duration
	// Revoker ends the access tokens of a session that is logged out or whose refresh
	// token was reused. Required.
	Revoker SessionRevoker
}

// Service registers users, logs them in and refreshes and ends their sessions.
type Service struct {
	store    Store
	hasher   Hasher
	signer   TokenSigner
	now      func() time.Time
	throttle Throttle
	sessions Sessions
	// dummyHash is checked against when a login names an unknown e-mail, so that the
	// answer takes as long as a wrong password and timing does not reveal accounts.
	dummyHash string
}

// NewService makes the service; now tells the time (nil is time.Now; tests pass their
// own). It fails when a required seam is missing or the hasher fails.
func NewService(store Store, hasher Hasher, signer TokenSigner, now func() time.Time, throttle Throttle, sessions Sessions) (*Service, error) {
	if throttle == nil {
		return nil, errors.New("user service: no log-in throttle")
	}
	if sessions.Revoker == nil {
		return nil, errors.New("user service: no session revoker")
	}
	if sessions.RefreshTTL <= 0 || sessions.MaxAge <= 0 {
		return nil, errors.New("user service: the refresh-token lifetime and session age must be positive")
	}
	dummy, err := hasher.Hash(rand.Text())
	if err != nil {
		return nil, fmt.Errorf("hash the dummy password: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, hasher: hasher, signer: signer, now: now, throttle: throttle, sessions: sessions, dummyHash: dummy}, nil
}

// Register creates a customer account. It returns ErrEmailTaken when the e-mail has
// an account already (in any letter case).
func (s *Service) Register(ctx context.Context, r Registration) (User, error) {
	u, err := s.newUser(r, auth.RoleCustomer)
	if err != nil {
		return User{}, err
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return User{}, err
	}
	return u, nil
}

// EnsureAdmin makes sure an admin account with r's e-mail exists: it creates one with
// r's password and name, or promotes the existing account (whose password and name it
// leaves alone). It is idempotent and safe when several replicas start together.
func (s *Service) EnsureAdmin(ctx context.Context, r Registration) (User, bool, error) {
	u, err := s.newUser(r, auth.RoleAdmin)
	if err != nil {
		return User{}, false, err
	}
	return s.store.EnsureAdmin(ctx, u)
}

func (s *Service) newUser(r Registration, role auth.Role) (User, error) {
	hash, err := s.hasher.Hash(r.Password.plain)
	if err != nil {
		return User{}, fmt.Errorf("hash password: %w", err)
	}
	return User{
		ID:           newID(),
		Email:        r.Email,
		Name:         r.Name,
		Role:         role,
		PasswordHash: hash,
		// Postgres keeps microseconds; truncating here makes the returned user equal
		// the stored one.
		CreatedAt: s.now().UTC().Truncate(time.Microsecond),
	}, nil
}

// Login checks an e-mail and password, tried from the client address from, and starts
// a session. Every failure that is the caller's is ErrBadCredentials, the same for an
// unknown e-mail as for a wrong password, and takes the same time. An attempt too soon
// after failed ones is a *TooManyAttemptsError, whatever its password: it is refused
// before the password is checked.
func (s *Service) Login(ctx context.Context, email, password string, from netip.Addr) (Tokens, error) {
	// An over-long password cannot be right (none can be set) and would only cost
	// hashing time; refusing it says nothing about whether the e-mail exists.
	if utf8.RuneCountInString(password) > MaxPasswordLen {
		return Tokens{}, ErrBadCredentials
	}
	release, err := s.throttle.Admit(ctx, email, from)
	if err != nil {
		return Tokens{}, err
	}
	t, err := s.login(ctx, email, password)
	if !errors.Is(err, ErrBadCredentials) {
		// Only a wrong guess counts as a failure: not a success, and not a database
		// that was down.
		release(ctx)
	}
	return t, err
}

func (s *Service) login(ctx context.Context, email, password string) (Tokens, error) {
	u, found, err := s.lookup(ctx, email)
	if err != nil {
		return Tokens{}, err
	}
	hash := s.dummyHash
	if found {
		hash = u.PasswordHash
	}
	ok, err := s.hasher.Verify(password, hash)
	if err != nil {
		return Tokens{}, fmt.Errorf("verify password of user %s: %w", u.ID, err)
	}
	if !found || !ok {
		return Tokens{}, ErrBadCredentials
	}

	raw, hashed := newRefreshToken()
	// Postgres keeps microseconds; truncating keeps the session's start exact.
	now := s.now().UTC().Truncate(time.Microsecond)
	family := newID()
	err = s.store.CreateRefreshToken(ctx, RefreshToken{
		ID: family, Hash: hashed, UserID: u.ID, FamilyID: family, SessionStartedAt: now,
		CreatedAt: now, ExpiresAt: now.Add(min(s.sessions.RefreshTTL, s.sessions.MaxAge)),
	})
	if err != nil {
		return Tokens{}, err
	}
	return s.tokens(u, family, raw)
}

// lookup finds the user with the e-mail; an e-mail that cannot be valid is simply
// not found.
func (s *Service) lookup(ctx context.Context, email string) (User, bool, error) {
	e, err := ParseEmail(email)
	if err != nil {
		return User{}, false, nil
	}
	u, err := s.store.UserByEmail(ctx, e)
	switch {
	case errors.Is(err, ErrNotFound):
		return User{}, false, nil
	case err != nil:
		return User{}, false, err
	}
	return u, true, nil
}

// Refresh trades a refresh token for a new access token and a new refresh token; the
// old one stops working. It returns ErrRefreshTokenInvalid for an unknown, expired or
// revoked token, ErrSessionExpired for one whose session has reached its maximum age,
// and ErrRefreshTokenReused for one that was used before: then the token's whole
// session has been ended, its access tokens included. When those access tokens could
// not be revoked the error is ErrRefreshTokenReused joined with why.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	old, ok := HashRefreshToken(refreshToken)
	if !ok {
		return Tokens{}, ErrRefreshTokenInvalid
	}
	raw, hashed := newRefreshToken()
	now := s.now().UTC().Truncate(time.Microsecond)
	next, err := s.store.RotateRefreshToken(ctx, old, RefreshToken{
		ID: newID(), Hash: hashed, CreatedAt: now, ExpiresAt: now.Add(s.sessions.RefreshTTL),
	}, now, s.sessions.MaxAge)
	if errors.Is(err, ErrRefreshTokenReused) {
		// Whoever holds the session's access tokens, the client or a thief, they stop
		// working now rather than when they expire.
		if rerr := s.revoke(ctx, next.FamilyID); rerr != nil {
			return Tokens{}, errors.Join(err, rerr)
		}
		return Tokens{}, err
	}
	if err != nil {
		return Tokens{}, err
	}
	// The role is read afresh, so a promotion takes effect at the next refresh.
	u, err := s.store.UserByID(ctx, next.UserID)
	if err != nil {
		return Tokens{}, err
	}
	return s.tokens(u, next.FamilyID, raw)
}

// Logout ends the session a refresh token belongs to: every refresh token of it stops
// working, and so, within seconds, do the access tokens it was given. Any token of the
// session will do, used or not. A token that is not one of ours, or whose session
// has ended already, is no error: the outcome the caller wants holds (RFC 7009 §2.2).
// It returns an apperr.Unavailable error when the access tokens could not be revoked
// (the refresh tokens have been; calling again finishes the job).
func (s *Service) Logout(ctx context.Context, refreshToken string) error {
	hash, ok := HashRefreshToken(refreshToken)
	if !ok {
		return nil
	}
	t, err := s.store.RevokeRefreshTokenFamily(ctx, hash, s.now().UTC())
	if errors.Is(err, ErrRefreshTokenInvalid) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.revoke(ctx, t.FamilyID); err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "the session's access tokens could not be revoked; log out again")
	}
	return nil
}

// revoke ends a session's access tokens: for as long as the last of them can live, with
// a minute more for the verifiers' clock-skew leeway.
func (s *Service) revoke(ctx context.Context, family uuid.UUID) error {
	return s.sessions.Revoker.Revoke(ctx, family.String(), s.signer.TTL()+time.Minute)
}

// Me returns the user with the id (the caller's, from their access token), or ErrNotFound.
func (s *Service) Me(ctx context.Context, id uuid.UUID) (User, error) {
	return s.store.UserByID(ctx, id)
}

// tokens are the access token for u in session and the refresh token that goes with it.
func (s *Service) tokens(u User, session uuid.UUID, refresh string) (Tokens, error) {
	access, err := s.signer.Sign(auth.Principal{UserID: u.ID, Role: u.Role, SessionID: session.String()})
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{AccessToken: access, ExpiresIn: s.signer.TTL(), RefreshToken: refresh}, nil
}

// refreshTokenBytes is the entropy of a refresh token: 256 bits, beyond guessing.
const refreshTokenBytes = 32

// newRefreshToken returns a fresh token and the hash that is stored for it.
func newRefreshToken() (token string, hash []byte) {
	var b [refreshTokenBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	sum := sha256.Sum256(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:]), sum[:]
}

// HashRefreshToken is the hash stored for a refresh token the client sent; ok is false
// when the token cannot be one of ours, which spares the database the lookup.
func HashRefreshToken(token string) (hash []byte, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != refreshTokenBytes {
		return nil, false
	}
	sum := sha256.Sum256(b)
	return sum[:], true
}

// newID is a time-ordered UUID (v7), which keeps index inserts local.
func newID() uuid.UUID {
	// NewV7 fails only when crypto/rand does, which since Go 1.24 crashes instead.
	return uuid.Must(uuid.NewV7())
}
