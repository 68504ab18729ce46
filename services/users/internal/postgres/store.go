// Package postgres is the users service's storage: users, refresh tokens, signing
// keys and the outbox, in Postgres through pgx. It translates database errors into
// the domain's (a unique violation on the e-mail is user.ErrEmailTaken, no rows is
// user.ErrNotFound, an unreachable server is apperr.Unavailable), so nothing above it
// knows SQL.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/services/users/internal/signing"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
	"github.com/bazaar-shop/bazaar/services/users/userevents"
)

// Store implements user.Store on a pool.
type Store struct{ pool *pgxpool.Pool }

var _ user.Store = (*Store)(nil)

// NewStore stores in pool's database, which must have this package's migrations.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const userColumns = `id, email, name, role, password_hash, created_at`

// CreateUser implements user.Store.
func (s *Store) CreateUser(ctx context.Context, u user.User) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx,
			`INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			u.ID, u.Email, u.Name, u.Role, u.PasswordHash, u.CreatedAt)
		if err != nil {
			return err
		}
		return writeRegistered(ctx, tx, u)
	})
	if pgdb.IsUniqueViolation(err, "users_email_key") {
		return user.ErrEmailTaken
	}
	return dbError(err, "create user")
}

// EnsureAdmin implements user.Store. Two processes calling it at once are safe: the
// second insert waits on the first's unique-index entry and then does nothing.
func (s *Store) EnsureAdmin(ctx context.Context, u user.User) (user.User, bool, error) {
	var stored user.User
	var created bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
			 ON CONFLICT ((lower(email))) DO NOTHING`,
			u.ID, u.Email, u.Name, u.Role, u.PasswordHash, u.CreatedAt)
		if err != nil {
			return err
		}
		if created = tag.RowsAffected() == 1; created {
			if err := writeRegistered(ctx, tx, u); err != nil {
				return err
			}
		}
		stored, err = scanUser(tx.QueryRow(ctx,
			`UPDATE users SET role = $2 WHERE lower(email) = lower($1) RETURNING `+userColumns,
			u.Email, auth.RoleAdmin))
		return err
	})
	if err != nil {
		return user.User{}, false, dbError(err, "ensure admin")
	}
	return stored, created, nil
}

// writeRegistered writes u's user.registered, in the wire form userevents publishes.
func writeRegistered(ctx context.Context, tx pgx.Tx, u user.User) error {
	return outbox.Write(ctx, tx, outbox.Event{
		Stream:  userevents.Stream,
		Type:    string(userevents.TypeRegistered),
		Source:  userevents.Source,
		Subject: u.ID.String(),
		Time:    u.CreatedAt,
		Data:    userevents.Registered{UserID: u.ID, Email: u.Email.String(), Name: u.Name.String()},
	})
}

// UserByID implements user.Store.
func (s *Store) UserByID(ctx context.Context, id uuid.UUID) (user.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	return u, dbError(err, "user by id")
}

