package outbox

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/tasks"
)

// Cleanup is the outbox:cleanup task every service with an outbox runs daily at
// CleanupAt, on its own queues against its own database (pkg/platform's RelayOutbox
// does both):
//
//	worker.Handle(outbox.Cleanup, outbox.Clean(pool, log))
//	scheduler.Daily(outbox.Cleanup, outbox.CleanupAt, nil)
var Cleanup = tasks.Task{Type: "outbox:cleanup", Queue: tasks.QueueLow, MaxRetry: 3, Timeout: 10 * time.Minute}

// CleanupAt is the time of day, UTC, of the daily outbox cleanup: a quiet hour.
const CleanupAt = 3 * time.Hour

// Retention is how long published outbox rows are kept: long enough to
// re-publish a stretch of events to a stream that lost them.
const Retention = 7 * 24 * time.Hour

// published is what the cleanup deletes: rows published more than Retention ago
// (unpublished rows, whose published_at is NULL, are never touched).
func published(batch int) tasks.Purge {
	return tasks.Purge{Name: "outbox", Table: "outbox", Key: "id", Column: "published_at", Age: Retention, Batch: batch}
}

// Clean is the handler of Cleanup: it deletes the outbox rows published more than
// Retention ago, in batches, and logs how many went.
func Clean(pool *pgxpool.Pool, log *slog.Logger) tasks.HandlerFunc {
	return published(0).Handler(pool, log)
}
