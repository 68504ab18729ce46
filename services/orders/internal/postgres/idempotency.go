package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// ClaimKey claims the user's Idempotency-Key for a request with fingerprint, for ttl.
// Of concurrent first requests with one key exactly one gets order.KeyClaimNew (the
// primary key decides); the others get order.KeyClaimBusy until it completes, then
// order.KeyClaimReplay.
func (s *Store) ClaimKey(ctx context.Context, userID uuid.UUID, key, fingerprint string, ttl time.Duration) (order.KeyClaim, error) {
	for range 3 { // a row deleted (abandoned) between the insert and the read: again
		tag, err := s.pool.Exec(ctx,
			`INSERT INTO idempotency_keys (user_id, key, fingerprint, locked_until)
			 VALUES ($1, $2, $3, now() + make_interval(secs => $4)) ON CONFLICT DO NOTHING`,
			userID, key, fingerprint, ttl.Seconds())
		if err != nil {
			return order.KeyClaim{}, dbError(err, "claim idempotency key")
		}
		if tag.RowsAffected() == 1 {
			return order.KeyClaim{State: order.KeyClaimNew}, nil
		}
		var c order.KeyClaim
		var stored string
		var status *int
		var expired bool
		err = s.pool.QueryRow(ctx,
			`SELECT fingerprint, status, body, location, coalesce(locked_until < now(), true)
			 FROM idempotency_keys WHERE user_id = $1 AND key = $2`, userID, key).
			Scan(&stored, &status, &c.Body, &c.Location, &expired)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			continue
		case err != nil:
			return order.KeyClaim{}, dbError(err, "read idempotency key")
		case stored != fingerprint:
			return order.KeyClaim{State: order.KeyClaimMismatch}, nil
		case status != nil:
			c.State, c.Status = order.KeyClaimReplay, *status
			return c, nil
		case !expired:
			return order.KeyClaim{State: order.KeyClaimBusy}, nil
		}
		// The request that claimed the key died without answering: take over. Its order,
		// if it made one, has the same id and is found rather than made again.
		tag, err = s.pool.Exec(ctx,
			`UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $3)
			 WHERE user_id = $1 AND key = $2 AND status IS NULL AND locked_until < now()`,
			userID, key, ttl.Seconds())
		if err != nil {
			return order.KeyClaim{}, dbError(err, "take over idempotency key")
		}
		if tag.RowsAffected() == 1 {
			return order.KeyClaim{State: order.KeyClaimNew}, nil
		}
		return order.KeyClaim{State: order.KeyClaimBusy}, nil
	}
	return order.KeyClaim{State: order.KeyClaimBusy}, nil
}

// CompleteKey stores the answer to replay for the user's key and ends the claim.
func (s *Store) CompleteKey(ctx context.Context, userID uuid.UUID, key string, status int, body []byte, location string) error {
	_, err := s.pool.Exec(ctx,
		`UPDATE idempotency_keys SET status = $3, body = $4, location = $5, locked_until = NULL
		 WHERE user_id = $1 AND key = $2`, userID, key, status, body, location)
	return dbError(err, "complete idempotency key")
}

// AbandonKey drops a claim whose request made nothing (it failed before creating the
// order), so that the client may retry with the same key.
func (s *Store) AbandonKey(ctx context.Context, userID uuid.UUID, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND status IS NULL`, userID, key)
	return dbError(err, "abandon idempotency key")
}

// UnlockKey ends the claim of a request that failed after it may have stored its order:
// the key keeps its fingerprint, so a repeat of the same request takes it over at once
// (and finds the order by its id), while another request with the key is refused.
func (s *Store) UnlockKey(ctx context.Context, userID uuid.UUID, key string) error {
	_, err := s.pool.Exec(ctx,
		`UPDATE idempotency_keys SET locked_until = now() - interval '1 microsecond'
		 WHERE user_id = $1 AND key = $2 AND status IS NULL`, userID, key)
	return dbError(err, "unlock idempotency key")
}
