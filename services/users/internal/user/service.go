package user

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

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
	// marks it used and stores next as its child (same user and family; next's ID,
	// Hash, CreatedAt and ExpiresAt are taken as given) and returns the child. Of
	// concurrent calls with the same token at most one succeeds. A token that was
	// already used is ErrRefreshTokenReused, and its whole family is revoked first; an
	// unknown, revoked or expired (at now) token is ErrRefreshTokenInvalid.
	RotateRefreshToken(ctx context.Context, old []byte, next RefreshToken, now time.Time) (RefreshToken, error)
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

// Clock tells the time; tests set it.
type Clock interface{ Now() time.Time }

// SystemClock is the real time.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// Tokens are what a login or refresh hands the client.
type Tokens struct {
	AccessToken string
	ExpiresIn   time.Duration // the access token's lifetime
	// RefreshToken is opaque: 32 random bytes, base64url. The server keeps only its hash.
	RefreshToken string
}

// Service registers users, logs them in and refreshes their sessions.
type Service struct {
	store      Store
	hasher     Hasher
	signer     TokenSigner
	clock      Clock
	refreshTTL time.Duration
	// dummyHash is checked against when a login names an unknown e-mail, so that the
	// answer takes as long as a wrong password and timing does not reveal accounts.
	dummyHash string
}

// NewService makes the service; refresh tokens live for refreshTTL. It fails only when
// the hasher does.
func NewService(store Store, hasher Hasher, signer TokenSigner, clock Clock, refreshTTL time.Duration) (*Service, error) {
	dummy, err := hasher.Hash(rand.Text())
	if err != nil {
		return nil, fmt.Errorf("hash the dummy password: %w", err)
	}
	return &Service{store: store, hasher: hasher, signer: signer, clock: clock, refreshTTL: refreshTTL, dummyHash: dummy}, nil
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
		CreatedAt: s.clock.Now().UTC().Truncate(time.Microsecond),
	}, nil
}

// Login checks an e-mail and password and starts a session. Every failure that is
// the caller's is ErrBadCredentials, the same for an unknown e-mail as for a wrong
// password, and takes the same time.
func (s *Service) Login(ctx context.Context, email, password string) (Tokens, error) {
	// An over-long password cannot be right (none can be set) and would only cost
	// hashing time; refusing it says nothing about whether the e-mail exists.
	if utf8.RuneCountInString(password) > MaxPasswordLen {
		return Tokens{}, ErrBadCredentials
	}
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
	now := s.clock.Now().UTC()
	family := newID()
	err = s.store.CreateRefreshToken(ctx, RefreshToken{
		ID: family, Hash: hashed, UserID: u.ID, FamilyID: family,
		CreatedAt: now, ExpiresAt: now.Add(s.refreshTTL),
	})
	if err != nil {
		return Tokens{}, err
	}
	return s.tokens(u, raw)
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
// revoked token, and ErrRefreshTokenReused (after ending the token's whole session
// family) for one that was used before.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	old, ok := HashRefreshToken(refreshToken)
	if !ok {
		return Tokens{}, ErrRefreshTokenInvalid
	}
	raw, hashed := newRefreshToken()
	now := s.clock.Now().UTC()
	next, err := s.store.RotateRefreshToken(ctx, old, RefreshToken{
		ID: newID(), Hash: hashed, CreatedAt: now, ExpiresAt: now.Add(s.refreshTTL),
	}, now)
	if err != nil {
		return Tokens{}, err
	}
	// The role is read afresh, so a promotion takes effect at the next refresh.
	u, err := s.store.UserByID(ctx, next.UserID)
	if err != nil {
		return Tokens{}, err
	}
	return s.tokens(u, raw)
}

// Me returns the user with the id (the caller's, from their access token), or ErrNotFound.
func (s *Service) Me(ctx context.Context, id uuid.UUID) (User, error) {
	return s.store.UserByID(ctx, id)
}

func (s *Service) tokens(u User, refresh string) (Tokens, error) {
	access, err := s.signer.Sign(auth.Principal{UserID: u.ID, Role: u.Role})
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
