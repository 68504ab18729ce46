// Package jobs declares the orders service's background tasks (pkg/tasks, on asynq)
// and their handlers:
//
//   - saga:recover, every RECOVER_EVERY (15s) and once at start, drives every
//     unfinished saga that no one holds to its end (or as far as its dependencies let
//     it);
//   - report:sales, enqueued by POST /admin/reports/sales, computes a sales report
//     and stores it as the task's result, kept for a day for GET /admin/tasks/{id};
//   - report:daily-sales, daily at 00:30 UTC, computes yesterday's report and writes it
//     to the outbox as a report.daily_sales event, which notifications e-mails to the
//     admin.
package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/orders/internal/report"
)

// The tasks.
var (
	// RecoverSagas is saga:recover. A failed pass is not retried: the next period's
	// pass does the same work.
	RecoverSagas = tasks.Task{Type: "saga:recover", Queue: tasks.QueueCritical, MaxRetry: tasks.NoRetry, Timeout: time.Minute}
	// SalesReport is report:sales; its result is kept a day.
	SalesReport = tasks.Task{Type: "report:sales", Queue: tasks.QueueLow, MaxRetry: 3, Timeout: 5 * time.Minute, Retention: 24 * time.Hour}
	// DailySales is report:daily-sales.
	DailySales = tasks.Task{Type: "report:daily-sales", Queue: tasks.QueueLow, MaxRetry: 5, Timeout: 5 * time.Minute}
)

// DailySalesAt is when the daily report runs, UTC: after midnight, so that yesterday
// is complete.
const DailySalesAt = 30 * time.Minute

// Deps are what the handlers need.
type Deps struct {
	Saga    *order.Orchestrator
	Reports report.Store
	Log     *slog.Logger
	Clock   order.Clock
}

// Register adds the handlers to the service's worker and the periodic tasks to its
// scheduler, recovery every recoverEvery (a whole number of seconds).
func Register(t *platform.Tasks, d Deps, recoverEvery time.Duration) error {
	if d.Clock == nil {
		d.Clock = order.SystemClock{}
	}
	t.Worker.Handle(RecoverSagas, func(ctx context.Context, _ []byte) error {
		n, err := d.Saga.Recover(ctx)
		if n > 0 {
			d.Log.InfoContext(ctx, "saga recovery pass", "sagas", n)
		}
		return err
	})
	t.Worker.Handle(SalesReport, tasks.JSON(func(ctx context.Context, p SalesPayload) error {
		sales, err := d.Reports.SalesReport(ctx, report.Range{From: p.From, To: p.To})
		if err != nil {
			return err
		}
		return tasks.WriteResult(ctx, postgres.ToReportJSON(sales))
	}))
	t.Worker.Handle(DailySales, func(ctx context.Context, _ []byte) error {
		// Yesterday as of the slot, not the clock: a retry after midnight must still
		// report the same day.
		at, ok := tasks.ScheduledFor(ctx)
		if !ok {
			at = d.Clock.Now()
		}
		sales, err := d.Reports.SalesReport(ctx, report.Day(at))
		if err != nil {
			return err
		}
		if err := d.Reports.WriteDailySales(ctx, sales); err != nil {
			return err
		}
		d.Log.InfoContext(ctx, "daily sales report written", "day", sales.Range.From.Format(time.DateOnly),
			"orders", sales.Orders, "confirmed", sales.Confirmed)
		return nil
	})
	if err := t.Scheduler.Every(RecoverSagas, recoverEvery, nil); err != nil {
		return fmt.Errorf("RECOVER_EVERY: %w", err)
	}
	return t.Scheduler.Daily(DailySales, DailySalesAt, nil)
}

// SalesPayload is the payload of report:sales.
type SalesPayload struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Reports enqueues sales reports.
type Reports struct{ Client *tasks.Client }

// Enqueue queues the report of r and returns its task id. It fails when Redis cannot
// be reached (apperr.Unavailable from the caller's point of view).
func (r Reports) Enqueue(ctx context.Context, rg report.Range) (string, error) {
	return r.Client.Enqueue(ctx, SalesReport, SalesPayload{From: rg.From, To: rg.To})
}
