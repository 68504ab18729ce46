// Package jobs declares the orders service's background tasks (pkg/tasks, on asynq)
// and their handlers:
//
//   - report:sales, enqueued by POST /admin/reports/sales, computes a sales report
//     and stores it as the task's result, kept for a day for GET /admin/tasks/{id};
//   - report:daily-sales, daily at 00:30 UTC, computes yesterday's report and writes it
//     to the outbox as a report.daily_sales event, which notifications e-mails to the
//     admin;
//   - retention:cleanup, daily at 03:45 UTC, deletes old saga step logs and
//     Idempotency-Keys (postgres.Retention).
package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/orders/internal/report"
)

// The tasks.
var (
	// SalesReport is report:sales; its result is kept a day.
	SalesReport = tasks.Task{Type: "report:sales", Queue: tasks.QueueLow, MaxRetry: 3, Timeout: 5 * time.Minute, Retention: 24 * time.Hour}
	// DailySales is report:daily-sales.
	DailySales = tasks.Task{Type: "report:daily-sales", Queue: tasks.QueueLow, MaxRetry: 5, Timeout: 5 * time.Minute}
	// Cleanup is retention:cleanup.
	Cleanup = tasks.Task{Type: "retention:cleanup", Queue: tasks.QueueLow, MaxRetry: 3, Timeout: 10 * time.Minute}
)

// CleanupAt is when the daily cleanup runs, UTC: the quiet hour of the outbox cleanup.
const CleanupAt = 3*time.Hour + 45*time.Minute

// DailySalesAt is when the daily report runs, UTC: after midnight, so that yesterday
// is complete.
const DailySalesAt = 30 * time.Minute

// Deps are what the handlers need.
type Deps struct {
	Reports report.Store
	Log     *slog.Logger
	// Now tells the time (nil is time.Now); only a daily report run without its
	// scheduled slot asks it.
	Now func() time.Time
	// Cleanup is retention:cleanup's handler (postgres.Store.Cleanup); nil runs none.
	Cleanup tasks.HandlerFunc
}

// Register adds the handlers to the service's worker and the periodic tasks to its
// scheduler. (Saga recovery is not a task: it runs in the process, so that sagas are
// finished while Redis is down; see order.Orchestrator.RecoverEvery.)
func Register(t *platform.Tasks, d Deps) error {
	if d.Now == nil {
		d.Now = time.Now
	}
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
			at = d.Now()
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
	if d.Cleanup != nil {
		t.Worker.Handle(Cleanup, d.Cleanup)
		if err := t.Scheduler.Daily(Cleanup, CleanupAt, nil); err != nil {
			return err
		}
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
