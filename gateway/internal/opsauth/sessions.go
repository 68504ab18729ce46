package opsauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// ErrNoSession means a session id names no live session: it never existed, it
// expired, or it was ended by a log-out.
var ErrNoSession = apperr.E(apperr.Unauthorized, "no such session; sign in again")

// keyPrefix starts every session's Redis key; the rest is the SHA-256 of the id.
const keyPrefix = "gateway:session:"

// idBytes is the session id's entropy: 256 bits, beyond guessing.
const idBytes = 32

// Session is a signed-in browser: whom it belongs to, as the access token presented
// at sign-in said.
type Session struct {
	UserID uuid.UUID
	Role   auth.Role
}

// Sessions keeps sessions in Redis, each for a fixed time from sign-in.
//
// A session is keyed by the SHA-256 of its id, never the id itself, so that whoever
// can read Redis (a replica, a backup, a KEYS listing) sees no id that would sign
// them in. The id is 32 random bytes, so a plain hash is enough: there is nothing to
// brute-force that a salt would slow down.
type Sessions struct {
	rdb *redis.Client
	ttl time.Duration
}

// NewSessions keeps sessions in rdb for ttl each (OPS_SESSION_TTL). A session is not
// extended by use: after ttl its owner signs in again, which also re-checks that they
// are still an administrator.
func NewSessions(rdb *redis.Client, ttl time.Duration) *Sessions {
	return &Sessions{rdb: rdb, ttl: ttl}
}

// TTL is how long a new session lives.
func (s *Sessions) TTL() time.Duration { return s.ttl }

// Create starts a session for sess and returns its id, the value of the cookie. It
// fails with apperr.Unavailable when Redis cannot be reached.
func (s *Sessions) Create(ctx context.Context, sess Session) (string, error) {
	var raw [idBytes]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	key := sessionKey(id)
	// One MULTI/EXEC: a session never exists without its expiry.
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "user_id", sess.UserID.String(), "role", string(sess.Role),
			"created_at", time.Now().UTC().Format(time.RFC3339))
		p.Expire(ctx, key, s.ttl)
		return nil
	})
	if err != nil {
		return "", storeDown(err)
	}
	return id, nil
}

// Get returns the live session with id. It fails with ErrNoSession when there is none
// (including for an id that cannot be one), and with apperr.Unavailable when Redis
// cannot be reached.
func (s *Sessions) Get(ctx context.Context, id string) (Session, error) {
	if !wellFormed(id) {
		// A forged or mangled cookie: no need to ask Redis.
		return Session{}, ErrNoSession
	}
	v, err := s.rdb.HGetAll(ctx, sessionKey(id)).Result()
	if err != nil {
		return Session{}, storeDown(err)
	}
	if len(v) == 0 {
		return Session{}, ErrNoSession
	}
	uid, err := uuid.Parse(v["user_id"])
	role := auth.Role(v["role"])
	if err != nil || !role.Valid() {
		// Not written by Create; refuse it rather than guess.
		return Session{}, ErrNoSession
	}
	return Session{UserID: uid, Role: role}, nil
}

// Delete ends the session with id; ending one that does not exist is not an error. It
// fails with apperr.Unavailable when Redis cannot be reached.
func (s *Sessions) Delete(ctx context.Context, id string) error {
	if !wellFormed(id) {
		return nil
	}
	if err := s.rdb.Del(ctx, sessionKey(id)).Err(); err != nil {
		return storeDown(err)
	}
	return nil
}

// sessionKey is the Redis key of the session with id.
func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return keyPrefix + hex.EncodeToString(sum[:])
}

// wellFormed reports whether id could have come from Create.
func wellFormed(id string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil && len(raw) == idBytes
}

func storeDown(err error) error {
	return apperr.Wrap(err, apperr.Unavailable, "the session store (redis) is unavailable")
}
