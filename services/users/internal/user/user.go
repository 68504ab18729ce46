// Package user is the users service's domain: accounts with an e-mail, a password and
// a role, and the sessions they log in to (a short-lived access token plus a one-time,
// rotating refresh token). Input is parsed into typed values (Email, Password, Name)
// before it reaches the Service, so an invalid value cannot get in.
package user

import (
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// The errors of the domain. Each is an *apperr.Error, so it renders as the right
// problem response and callers match it with errors.Is.
var (
	// ErrEmailTaken means another account has the e-mail (in any letter case).
	ErrEmailTaken = apperr.E(apperr.Conflict, "an account with this e-mail already exists")
	// ErrNotFound means there is no such user.
	ErrNotFound = apperr.E(apperr.NotFound, "no such user")
	// ErrBadCredentials is the one answer to a failed login, whether the e-mail is
	// unknown or the password wrong, so that login cannot be used to probe for accounts.
	ErrBadCredentials = apperr.E(apperr.Unauthorized, "the e-mail or password is incorrect")
	// ErrRefreshTokenInvalid means the refresh token is unknown, expired or revoked.
	ErrRefreshTokenInvalid = apperr.E(apperr.Unauthorized, "the refresh token is invalid or expired")
	// ErrRefreshTokenReused means the refresh token had been used already. That is
	// what a stolen token looks like, so its whole family has been revoked.
	ErrRefreshTokenReused = apperr.E(apperr.Unauthorized, "the refresh token was already used; the session has been ended, log in again")
	// ErrSessionExpired means the session has reached its maximum age (SESSION_MAX_AGE
	// from its log-in), which no refresh extends.
	ErrSessionExpired = apperr.E(apperr.Unauthorized, "the session has reached its maximum age; log in again")
)

// errTooManyAttempts is what a TooManyAttemptsError renders as.
var errTooManyAttempts = apperr.E(apperr.RateLimited, "too many failed log-ins; try again later")

// TooManyAttemptsError refuses a log-in attempt that comes too soon after failed ones.
// It is an apperr.RateLimited error (a 429); RetryAfter is how long to wait.
type TooManyAttemptsError struct{ RetryAfter time.Duration }

func (e *TooManyAttemptsError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", errTooManyAttempts, e.RetryAfter)
}

// Unwrap makes it the apperr error it renders as.
func (e *TooManyAttemptsError) Unwrap() error { return errTooManyAttempts }

// Limits on input.
const (
	MaxEmailLen    = 254 // RFC 5321's limit on a forward path
	MinPasswordLen = 8
	// MaxPasswordLen bounds the work a request can make the hasher do; it is far above
	// any passphrase a person types.
	MaxPasswordLen = 128
	MaxNameLen     = 100
)

// Email is a syntactically valid e-mail address, trimmed and lower-cased: the service
// treats addresses case-insensitively, so the folded form is the identity.
type Email string

// ParseEmail reads an e-mail address. It returns an apperr.Invalid error saying what
// is wrong.
func ParseEmail(s string) (Email, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", invalid("is required")
	}
	if len(s) > MaxEmailLen {
		return "", invalid("must be at most %d characters", MaxEmailLen)
	}
	// net/mail accepts display names and comments ("Ann <ann@x.com>"); insisting that
	// the parsed address is the whole input leaves only a bare addr-spec.
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return "", invalid("must be an e-mail address such as ann@example.com")
	}
	local, domain, _ := strings.Cut(s, "@")
	if len(local) > 64 || !strings.Contains(domain, ".") || strings.HasPrefix(domain, "[") {
		return "", invalid("must be an e-mail address such as ann@example.com")
	}
	return Email(s), nil
}

func (e Email) String() string { return string(e) }

// Password is a plain-text password that meets the length rules. It never prints
// itself, so a stray log line or %v cannot leak it.
type Password struct{ plain string }

// ParsePassword checks a new password: MinPasswordLen to MaxPasswordLen characters.
// Any characters are allowed and nothing is trimmed (NIST SP 800-63B: length is what
// makes a password strong; composition rules do not). It returns an apperr.Invalid error.
func ParsePassword(s string) (Password, error) {
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0:
		return Password{}, invalid("is required")
	case n < MinPasswordLen:
		return Password{}, invalid("must be at least %d characters", MinPasswordLen)
	case n > MaxPasswordLen:
		return Password{}, invalid("must be at most %d characters", MaxPasswordLen)
	}
	return Password{plain: s}, nil
}

func (Password) String() string { return "[redacted]" }

// LogValue keeps the password out of structured logs.
func (Password) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Name is a user's display name: trimmed, 1 to MaxNameLen characters, no control
// characters (it goes into e-mail headers and logs, where a newline could forge lines).
type Name string

// ParseName reads a display name. It returns an apperr.Invalid error.
func ParseName(s string) (Name, error) {
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0:
		return "", invalid("is required")
	case n > MaxNameLen:
		return "", invalid("must be at most %d characters", MaxNameLen)
	case strings.ContainsFunc(s, unicode.IsControl):
		return "", invalid("must not contain control characters")
	}
	return Name(s), nil
}

func (n Name) String() string { return string(n) }

// Registration is a valid sign-up: what Register and EnsureAdmin take.
type Registration struct {
	Email    Email
	Password Password
	Name     Name
}

// User is an account.
type User struct {
	ID    uuid.UUID
	Email Email
	Name  Name
	Role  auth.Role
	// PasswordHash is the encoded hash (argon2id, PHC format); never the password.
	PasswordHash string
	CreatedAt    time.Time
}

// RefreshToken is the stored side of a refresh token: its SHA-256, never the token.
// Tokens descending from one login share a FamilyID, which is the session's id (the
// sid claim of its access tokens), and the time of that login.
type RefreshToken struct {
	ID               uuid.UUID
	Hash             []byte
	UserID           uuid.UUID
	FamilyID         uuid.UUID
	ParentID         uuid.UUID // uuid.Nil for the first token of a family
	SessionStartedAt time.Time // the login's time, the same for the whole family
	CreatedAt        time.Time
	ExpiresAt        time.Time
}

func invalid(format string, args ...any) error { return apperr.E(apperr.Invalid, format, args...) }
