// Package postgres is the notifications service's storage: notifications, the
// recipients projection, and the wake-up the dispatcher listens for, in Postgres
// through pgx. It translates database errors into the domain's (no rows is
// notification.ErrNotFound or ErrUnknownRecipient, an unreachable server is
// apperr.Unavailable), so nothing above it knows SQL.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// NotifyChannel is the Postgres channel a queued notification is announced on, in the
// transaction that writes it (so the announcement goes out on commit): the
// dispatcher's wake-up. It is a hint only; the dispatcher also polls.
const NotifyChannel = "notification_queued"

// Store keeps notifications in a pool's database, which must have this package's
// migrations.
type Store struct{ pool *pgxpool.Pool }

var (
	_ notification.Store         = (*Store)(nil)
	_ notification.SendStore     = (*Store)(nil)
	_ notification.DispatchStore = (*Store)(nil)
)

// NewStore stores in pool's database.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const columns = `id, event_id, kind, user_id, recipient, subject, data, status, attempts, error, created_at, sent_at`

// Notification implements notification.SendStore.
func (s *Store) Notification(ctx context.Context, id uuid.UUID) (notification.Notification, error) {
	n, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM notifications WHERE id = $1`, id))
	return n, dbError(err, "notification")
}

// MarkSent implements notification.SendStore.
func (s *Store) MarkSent(ctx context.Context, id uuid.UUID, at time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE notifications SET status = 'sent', sent_at = $2, attempts = attempts + 1
		WHERE id = $1 AND status = 'queued'`, id, at)
	return dbError(err, "mark sent")
}

// RecordFailure implements notification.SendStore.
func (s *Store) RecordFailure(ctx context.Context, id uuid.UUID, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE notifications SET attempts = attempts + 1, error = $2
		WHERE id = $1 AND status = 'queued'`, id, reason)
	return dbError(err, "record failure")
}

// MarkFailed implements notification.SendStore and notification.DispatchStore.
func (s *Store) MarkFailed(ctx context.Context, id uuid.UUID, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE notifications SET status = 'failed', error = $2
		WHERE id = $1 AND status = 'queued'`, id, reason)
	return dbError(err, "mark failed")
}

// Due implements notification.DispatchStore.
func (s *Store) Due(ctx context.Context, staleBefore time.Time, limit int) ([]notification.Due, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, enqueued_at IS NOT NULL, traceparent FROM notifications
		WHERE status = 'queued' AND (enqueued_at IS NULL OR enqueued_at < $1)
		ORDER BY created_at LIMIT $2`, staleBefore, limit)
	if err != nil {
		return nil, dbError(err, "due notifications")
	}
	due, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notification.Due, error) {
		var d notification.Due
		err := row.Scan(&d.ID, &d.Stale, &d.TraceParent)
		return d, err
	})
	return due, dbError(err, "due notifications")
}

// MarkEnqueued implements notification.DispatchStore.
func (s *Store) MarkEnqueued(ctx context.Context, ids []uuid.UUID, at time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE notifications SET enqueued_at = $2 WHERE id = ANY($1)`, ids, at)
	return dbError(err, "mark enqueued")
}

// CountQueued counts the notifications not yet sent or failed: the backlog.
func (s *Store) CountQueued(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM notifications WHERE status = 'queued'`).Scan(&n)
	return n, dbError(err, "count queued")
}

// List returns user's notifications newest first (by created_at, then id), after
// pr.After when set, up to pr.Limit+1 of them so that the caller can tell whether
// another page follows (page.Next).
func (s *Store) List(ctx context.Context, user uuid.UUID, pr page.Request) ([]notification.Notification, error) {
	var rows pgx.Rows
	var err error
	if pr.After == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+columns+` FROM notifications WHERE user_id = $1
			ORDER BY created_at DESC, id DESC LIMIT $2`, user, pr.Limit+1)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+columns+` FROM notifications WHERE user_id = $1
			AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4`,
			user, pr.After.Time, pr.After.ID, pr.Limit+1)
	}
	if err != nil {
		return nil, dbError(err, "list notifications")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notification.Notification, error) { return scan(row) })
	return list, dbError(err, "list notifications")
}

// InTx is the store inside tx, the event consumer's transaction: what it writes
// commits or rolls back with the event's inbox row.
func (s *Store) InTx(tx pgx.Tx) *TxStore { return &TxStore{tx: tx} }

// TxStore writes within one transaction.
type TxStore struct{ tx pgx.Tx }

// SaveRecipient records (or updates) a recipient.
func (t *TxStore) SaveRecipient(ctx context.Context, r notification.Recipient) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO recipients (user_id, email, name) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, name = excluded.name, updated_at = now()`,
		r.UserID, r.Email, r.Name)
	return dbError(err, "save recipient")
}

