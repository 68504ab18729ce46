package postgres_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// The census behind sagas_unfinished and sagas_unattended counts the sagas not done by
// state, and those unchanged since the cut-off; done sagas are not counted.
func TestUnfinishedSagasAreCountedByStateAndAge(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	line := order.Line{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 100}
	set := func(o order.Order, state order.SagaState, updated time.Time) {
		t.Helper()
		if _, err := pool.Exec(ctx, `UPDATE sagas SET state = $2, updated_at = $3 WHERE order_id = $1`, o.ID, state, updated); err != nil {
			t.Fatal(err)
		}
	}
	placed(t, s, now, order.StatusConfirmed, line) // done
	placed(t, s, now, order.StatusPending, line)   // running, just changed
	set(placed(t, s, now, order.StatusPending, line), order.SagaStuck, now.Add(-10*time.Minute))
	set(placed(t, s, now, order.StatusPending, line), order.SagaStuck, now)
	set(placed(t, s, now, order.StatusPending, line), order.SagaCompensationFailed, now.Add(-time.Hour))

	byState, unchanged, err := s.UnfinishedSagas(ctx, now.Add(-5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := map[order.SagaState]int64{order.SagaRunning: 1, order.SagaStuck: 2, order.SagaCompensationFailed: 1}
	if !maps.Equal(byState, want) || unchanged != 2 {
		t.Errorf("census = %v, %d unchanged; want %v, 2", byState, unchanged, want)
	}
}
