package postgres

import (
	"context"
	"time"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// UnfinishedSagas implements sagametrics.Census: the sagas not done, by state, and how
// many of them have not changed since unchangedSince, in one query on the partial
// index sagas_unfinished (only unfinished rows are read, however many orders there
// are).
func (s *Store) UnfinishedSagas(ctx context.Context, unchangedSince time.Time) (map[order.SagaState]int64, int64, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT state, count(*), count(*) FILTER (WHERE updated_at < $1) FROM sagas WHERE state <> 'done' GROUP BY state`,
		unchangedSince)
	if err != nil {
		return nil, 0, dbError(err, "count unfinished sagas")
	}
	defer rows.Close()
	byState := map[order.SagaState]int64{}
	var unchanged int64
	for rows.Next() {
		var state string
		var n, old int64
		if err := rows.Scan(&state, &n, &old); err != nil {
			return nil, 0, dbError(err, "count unfinished sagas")
		}
		byState[order.SagaState(state)] = n
		unchanged += old
	}
	return byState, unchanged, dbError(rows.Err(), "count unfinished sagas")
}