// UserByEmail implements user.Store.
func (s *Store) UserByEmail(ctx context.Context, email user.Email) (user.User, error) {
	// lower() on both sides matches the unique index, so the lookup uses it.
	u, err := scanUser(s.pool.QueryRow(ctx,
		`SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email))
	return u, dbError(err, "user by email")
}

func scanUser(row pgx.Row) (user.User, error) {
	var u user.User
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.Role, &u.PasswordHash, &u.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return user.User{}, user.ErrNotFound
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, err
}

// CreateRefreshToken implements user.Store.
func (s *Store) CreateRefreshToken(ctx context.Context, t user.RefreshToken) error {
	_, err := s.pool.Exec(ctx, insertRefreshToken, refreshTokenArgs(t)...)
	return dbError(err, "create refresh token")
}

const insertRefreshToken = `INSERT INTO refresh_tokens
	(id, token_hash, user_id, family_id, parent_id, session_started_at, created_at, expires_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`

func refreshTokenArgs(t user.RefreshToken) []any {
	var parent *uuid.UUID
	if t.ParentID != uuid.Nil {
		parent = &t.ParentID
	}
	return []any{t.ID, t.Hash, t.UserID, t.FamilyID, parent, t.SessionStartedAt, t.CreatedAt, t.ExpiresAt}
}

// RotateRefreshToken implements user.Store. The old token's row is locked (SELECT ...
// FOR UPDATE) for the whole transaction, so a concurrent rotation of the same token
// waits, then finds it used and is treated as reuse.
func (s *Store) RotateRefreshToken(ctx context.Context, old []byte, next user.RefreshToken, now time.Time, sessionMaxAge time.Duration) (user.RefreshToken, error) {
	var reused bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var usedAt, revokedAt *time.Time
		var expiresAt time.Time
		err := tx.QueryRow(ctx,
			`SELECT id, user_id, family_id, session_started_at, expires_at, used_at, revoked_at
			 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE`, old).
			Scan(&next.ParentID, &next.UserID, &next.FamilyID, &next.SessionStartedAt, &expiresAt, &usedAt, &revokedAt)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return user.ErrRefreshTokenInvalid
		case err != nil:
			return err
		case usedAt != nil:
			// Someone holds a token that was already traded in: either the client or
			// a thief has a copy, and there is no telling which. End the session.
			reused = true
			_, err := tx.Exec(ctx,
				`UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL`,
				next.FamilyID, now)
			return err // commit the revocation; the caller gets ErrRefreshTokenReused
		case revokedAt != nil || !now.Before(expiresAt):
			return user.ErrRefreshTokenInvalid
		}
		// The limit is applied from the start time, not stored as an end, so that a
		// SESSION_MAX_AGE lowered later binds the sessions already open too.
		next.SessionStartedAt = next.SessionStartedAt.UTC()
		end := next.SessionStartedAt.Add(sessionMaxAge)
		if !now.Before(end) {
			return user.ErrSessionExpired
		}
		if next.ExpiresAt.After(end) {
			next.ExpiresAt = end
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = $2 WHERE id = $1`, next.ParentID, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, insertRefreshToken, refreshTokenArgs(next)...)
		return err
	})
	switch {
	case err != nil:
		return user.RefreshToken{}, dbError(err, "rotate refresh token")
	case reused:
		return user.RefreshToken{ID: next.ParentID, UserID: next.UserID, FamilyID: next.FamilyID}, user.ErrRefreshTokenReused
	}
	return next, nil
}

