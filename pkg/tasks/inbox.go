package tasks

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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

// inboxPurge is what the inbox cleanup deletes: the ids of events handled more than
// retention ago.
func inboxPurge(retention time.Duration, batch int) Purge {
	return Purge{Name: "inbox", Table: "inbox", Key: "event_id", Column: "handled_at", Age: retention, Batch: batch}
}

// CleanInbox is the handler of InboxCleanup: it deletes the inbox rows of events
// handled more than retention ago, in batches, and logs how many went.
func CleanInbox(pool *pgxpool.Pool, log *slog.Logger, retention time.Duration) HandlerFunc {
	return inboxPurge(retention, 0).Handler(pool, log)
}
