// Package jobs is the inventory service's background work: reservations:expire, a
// periodic task (pkg/tasks, on asynq) that every minute releases the reservations whose
// order never committed within the reservation TTL, so stock held by an abandoned saga
// goes back on sale. It is the only part of the service that knows the task queue.
package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/tasks"
)

// Expiry declares reservations:expire. A failed run is not retried: the next minute's
// run is the retry, and retries would only overlap it. A run that times out keeps the
// batches it committed, and the next run carries on from there.
var Expiry = tasks.Task{
	Type:     "reservations:expire",
	Queue:    tasks.QueueDefault,
	MaxRetry: tasks.NoRetry,
	Timeout:  50 * time.Second,
}

// ExpiryEvery is how often reservations:expire runs.
const ExpiryEvery = time.Minute

// Expirer releases the reservations past their TTL and says how many it released
// (*reservation.Service is one).
type Expirer interface {
	ExpireDue(ctx context.Context) (int, error)
}

// RegisterExpiry handles reservations:expire on w and schedules it on s every
// ExpiryEvery. The scheduler runs each minute's slot once across every replica.
func RegisterExpiry(w *tasks.Worker, s *tasks.Scheduler, e Expirer, log *slog.Logger) error {
	w.Handle(Expiry, ExpiryHandler(e, log))
	return s.Every(Expiry, ExpiryEvery, nil)
}

// ExpiryHandler runs one expiry pass and logs how many reservations it released. It is
// idempotent: a second run finds nothing more to release.
func ExpiryHandler(e Expirer, log *slog.Logger) tasks.HandlerFunc {
	return func(ctx context.Context, _ []byte) error {
		n, err := e.ExpireDue(ctx)
		if err != nil {
			// The worker logs the failure; the count says how far this run got.
			return fmt.Errorf("released %d expired reservations, then: %w", n, err)
		}
		level := slog.LevelDebug
		if n > 0 {
			level = slog.LevelInfo
		}
		log.Log(ctx, level, "expired reservations released", "released", n)
		return nil
	}
}