// RevokeRefreshTokenFamily implements user.Store.
func (s *Store) RevokeRefreshTokenFamily(ctx context.Context, token []byte, now time.Time) (user.RefreshToken, error) {
	var t user.RefreshToken
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`SELECT id, user_id, family_id, session_started_at FROM refresh_tokens WHERE token_hash = $1`, token).
			Scan(&t.ID, &t.UserID, &t.FamilyID, &t.SessionStartedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return user.ErrRefreshTokenInvalid
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL`, t.FamilyID, now)
		return err
	})
	if err != nil {
		return user.RefreshToken{}, dbError(err, "revoke refresh token family")
	}
	t.SessionStartedAt = t.SessionStartedAt.UTC()
	return t, nil
}

// signingKeysLock is the advisory lock key under which the first signing key is made,
// so that replicas starting together on an empty table agree on one key. (goose's own
// lock uses a different key.)
const signingKeysLock int64 = 0x62617a7573657273 // "bazusers"

// SigningKeys returns the stored signing keys, newest first, opening sealed seeds with
// kek. It makes a key with generate and stores it (sealed when kek is set, in plain
// when it is nil) when there is none, and, when maxAge is positive, when the newest is
// older than maxAge by the database's clock: a rotation, after which the new key signs
// and the older ones still verify what they signed. added says whether it made one.
// Replicas that start together make one key, not one each, and get the same ring. A
// sealed key without a kek is signing.ErrNoKEK; one that kek does not open is
// signing.ErrWrongKEK.
func (s *Store) SigningKeys(ctx context.Context, generate func() (signing.Key, error), kek *signing.KEK, maxAge time.Duration) (ring signing.Ring, added bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, signingKeysLock); err != nil {
			return err
		}
		var err error
		if ring, err = loadKeys(ctx, tx, kek); err != nil {
			return err
		}
		if len(ring) > 0 {
			if maxAge <= 0 {
				return nil
			}
			var stale bool
			if err := tx.QueryRow(ctx, `SELECT $1::timestamptz < now() - make_interval(secs => $2)`,
				ring.Current().CreatedAt, maxAge.Seconds()).Scan(&stale); err != nil || !stale {
				return err
			}
		}
		k, err := generate()
		if err != nil {
			return err
		}
		var plain, sealed []byte
		if kek != nil {
			sealed = kek.Seal(k.ID, k.Private.Seed())
		} else {
			plain = k.Private.Seed()
		}
		err = tx.QueryRow(ctx,
			`INSERT INTO signing_keys (kid, seed, sealed_seed) VALUES ($1, $2, $3) RETURNING created_at`,
			k.ID, plain, sealed).Scan(&k.CreatedAt)
		k.CreatedAt = k.CreatedAt.UTC()
		ring, added = append(signing.Ring{k}, ring...), true
		return err
	})
	if err != nil {
		return nil, false, dbError(err, "signing keys")
	}
	return ring, added, nil
}

// SealSigningKeys brings every stored signing key under kek, in one transaction: a key
// stored in plain (from before there was a KEK) is sealed, and one sealed under
// previous (the KEK before a rotation; nil when there is none) is sealed again under
// kek. It returns how many keys it sealed and how many it sealed again. A sealed key
// that opens with neither is signing.ErrWrongKEK, and then nothing changes, so that a
// mistaken KEK never gets a key sealed under it. A key keeps its kid and creation
// time, so tokens it signed still verify.
func (s *Store) SealSigningKeys(ctx context.Context, kek, previous *signing.KEK) (sealed, resealed int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The lock SigningKeys takes: a replica loading or sealing keys meanwhile sees
		// every row either before or after, and replicas starting together seal once.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, signingKeysLock); err != nil {
			return err
		}
		type row struct {
			kid          string
			seed, sealed []byte
		}
		rows, err := tx.Query(ctx, `SELECT kid, seed, sealed_seed FROM signing_keys ORDER BY kid`)
		if err != nil {
			return err
		}
		stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.kid, &x.seed, &x.sealed)
			return x, err
		})
		if err != nil {
			return err
		}
		// Every row is judged before any is written: one that opens with neither KEK
		// stops the lot.
		var updates []row
		for _, r := range stored {
			seed := r.seed
			if seed == nil {
				_, err := kek.Open(r.kid, r.sealed)
				if err == nil {
					continue // already under kek
				}
				if previous == nil {
					return err
				}
				if seed, err = previous.Open(r.kid, r.sealed); err != nil {
					return err
				}
				resealed++
			} else {
				sealed++
			}
			// Checked before it is sealed, so that a damaged row is not hidden under a
			// seal that would then open to a key that is not the kid's.
			if err := checkSeed(r.kid, seed); err != nil {
				return err
			}
			updates = append(updates, row{kid: r.kid, sealed: kek.Seal(r.kid, seed)})
		}
		for _, u := range updates {
			if _, err := tx.Exec(ctx, `UPDATE signing_keys SET seed = NULL, sealed_seed = $2 WHERE kid = $1`, u.kid, u.sealed); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, dbError(err, "seal signing keys")
	}
	return sealed, resealed, nil
}

// checkSeed says whether seed is the key its row's kid names.
func checkSeed(kid string, seed []byte) error {
	k, err := signing.FromSeed(seed)
	if err != nil {
		return fmt.Errorf("signing key %s: %w", kid, err)
	}
	if k.ID != kid {
		return fmt.Errorf("signing key %s: stored kid does not match its key", kid)
	}
	return nil
}

func loadKeys(ctx context.Context, tx pgx.Tx, kek *signing.KEK) (signing.Ring, error) {
	rows, err := tx.Query(ctx, `SELECT kid, seed, sealed_seed, created_at FROM signing_keys ORDER BY created_at DESC, kid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ring signing.Ring
	for rows.Next() {
		var kid string
		var seed, sealed []byte
		var created time.Time
		if err := rows.Scan(&kid, &seed, &sealed, &created); err != nil {
			return nil, err
		}
		if seed == nil {
			if kek == nil {
				return nil, fmt.Errorf("signing key %s: %w", kid, signing.ErrNoKEK)
			}
			if seed, err = kek.Open(kid, sealed); err != nil {
				return nil, err
			}
		}
		k, err := signing.FromSeed(seed)
		if err != nil {
			return nil, err
		}
		if k.ID != kid {
			return nil, fmt.Errorf("signing key %s: stored kid does not match its key", kid)
		}
		k.CreatedAt = created.UTC()
		ring = append(ring, k)
	}
	return ring, rows.Err()
}

// dbError reports a database error as pkg/pgdb classifies it: a domain error passes
// through, an unreachable server is a 503 naming this database, the rest a 500.
func dbError(err error, op string) error { return pgdb.Error(err, "users", op) }