// Recipient is the recipient of user, or notification.ErrUnknownRecipient.
func (t *TxStore) Recipient(ctx context.Context, user uuid.UUID) (notification.Recipient, error) {
	r := notification.Recipient{UserID: user}
	err := t.tx.QueryRow(ctx, `SELECT email, name FROM recipients WHERE user_id = $1`, user).Scan(&r.Email, &r.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return notification.Recipient{}, fmt.Errorf("user %s: %w", user, notification.ErrUnknownRecipient)
	}
	return r, dbError(err, "recipient")
}

// RecipientByEmail is the recipient whose address is email, compared without regard
// to case, or notification.ErrUnknownRecipient. Should two users share an address
// (the users service forbids it; this projection does not enforce it), the one
// recorded last wins.
func (t *TxStore) RecipientByEmail(ctx context.Context, email string) (notification.Recipient, error) {
	var r notification.Recipient
	err := t.tx.QueryRow(ctx, `SELECT user_id, email, name FROM recipients WHERE lower(email) = lower($1)
		ORDER BY updated_at DESC, user_id LIMIT 1`, email).Scan(&r.UserID, &r.Email, &r.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return notification.Recipient{}, fmt.Errorf("address %s: %w", email, notification.ErrUnknownRecipient)
	}
	return r, dbError(err, "recipient by email")
}

// Add writes a queued notification and announces it on NotifyChannel (delivered on
// commit). It reports false, writing nothing, when the notification's event already
// has one.
func (t *TxStore) Add(ctx context.Context, n notification.Notification) (bool, error) {
	data, err := json.Marshal(toDetailsJSON(n.Details))
	if err != nil {
		return false, fmt.Errorf("encode details: %w", err)
	}
	tag, err := t.tx.Exec(ctx, `INSERT INTO notifications
		(id, event_id, kind, user_id, recipient, subject, data, status, attempts, created_at, traceparent)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10) ON CONFLICT (event_id) DO NOTHING`,
		n.ID, n.EventID, n.Kind, n.UserID, n.Recipient, n.Subject, data, n.Status, n.CreatedAt, telemetry.TraceParent(ctx))
	if err != nil {
		return false, dbError(err, "add notification")
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	if _, err := t.tx.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel); err != nil {
		return false, dbError(err, "notify")
	}
	return true, nil
}

func scan(row pgx.Row) (notification.Notification, error) {
	var n notification.Notification
	var data []byte
	var errText *string
	var sentAt *time.Time
	err := row.Scan(&n.ID, &n.EventID, &n.Kind, &n.UserID, &n.Recipient, &n.Subject, &data,
		&n.Status, &n.Attempts, &errText, &n.CreatedAt, &sentAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return notification.Notification{}, notification.ErrNotFound
	}
	if err != nil {
		return notification.Notification{}, err
	}
	var d detailsJSON
	if err := json.Unmarshal(data, &d); err != nil {
		return notification.Notification{}, fmt.Errorf("notification %s: decode details: %w", n.ID, err)
	}
	n.Details = d.toDetails()
	n.CreatedAt = n.CreatedAt.UTC()
	if sentAt != nil {
		n.SentAt = sentAt.UTC()
	}
	if errText != nil {
		n.Error = *errText
	}
	return n, nil
}

