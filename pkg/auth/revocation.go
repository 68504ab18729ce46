package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revocations says whether a session (a token's sid) has been ended before its access
// tokens expired: logged out, or revoked because its refresh token was reused.
type Revocations interface {
	// Revoked reports whether the session sid has ended. An error means it cannot
	// tell (the list is unreachable).
	Revoked(ctx context.Context, sid string) (bool, error)
}

// RevokedKeyPrefix starts the Redis key that marks an ended session:
// auth:revoked:<sid> = "1". The users service writes it, with a time to live of the
// access-token lifetime plus a minute (after that every token of the session has
// expired anyway); the gateway and the services read it.
const RevokedKeyPrefix = "auth:revoked:"

// DefaultRevocationTimeout bounds one look-up of the revocation list; past it the token
// is judged without it (see Verifier.Verify).
const DefaultRevocationTimeout = 250 * time.Millisecond

// RedisRevocationStore is the revocation list kept in Redis. It is safe for concurrent
// use.
type RedisRevocationStore struct {
	rdb redis.UniversalClient
	// Timeout bounds each call. It can cut a call short only if the client honours
	// context deadlines (redis.Options.ContextTimeoutEnabled); otherwise its own read
	// and write timeouts do.
	Timeout time.Duration
}

var _ Revocations = (*RedisRevocationStore)(nil)

// RedisRevocations is the revocation list in rdb, each call bounded by
// DefaultRevocationTimeout.
func RedisRevocations(rdb redis.UniversalClient) *RedisRevocationStore {
	return &RedisRevocationStore{rdb: rdb, Timeout: DefaultRevocationTimeout}
}

// Revoked implements Revocations.
func (s *RedisRevocationStore) Revoked(ctx context.Context, sid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	n, err := s.rdb.Exists(ctx, RevokedKeyPrefix+sid).Result()
	if err != nil {
		return false, fmt.Errorf("read session revocation: %w", err)
	}
	return n > 0, nil
}

// Revoke ends the session sid for every verifier that reads this list, for ttl, which
// must outlast every access token the session was given. Unlike Revoked it is bounded
// only by ctx and the client: a write that is given up leaves a session open.
func (s *RedisRevocationStore) Revoke(ctx context.Context, sid string, ttl time.Duration) error {
	if sid == "" {
		return errors.New("revoke session: no session id")
	}
	if err := s.rdb.Set(ctx, RevokedKeyPrefix+sid, "1", ttl).Err(); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}
