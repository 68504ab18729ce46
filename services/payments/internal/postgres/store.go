// Package postgres is the payments service's storage: payments and the outbox, in
// Postgres through pgx. Each status change of a payment is written in one transaction
// with its event. It translates database errors into the domain's (no rows is
// payment.ErrNotFound, an unreachable server is apperr.Unavailable), so nothing above
// it knows SQL.
package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
	"github.com/bazaar-shop/bazaar/services/payments/paymentevents"
)

const orderIDConstraint = "payments_order_id_key"

// Store implements payment.Store on a pool.
type Store struct{ pool *pgxpool.Pool }

var _ payment.Store = (*Store)(nil)

// NewStore stores in pool's database, which must have this package's migrations.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const columns = `id, order_id, user_id, amount_cents, currency, method, status, decline_code,
	processor_ref, idempotency_key, request_hash, created_at, settled_at, refunded_at`

// CreatePending implements payment.Store. Concurrent calls for one order are safe: the
// later inserts wait on the first's unique-index entry, then do nothing. The order's
// advisory lock orders it against Void.
func (s *Store) CreatePending(ctx context.Context, p payment.Payment) error {
	if p.Status != payment.StatusPending {
		return fmt.Errorf("create a %s payment: %w", p.Status, payment.ErrBadTransition)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		voided, err := lockOrder(ctx, tx, p.OrderID)
		if err != nil || voided {
			return cmp.Or(err, error(payment.ErrVoided))
		}
		_, err = tx.Exec(ctx, `INSERT INTO payments
			(id, order_id, user_id, amount_cents, currency, method, status, idempotency_key, request_hash, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT ON CONSTRAINT `+orderIDConstraint+` DO NOTHING`,
			p.ID, p.OrderID, p.UserID, p.Amount.Cents, p.Amount.Currency, p.Method, p.Status,
			p.IdempotencyKey, p.RequestHash, p.CreatedAt)
		return err
	})
	if errors.Is(err, payment.ErrVoided) {
		return err
	}
	return dbError(err, "create pending payment")
}

// Void implements payment.Store.
func (s *Store) Void(ctx context.Context, order uuid.UUID, at time.Time) (bool, error) {
	voided := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		already, err := lockOrder(ctx, tx, order)
		if err != nil || already {
			voided = already
			return err
		}
		var charged bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payments WHERE order_id = $1)`, order).Scan(&charged); err != nil || charged {
			return err
		}
		voided = true
		_, err = tx.Exec(ctx, `INSERT INTO voided_orders (order_id, voided_at) VALUES ($1, $2)`, order, at)
		return err
	})
	return voided, dbError(err, "void order")
}

// voidsBatch bounds the voids one DELETE removes, so that no statement holds locks or
// builds WAL for long.
const voidsBatch = 10_000

// DeleteVoids implements payment.Store, a batch per statement (each its own
// transaction), so a failure keeps the batches done before it.
func (s *Store) DeleteVoids(ctx context.Context, before time.Time) (int64, error) {
	n, err := pgdb.DeleteInBatches(ctx, s.pool, `DELETE FROM voided_orders WHERE order_id IN (
		SELECT order_id FROM voided_orders WHERE voided_at < $1 LIMIT $2)`, before, voidsBatch)
	return n, dbError(err, "delete old voids")
}

// lockOrder takes order's transaction-scoped advisory lock, which serialises a first
// charge against a void, and reports whether the order is void.
func lockOrder(ctx context.Context, tx pgx.Tx, order uuid.UUID) (bool, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))`, order); err != nil {
		return false, err
	}
	var voided bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM voided_orders WHERE order_id = $1)`, order).Scan(&voided)
	return voided, err
}

// Record implements payment.Store with one conditional UPDATE (WHERE status = from)
// and the event, in one short transaction. Concurrent Records of one payment queue on
// its row only for the length of that transaction, never across a processor call; the
// first moves it, and the UPDATE of each later one, re-checked against the row it
// waited for, matches nothing, so it writes nothing and returns the row as stored.
func (s *Store) Record(ctx context.Context, from payment.Status, next payment.Payment) (payment.Payment, error) {
	if next.Status == from {
		return payment.Payment{}, fmt.Errorf("record a %s payment as %s: %w", from, next.Status, payment.ErrBadTransition)
	}
	out := next
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE payments SET status = $3, decline_code = $4, processor_ref = $5,
			settled_at = $6, refunded_at = $7 WHERE id = $1 AND status = $2`,
			next.ID, from, next.Status, nullString(string(next.DeclineCode)), nullString(next.ProcessorRef),
			nullTime(next.SettledAt), nullTime(next.RefundedAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			// Moved on already (or never existed): what is stored is the answer. This
			// statement sees the change it waited for, as read committed takes a new
			// snapshot per statement.
			out, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM payments WHERE id = $1`, next.ID))
			return err
		}
		return outbox.Write(ctx, tx, event(next))
	})
	if err != nil {
		return payment.Payment{}, dbError(err, "record payment")
	}
	return out, nil
}

