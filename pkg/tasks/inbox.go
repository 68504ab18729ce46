package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

// InboxCleanup is the inbox:cleanup task every service that consumes events with
// pkg/events (and so keeps an inbox table of handled event ids) runs daily at
// InboxCleanupAt, on its own queues against its own database:
//
//	worker.Handle(tasks.InboxCleanup, tasks.CleanInbox(pool, log, retention))
//	scheduler.Daily(tasks.InboxCleanup, tasks.InboxCleanupAt, nil)
var InboxCleanup = Task{Type: "inbox:cleanup", Queue: QueueLow, MaxRetry: 3, Timeout: 10 * time.Minute}

// InboxCleanupAt is the time of day, UTC, of the daily inbox cleanup: the quiet hour
// of the outbox cleanup, a quarter of an hour later so the two do not coincide.
const InboxCleanupAt = 3*time.Hour + 15*time.Minute

// DefaultInboxRetention is how long an inbox row (the id of an event handled) is kept
// by default. An id only matters while the event can be delivered again: a retry or a
// take-over (XAUTOCLAIM after 30 s) comes within minutes, a relay re-publishing after a
// crash within seconds, and an operator's `bazaarctl outbox republish` only of events
// still in an outbox, which keeps them 7 days (outbox.Retention). Ten days covers all of
// those with room to spare. A DLQ replay of an entry older than that reaches groups
// that handled it long ago and may be applied by them again.
const DefaultInboxRetention = 10 * 24 * time.Hour

// inboxBatch bounds the rows one DELETE removes, as outboxBatch does.
const inboxBatch = 10_000

// CleanInbox is the handler of InboxCleanup: it deletes the inbox rows of events
// handled more than retention ago, in batches, and logs how many went. A batch that
// fails leaves the earlier ones deleted, so a retry resumes where it stopped.
func CleanInbox(pool *pgxpool.Pool, log *slog.Logger, retention time.Duration) HandlerFunc {
	return func(ctx context.Context, _ []byte) error {
		n, err := deleteHandled(ctx, pool, retention, inboxBatch)
		if err != nil {
			return err
		}
		log.Info("inbox cleaned", "deleted", n, "older_than", retention.String())
		return nil
	}
}

// deleteHandled deletes inbox rows handled more than age ago, at most batch per
// statement; it returns how many it deleted.
func deleteHandled(ctx context.Context, pool *pgxpool.Pool, age time.Duration, batch int) (int64, error) {
	n, err := pgdb.DeleteInBatches(ctx, pool,
		`DELETE FROM inbox WHERE event_id IN (
		     SELECT event_id FROM inbox
		     WHERE handled_at < now() - make_interval(secs => $1)
		     LIMIT $2)`,
		age.Seconds(), batch)
	if err != nil {
		return n, fmt.Errorf("inbox cleanup: delete: %w", err)
	}
	return n, nil
}
