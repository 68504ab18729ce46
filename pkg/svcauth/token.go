package svcauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/tokencache"
)

const (
	// TokenType is the typ header of a service token. Access tokens are at+jwt and
	// signed by other keys; the distinct type keeps either from passing for the other.
	TokenType = "svc+jwt"
	// Lifetime is how long a service token is valid. Short, since a token travels in
	// the clear on the internal network and could be replayed at its audience until it
	// expires.
	Lifetime = time.Minute
	// MaxLifetime is the longest lifetime (exp − iat) a callee accepts.
	MaxLifetime = 5 * time.Minute
	// ReloadEvery is how often both sides look at their key files again: a signer its
	// private key, a verifier its trust directory. Rotate waits at least this long
	// between publishing a new public key and signing with it.
	ReloadEvery = 5 * time.Second
)

// Signer issues service tokens as one service, with the private key in a file that it
// reads again when it changes. A token is reused for half its lifetime. Safe for
// concurrent use.
type Signer struct {
	service string
	file    string
	now     func() time.Time

	mu      sync.Mutex
	key     ed25519.PrivateKey
	kid     string
	checked time.Time // when the file was last looked at
	modTime time.Time
	tokens  map[string]issued // by audience
}

type issued struct {
	token string
	renew time.Time
}

// NewSigner signs as service with the key in file (SERVICE_KEY_FILE). It fails if the
// file cannot be read now.
func NewSigner(service, file string) (*Signer, error) {
	if err := checkName(service); err != nil {
		return nil, err
	}
	s := &Signer{service: service, file: file, now: time.Now, tokens: map[string]issued{}}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// WithClock makes s tell the time with now (tests); it returns s.
func (s *Signer) WithClock(now func() time.Time) *Signer {
	s.now = now
	return s
}

// Service is the name s signs as.
func (s *Signer) Service() string { return s.service }

func (s *Signer) load() error {
	info, err := os.Stat(s.file)
	if err != nil {
		return fmt.Errorf("svcauth: the service key: %w", err)
	}
	key, err := ReadPrivateKey(s.file)
	if err != nil {
		return err
	}
	s.key, s.kid, s.modTime = key, auth.Thumbprint(key.Public().(ed25519.PublicKey)), info.ModTime()
	clear(s.tokens)
	return nil
}

// Token is a token that proves s's service to audience, the service called.
func (s *Signer) Token(audience string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.checked) >= ReloadEvery {
		s.checked = now
		// A key file that cannot be read now (being replaced, or removed by mistake)
		// leaves the key in memory in use: refusing to call would turn a passing
		// filesystem hiccup into failed orders.
		if info, err := os.Stat(s.file); err == nil && !info.ModTime().Equal(s.modTime) {
			_ = s.load()
		}
	}
	if t, ok := s.tokens[audience]; ok && now.Before(t.renew) {
		return t.token, nil
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.RegisteredClaims{
		Issuer:    s.service,
		Subject:   s.service,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(Lifetime)),
		ID:        hex.EncodeToString(jti[:]),
	})
	tok.Header["kid"] = s.kid
	tok.Header["typ"] = TokenType
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("svcauth: sign: %w", err)
	}
	s.tokens[audience] = issued{token: signed, renew: now.Add(Lifetime / 2)}
	return signed, nil
}

// Verifier checks the service tokens sent to one service against a trust directory
// that it reads again every ReloadEvery (and at once, at most that often, when a token
// names a key it does not know). Safe for concurrent use.
type Verifier struct {
	self string
	dir  string
	now  func() time.Time

	mu     sync.Mutex
	keys   trusted
	loaded time.Time
	// verified are tokens whose signature and claims were checked: a caller's Signer
	// sends the same token for half its lifetime, and its Ed25519 check was a fifth
	// of a busy callee's CPU.
	verified *tokencache.Cache[verifiedToken]
}

// verifiedToken is what Verify needs to accept a token again without its signature
// check: it is kept until its exp (with auth.Leeway, as the parser allows), and stands
// only while its key is still trusted under the same service's name.
type verifiedToken struct{ service, kid string }

// maxVerified bounds the cache: callers are a handful of services, each with a token
// per callee at a time.
const maxVerified = 1024

// unknownKidReload is how soon after the last read a token with an unknown key id
// makes the verifier read its trust directory again: soon enough for a new key, seldom
// enough that tokens with made-up key ids cannot turn into a flood of reads.
const unknownKidReload = time.Second

// NewVerifier verifies tokens sent to service self against the public keys in dir
// (SERVICE_TRUST_DIR). It fails if the directory cannot be read now.
func NewVerifier(self, dir string) (*Verifier, error) {
	if err := checkName(self); err != nil {
		return nil, err
	}
	v := &Verifier{self: self, dir: dir, now: time.Now, verified: tokencache.New[verifiedToken](maxVerified)}
	keys, err := readTrustDir(dir)
	if err != nil {
		return nil, err
	}
	v.keys, v.loaded = keys, v.now()
	return v, nil
}

