package postgres

import (
	"context"

	"github.com/bazaar-shop/bazaar/pkg/outbox"
)

// Events returns the payment events in the outbox about the subjects (payment ids),
// oldest first: an admin's read, which scans the outbox (outbox.About says why that
// is acceptable and an index is not).
func (s *Store) Events(ctx context.Context, subjects []string) ([]outbox.Record, error) {
	records, err := outbox.About(ctx, s.pool, subjects)
	return records, dbError(err, "outbox events")
}
