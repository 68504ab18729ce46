// Package expirytask is the reservations:expire periodic task: every minute it releases
// the reservations whose order never committed within the reservation TTL, so stock
// held by an abandoned saga goes back on sale. It is the only part of the service that
// knows the task queue (pkg/tasks, asynq).
package expirytask

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/tasks"
)

// Task declares reservations:expire. A failed run is not retried: the next minute's
// run is the retry, and retries would only overlap it. A run that times out keeps the
// batches it committed, and the next run carries on from there.
var Task = tasks.Task{
	Type:     "reservations:expire",
	Queue:    tasks.QueueDefault,
	MaxRetry: tasks.NoRetry,
	Timeout:  50 * time.Second,
}

// Period is how often the task runs.
const Period = time.Minute

// Expirer releases the reservations past their TTL and says how many it released
// (*reservation.Service is one).
type Expirer interface {
	ExpireDue(ctx context.Context) (int, error)
}

// Register handles the task on w and schedules it on s every Period.
func Register(w *tasks.Worker, s *tasks.Scheduler, e Expirer, log *slog.Logger) error {
	w.Handle(Task, Handler(e, log))
	return s.Every(Task, Period, nil)
}

// Handler runs one expiry pass and logs how many reservations it released. It is
// idempotent: a second run finds nothing more to release.
func Handler(e Expirer, log *slog.Logger) tasks.HandlerFunc {
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
