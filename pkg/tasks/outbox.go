package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

// OutboxCleanup is the outbox:cleanup task every service with an outbox runs daily at
// OutboxCleanupAt, on its own queues against its own database:
//
//	worker.Handle(tasks.OutboxCleanup, tasks.CleanOutbox(pool, log))
//	scheduler.Daily(tasks.OutboxCleanup, tasks.OutboxCleanupAt, nil)
var OutboxCleanup = Task{Type: "outbox:cleanup", Queue: QueueLow, MaxRetry: 3, Timeout: 10 * time.Minute}

// OutboxCleanupAt is the time of day, UTC, of the daily outbox cleanup: a quiet hour.
const OutboxCleanupAt = 3 * time.Hour

// OutboxRetention is how long published outbox rows are kept: long enough to
// re-publish a stretch of events to a stream that lost them.
const OutboxRetention = 7 * 24 * time.Hour

// outboxBatch bounds the rows one DELETE removes, so that no statement holds locks or
// builds WAL for long while the relay is writing.
const outboxBatch = 10_000

// CleanOutbox is the handler of OutboxCleanup: it deletes the outbox rows published
// more than OutboxRetention ago, in batches, and logs how many went. Unpublished rows
// are never touched. A batch that fails leaves the earlier ones deleted, so a retry
// resumes where it stopped.
func CleanOutbox(pool *pgxpool.Pool, log *slog.Logger) HandlerFunc {
	return func(ctx context.Context, _ []byte) error {
		n, err := deletePublished(ctx, pool, OutboxRetention, outboxBatch)
		if err != nil {
			return err
		}
		log.Info("outbox cleaned", "deleted", n, "older_than", OutboxRetention.String())
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