// detailsJSON is notification.Details as stored in the data column.
type detailsJSON struct {
	Name      string     `json:"name"`
	OrderID   *uuid.UUID `json:"order_id,omitempty"`
	PaymentID *uuid.UUID `json:"payment_id,omitempty"`
	Total     *moneyJSON `json:"total,omitempty"`
	Items     []itemJSON `json:"items,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	Refunded  *moneyJSON `json:"refunded,omitempty"`
	Sales     *salesJSON `json:"sales,omitempty"`
}

type moneyJSON struct {
	Cents    int64  `json:"cents"`
	Currency string `json:"currency"`
}

type itemJSON struct {
	ProductID uuid.UUID `json:"product_id"`
	Quantity  int       `json:"quantity"`
	UnitPrice moneyJSON `json:"unit_price"`
}

// salesJSON is a notification.SalesReport as stored: the report the e-mail shows,
// not the event it came in (whose shape is the orders service's to change).
type salesJSON struct {
	Day         time.Time          `json:"day"`
	From        time.Time          `json:"from"`
	To          time.Time          `json:"to"`
	Orders      int64              `json:"orders"`
	Confirmed   int64              `json:"confirmed"`
	Cancelled   int64              `json:"cancelled"`
	Revenue     []moneyJSON        `json:"revenue"`
	TopProducts []productSalesJSON `json:"top_products"`
}

type productSalesJSON struct {
	ProductID uuid.UUID `json:"product_id"`
	Quantity  int64     `json:"quantity"`
	Revenue   moneyJSON `json:"revenue"`
}

func toSalesJSON(r *notification.SalesReport) *salesJSON {
	if r == nil {
		return nil
	}
	out := &salesJSON{Day: r.Day, From: r.From, To: r.To, Orders: r.Orders, Confirmed: r.Confirmed, Cancelled: r.Cancelled,
		Revenue: []moneyJSON{}, TopProducts: []productSalesJSON{}}
	for _, m := range r.Revenue {
		out.Revenue = append(out.Revenue, moneyJSON{Cents: m.Cents, Currency: m.Currency})
	}
	for _, p := range r.TopProducts {
		out.TopProducts = append(out.TopProducts, productSalesJSON{ProductID: p.ProductID, Quantity: p.Quantity,
			Revenue: moneyJSON{Cents: p.Revenue.Cents, Currency: p.Revenue.Currency}})
	}
	return out
}

func (s *salesJSON) toSalesReport() *notification.SalesReport {
	if s == nil {
		return nil
	}
	out := &notification.SalesReport{Day: s.Day.UTC(), From: s.From.UTC(), To: s.To.UTC(),
		Orders: s.Orders, Confirmed: s.Confirmed, Cancelled: s.Cancelled}
	for _, m := range s.Revenue {
		out.Revenue = append(out.Revenue, notification.Money{Cents: m.Cents, Currency: m.Currency})
	}
	for _, p := range s.TopProducts {
		out.TopProducts = append(out.TopProducts, notification.ProductSales{ProductID: p.ProductID, Quantity: p.Quantity,
			Revenue: notification.Money{Cents: p.Revenue.Cents, Currency: p.Revenue.Currency}})
	}
	return out
}

func toDetailsJSON(d notification.Details) detailsJSON {
	out := detailsJSON{Name: d.Name, Reason: string(d.Reason), Total: toMoneyJSON(d.Total), Refunded: toMoneyJSON(d.Refunded),
		Sales: toSalesJSON(d.Sales)}
	if d.OrderID != uuid.Nil {
		out.OrderID = &d.OrderID
	}
	if d.PaymentID != uuid.Nil {
		out.PaymentID = &d.PaymentID
	}
	for _, it := range d.Items {
		out.Items = append(out.Items, itemJSON{ProductID: it.ProductID, Quantity: it.Quantity,
			UnitPrice: moneyJSON{Cents: it.UnitPrice.Cents, Currency: it.UnitPrice.Currency}})
	}
	return out
}

func toMoneyJSON(m notification.Money) *moneyJSON {
	if m == (notification.Money{}) {
		return nil
	}
	return &moneyJSON{Cents: m.Cents, Currency: m.Currency}
}

func (d detailsJSON) toDetails() notification.Details {
	out := notification.Details{Name: d.Name, Reason: notification.CancelReason(d.Reason), Sales: d.Sales.toSalesReport()}
	if d.OrderID != nil {
		out.OrderID = *d.OrderID
	}
	if d.PaymentID != nil {
		out.PaymentID = *d.PaymentID
	}
	if d.Total != nil {
		out.Total = notification.Money{Cents: d.Total.Cents, Currency: d.Total.Currency}
	}
	if d.Refunded != nil {
		out.Refunded = notification.Money{Cents: d.Refunded.Cents, Currency: d.Refunded.Currency}
	}
	for _, it := range d.Items {
		out.Items = append(out.Items, notification.Item{ProductID: it.ProductID, Quantity: it.Quantity,
			UnitPrice: notification.Money{Cents: it.UnitPrice.Cents, Currency: it.UnitPrice.Currency}})
	}
	return out
}

// dbError reports a database error as pkg/pgdb classifies it: a domain error passes
// through, an unreachable server is a 503 naming this database, the rest a 500.
func dbError(err error, op string) error { return pgdb.Error(err, "notifications", op) }
