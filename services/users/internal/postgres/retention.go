package postgres

import (
	"context"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

// refreshTokenBatch bounds the sessions one DELETE removes, so that no statement holds
// locks or builds WAL for long while people log in.
const refreshTokenBatch = 1_000

// DeleteDeadRefreshTokens deletes the refresh tokens of every session (a family: one
// login and its rotations) that has been dead for longer than age — each of its tokens
// expired or revoked that long ago — and returns how many tokens went. It works in
// batches of sessions; a batch that fails leaves the earlier ones deleted.
//
// A session goes whole or not at all, never token by token. A used token is what
// reuse detection looks up: presented again, it revokes its family, and it must stay
// while any token of the family could still be valid, or a stolen copy would merely
// be "unknown" and the live session it came from would carry on. Parents also own
// their children (parent_id ... ON DELETE CASCADE), so deleting an old used root
// would take the live tokens after it with it.
func (s *Store) DeleteDeadRefreshTokens(ctx context.Context, age time.Duration) (int64, error) {
	// least() skips NULLs: a token's death is its expiry, or its revocation if
	// earlier. A family is dead since its last token died.
	n, err := pgdb.DeleteInBatches(ctx, s.pool,
		`DELETE FROM refresh_tokens WHERE family_id IN (
		     SELECT family_id FROM refresh_tokens
		     GROUP BY family_id
		     HAVING max(least(expires_at, revoked_at)) < now() - make_interval(secs => $1)
		     LIMIT $2)`,
		age.Seconds(), refreshTokenBatch)
	return n, dbError(err, "delete dead refresh tokens")
}
