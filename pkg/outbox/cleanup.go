package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/pgdb"
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

// cleanupBatch bounds the rows one DELETE removes, so that no statement holds locks or
// builds WAL for long while the relay is writing.
const cleanupBatch = 10_000

// Clean is the handler of Cleanup: it deletes the outbox rows published more than
// Retention ago, in batches, and logs how many went. Unpublished rows
// are never touched. A batch that fails leaves the earlier ones deleted, so a retry
// resumes where it stopped.
func Clean(pool *pgxpool.Pool, log *slog.Logger) tasks.HandlerFunc {
	return func(ctx context.Context, _ []byte) error {
		n, err := deletePublished(ctx, pool, Retention, cleanupBatch)
		if err != nil {
			return err
		}
		log.Info("outbox cleaned", "deleted", n, "older_than", Retention.String())
		return nil
	}
}

// deletePublished deletes rows published more than age ago, at most batch per
// statement; it returns how many it deleted.
func deletePublished(ctx context.Context, pool *pgxpool.Pool, age time.Duration, batch int) (int64, error) {
	n, err := pgdb.DeleteInBatches(ctx, pool,
		`DELETE FROM outbox WHERE id IN (
		     SELECT id FROM outbox
		     WHERE published_at < now() - make_interval(secs => $1)
		     LIMIT $2)`,
		age.Seconds(), batch)
	if err != nil {
		return n, fmt.Errorf("outbox cleanup: delete: %w", err)
	}
	return n, nil
}
