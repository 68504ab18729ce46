package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// ByEvents returns the notifications made from the events ids, oldest first (at most
// one each: event_id is unique).
func (s *Store) ByEvents(ctx context.Context, ids []uuid.UUID) ([]notification.Notification, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM notifications WHERE event_id = ANY($1)
		ORDER BY created_at, id`, ids)
	if err != nil {
		return nil, dbError(err, "notifications by events")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notification.Notification, error) { return scan(row) })
	return list, dbError(err, "notifications by events")
}

// Handled returns the inbox entries of the events ids: those the consumer handled
// within the inbox's retention, with when; the others are absent.
func (s *Store) Handled(ctx context.Context, ids []uuid.UUID) ([]notification.Handled, error) {
	rows, err := s.pool.Query(ctx, `SELECT event_id, stream, type, handled_at FROM inbox WHERE event_id = ANY($1)
		ORDER BY handled_at, event_id`, ids)
	if err != nil {
		return nil, dbError(err, "inbox")
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notification.Handled, error) {
		var h notification.Handled
		err := row.Scan(&h.EventID, &h.Stream, &h.Type, &h.HandledAt)
		h.HandledAt = h.HandledAt.UTC()
		return h, err
	})
	return list, dbError(err, "inbox")
}