// event is the event of the status p has just reached, in the wire form paymentevents
// publishes.
func event(p payment.Payment) outbox.Event {
	e := outbox.Event{Stream: paymentevents.Stream, Source: paymentevents.Source, Subject: p.ID.String(), Time: p.SettledAt}
	switch p.Status {
	case payment.StatusCaptured:
		e.Type = string(paymentevents.TypeCaptured)
		e.Data = paymentevents.Captured{PaymentID: p.ID, OrderID: p.OrderID, UserID: p.UserID, AmountCents: p.Amount.Cents, Currency: p.Amount.Currency.String()}
	case payment.StatusDeclined:
		code := string(p.DeclineCode)
		e.Type = string(paymentevents.TypeDeclined)
		e.Data = paymentevents.Declined{PaymentID: p.ID, OrderID: p.OrderID, UserID: p.UserID, AmountCents: p.Amount.Cents, Currency: p.Amount.Currency.String(),
			DeclineCode: &code}
	case payment.StatusRefunded:
		e.Type = string(paymentevents.TypeRefunded)
		e.Time = p.RefundedAt
		e.Data = paymentevents.Refunded{PaymentID: p.ID, OrderID: p.OrderID, UserID: p.UserID, AmountCents: p.Amount.Cents, Currency: p.Amount.Currency.String()}
	}
	return e
}

// ByOrder implements payment.Store.
func (s *Store) ByOrder(ctx context.Context, order uuid.UUID) (payment.Payment, error) {
	p, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM payments WHERE order_id = $1`, order))
	return p, dbError(err, "payment by order")
}

// Pending implements payment.Store, on the partial index payments_pending.
func (s *Store) Pending(ctx context.Context, before time.Time, after *page.Cursor, limit int) ([]payment.Payment, error) {
	var rows pgx.Rows
	var err error
	if after == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+columns+` FROM payments
			WHERE status = 'pending' AND created_at < $1
			ORDER BY created_at, id LIMIT $2`, before, limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+columns+` FROM payments
			WHERE status = 'pending' AND created_at < $1 AND (created_at, id) > ($2, $3)
			ORDER BY created_at, id LIMIT $4`, before, after.Time, after.ID, limit)
	}
	if err != nil {
		return nil, dbError(err, "pending payments")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (payment.Payment, error) { return scan(row) })
	return list, dbError(err, "pending payments")
}

// PendingSummary counts the payments still pending and says when the oldest of them
// was created (zero when there is none), for the pending-payments metrics, on the
// partial index payments_pending.
func (s *Store) PendingSummary(ctx context.Context) (int64, time.Time, error) {
	var n int64
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM payments WHERE status = 'pending'`).Scan(&n, &oldest)
	if err != nil || oldest == nil {
		return n, time.Time{}, dbError(err, "pending payments summary")
	}
	return n, *oldest, nil
}

// ListByOrder implements payment.Store.
func (s *Store) ListByOrder(ctx context.Context, user, order uuid.UUID, pr page.Request) ([]payment.Payment, error) {
	var rows pgx.Rows
	var err error
	if pr.After == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+columns+` FROM payments
			WHERE user_id = $1 AND order_id = $2 AND status <> 'pending'
			ORDER BY created_at, id LIMIT $3`, user, order, pr.Limit+1)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+columns+` FROM payments
			WHERE user_id = $1 AND order_id = $2 AND status <> 'pending' AND (created_at, id) > ($3, $4)
			ORDER BY created_at, id LIMIT $5`, user, order, pr.After.Time, pr.After.ID, pr.Limit+1)
	}
	if err != nil {
		return nil, dbError(err, "list payments")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (payment.Payment, error) { return scan(row) })
	return list, dbError(err, "list payments")
}

func scan(row pgx.Row) (payment.Payment, error) {
	var p payment.Payment
	var declineCode, ref *string
	var settledAt, refundedAt *time.Time
	err := row.Scan(&p.ID, &p.OrderID, &p.UserID, &p.Amount.Cents, &p.Amount.Currency, &p.Method, &p.Status,
		&declineCode, &ref, &p.IdempotencyKey, &p.RequestHash, &p.CreatedAt, &settledAt, &refundedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return payment.Payment{}, payment.ErrNotFound
	}
	if err != nil {
		return payment.Payment{}, err
	}
	if declineCode != nil {
		p.DeclineCode = payment.DeclineCode(*declineCode)
	}
	if ref != nil {
		p.ProcessorRef = *ref
	}
	p.CreatedAt = p.CreatedAt.UTC()
	if settledAt != nil {
		p.SettledAt = settledAt.UTC()
	}
	if refundedAt != nil {
		p.RefundedAt = refundedAt.UTC()
	}
	return p, nil
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// dbError reports a database error as pkg/pgdb classifies it: a domain error passes
// through, an unreachable server is a 503 naming this database, the rest a 500.
func dbError(err error, op string) error { return pgdb.Error(err, "payments", op) }