// WithClock makes v tell the time with now (tests); it returns v.
func (v *Verifier) WithClock(now func() time.Time) *Verifier {
	v.now = now
	return v
}

// key finds a trusted key by id, reading the directory again when it is due.
func (v *Verifier) key(kid string) (trustedKey, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	k, ok := v.keys[kid]
	since := now.Sub(v.loaded)
	if since >= ReloadEvery || (!ok && since >= unknownKidReload) {
		v.loaded = now
		// While the directory cannot be read the keys read before stay in force:
		// a directory being replaced must not lock every caller out.
		if keys, err := readTrustDir(v.dir); err == nil {
			v.keys = keys
			k, ok = keys[kid]
		}
	}
	return k, ok
}

var errNotServiceToken = errors.New("not a service token: typ must be " + TokenType + " and there must be no crit header")

// Verify checks a service token and returns the calling service's name. Anything but a
// well-formed, unexpired token for this service, signed by a key published under the
// name it claims, is apperr.Unauthorized.
func (v *Verifier) Verify(token string) (string, error) {
	if service, ok := v.known(token); ok {
		return service, nil
	}
	var c jwt.RegisteredClaims
	var signer trustedKey
	var signerKid string
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{auth.Algorithm}),
		jwt.WithAudience(v.self),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(auth.Leeway),
		jwt.WithTimeFunc(v.now),
	)
	_, err := parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		typ, _ := t.Header["typ"].(string)
		if _, crit := t.Header["crit"]; crit || !strings.EqualFold(typ, TokenType) {
			return nil, errNotServiceToken
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := v.key(kid)
		if !ok {
			return nil, fmt.Errorf("no trusted service key has id %q", kid)
		}
		signer, signerKid = k, kid
		return k.key, nil
	})
	if err != nil {
		return "", apperr.Wrap(err, apperr.Unauthorized, "a valid service credential for "+v.self+" is required")
	}
	// The key was published under a service's name; the token must claim that name,
	// or one service's key could speak for another.
	if c.Issuer != signer.service || c.Subject != signer.service || c.IssuedAt == nil ||
		c.ExpiresAt.Sub(c.IssuedAt.Time) > MaxLifetime {
		return "", apperr.E(apperr.Unauthorized, "a valid service credential for %s is required", v.self)
	}
	v.verified.Put(token, verifiedToken{service: signer.service, kid: signerKid}, c.ExpiresAt.Add(auth.Leeway), v.now())
	return signer.service, nil
}

// known reports the caller of a token verified before that still stands: not expired,
// and its key still trusted under its service's name (the trust directory is read
// again as usual, so a key withdrawn stops its tokens within ReloadEvery).
func (v *Verifier) known(token string) (string, bool) {
	e, ok := v.verified.Get(token, v.now())
	if !ok {
		return "", false
	}
	if k, trusted := v.key(e.kid); !trusted || k.service != e.service {
		v.verified.Delete(token)
		return "", false
	}
	return e.service, true
}

type callerKey struct{}

// Caller is the verified calling service put in the context by Require.
func Caller(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(callerKey{}).(string)
	return s, ok
}

// Require lets a request through only with a valid service token from one of callers:
// no token or an invalid one is a 401 problem, a valid token from another service a
// 403. Refusals are logged as warnings with the reason, since on an internal listener
// every one is either a misconfiguration or an attack.
func (v *Verifier) Require(log *slog.Logger, callers ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token := auth.BearerToken(r)
			if token == "" {
				log.WarnContext(r.Context(), "internal call without a service credential", "path", r.URL.Path, "remote", r.RemoteAddr)
				w.Header().Set("WWW-Authenticate", `Bearer realm="bazaar-internal"`)
				problem.Write(w, r, log, apperr.E(apperr.Unauthorized, "a service credential for %s is required", v.self))
				return
			}
			caller, err := v.Verify(token)
			if err != nil {
				log.WarnContext(r.Context(), "internal call with an invalid service credential", "path", r.URL.Path,
					"remote", r.RemoteAddr, "err", errors.Unwrap(err))
				w.Header().Set("WWW-Authenticate", `Bearer realm="bazaar-internal", error="invalid_token"`)
				problem.Write(w, r, log, err)
				return
			}
			if !slices.Contains(callers, caller) {
				log.WarnContext(r.Context(), "internal call from a service this route does not serve", "path", r.URL.Path,
					"caller", caller, "allowed", callers)
				problem.Write(w, r, log, apperr.E(apperr.Forbidden, "the %s service may not call this route", caller))
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)))
		})
	}
}
