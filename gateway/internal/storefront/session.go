package storefront

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// errNoSession means the browser is not signed in: no cookie, a cookie naming no live
// session, or a session whose tokens no longer work.
var errNoSession = apperr.E(apperr.Unauthorized, "sign in first")

// sessionKeyPrefix starts every shop session's Redis key; the rest is the SHA-256 of
// the session id, never the id itself.
const sessionKeyPrefix = "gateway:shop:session:"

// sessionIDBytes is a session id's entropy: 256 bits, beyond guessing.
const sessionIDBytes = 32

// Session is a signed-in shopper (or admin): who they are, and the tokens the shop
// calls the API with on their behalf.
type Session struct {
	ID     string // the cookie's value
	UserID uuid.UUID
	Role   auth.Role
	Name   string
	Email  string
	Tokens Tokens
}

// Admin reports whether the session is an administrator's.
func (s *Session) Admin() bool { return s != nil && s.Role == auth.RoleAdmin }

// Tokens are what the users service issued at log-in or the last refresh.
type Tokens struct {
	Access       string    `json:"access"`
	Refresh      string    `json:"refresh"`
	AccessExpiry time.Time `json:"access_expiry"`
}

// Sessions keeps the shop's sessions in Redis.
//
// The browser holds only a random id, in an HttpOnly cookie; the tokens stay here, so
// no script in the page, injected or not, can read them, and nothing is kept in
// localStorage. Whoever reads Redis does not get them either: a session is filed
// under the SHA-256 of its id, and its tokens are sealed (AES-GCM) with a key derived
// from the id in another way, so Redis alone holds neither the id nor usable tokens.
type Sessions struct {
	rdb *redis.Client
	ttl time.Duration
}

// NewSessions keeps sessions in rdb for ttl each from sign-in (SHOP_SESSION_TTL). The
// users service ends the tokens' session sooner if it must (log-out elsewhere, a
// reused refresh token, SESSION_MAX_AGE), and the shop's session ends with it.
func NewSessions(rdb *redis.Client, ttl time.Duration) *Sessions {
	return &Sessions{rdb: rdb, ttl: ttl}
}

// Create starts a session and returns it with its new id.
func (s *Sessions) Create(ctx context.Context, sess Session) (Session, error) {
	var raw [sessionIDBytes]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	sess.ID = base64.RawURLEncoding.EncodeToString(raw[:])
	sealed, err := seal(sess.ID, sess.Tokens)
	if err != nil {
		return Session{}, err
	}
	key := sessionKey(sess.ID)
	// One MULTI/EXEC: a session never exists without its expiry.
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "user_id", sess.UserID.String(), "role", string(sess.Role),
			"name", sess.Name, "email", sess.Email, "tokens", sealed)
		p.Expire(ctx, key, s.ttl)
		return nil
	})
	if err != nil {
		return Session{}, storeDown(err)
	}
	return sess, nil
}

// Get returns the live session with id: errNoSession when there is none (including
// for an id that cannot be one), apperr.Unavailable when Redis cannot be reached.
func (s *Sessions) Get(ctx context.Context, id string) (Session, error) {
	if !wellFormedID(id) {
		return Session{}, errNoSession
	}
	v, err := s.rdb.HGetAll(ctx, sessionKey(id)).Result()
	if err != nil {
		return Session{}, storeDown(err)
	}
	if len(v) == 0 {
		return Session{}, errNoSession
	}
	uid, err := uuid.Parse(v["user_id"])
	role := auth.Role(v["role"])
	tokens, serr := unseal(id, v["tokens"])
	if err != nil || !role.Valid() || serr != nil {
		return Session{}, errNoSession // not written by Create: refuse it rather than guess
	}
	return Session{ID: id, UserID: uid, Role: role, Name: v["name"], Email: v["email"], Tokens: tokens}, nil
}

// SetTokens replaces the session's tokens after a refresh, if the session still lives.
func (s *Sessions) SetTokens(ctx context.Context, id string, t Tokens) error {
	sealed, err := seal(id, t)
	if err != nil {
		return err
	}
	// HSET on a key that has just expired would recreate it without an expiry; the
	// script writes only to a session that exists.
	err = setIfExists.Run(ctx, s.rdb, []string{sessionKey(id)}, "tokens", sealed).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return storeDown(err)
	}
	return nil
}

var setIfExists = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
	return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0`)

// Delete ends the session with id; ending one that does not exist is not an error.
func (s *Sessions) Delete(ctx context.Context, id string) error {
	if !wellFormedID(id) {
		return nil
	}
	if err := s.rdb.Del(ctx, sessionKey(id)).Err(); err != nil {
		return storeDown(err)
	}
	return nil
}

// Lock takes the session's refresh lock for at most hold, reporting whether it got
// it: one request at a time refreshes a session's tokens, since a refresh token works
// once and a second use ends the whole session (the users service takes it for a
// stolen token). Unlock releases it.
func (s *Sessions) Lock(ctx context.Context, id string, hold time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, sessionKey(id)+":refresh", "1", hold).Result()
	if err != nil {
		return false, storeDown(err)
	}
	return ok, nil
}

// Unlock releases the refresh lock taken with Lock.
func (s *Sessions) Unlock(ctx context.Context, id string) {
	_ = s.rdb.Del(ctx, sessionKey(id)+":refresh").Err()
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return sessionKeyPrefix + hex.EncodeToString(sum[:])
}

func wellFormedID(id string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil && len(raw) == sessionIDBytes
}

// sealKey is the key the session's tokens are sealed with: derived from the id with
// a label, so that it is not the hash the session is filed under.
func sealKey(id string) cipher.AEAD {
	key := sha256.Sum256([]byte("bazaar shop session tokens\x00" + id))
	block, _ := aes.NewCipher(key[:]) // a 32-byte key never fails
	aead, _ := cipher.NewGCM(block)
	return aead
}

func seal(id string, t Tokens) (string, error) {
	plain, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	aead := sealKey(id)
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawStdEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, nil)), nil
}

func unseal(id, sealed string) (Tokens, error) {
	raw, err := base64.RawStdEncoding.DecodeString(sealed)
	aead := sealKey(id)
	if err != nil || len(raw) < aead.NonceSize() {
		return Tokens{}, errors.New("not a sealed value")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], nil)
	if err != nil {
		return Tokens{}, err
	}
	var t Tokens
	err = json.Unmarshal(plain, &t)
	return t, err
}

func storeDown(err error) error {
	return apperr.Wrap(err, apperr.Unavailable, "the session store (redis) is unavailable")
}
