// Package jobs is the users service's background work: refresh-tokens:cleanup, a
// periodic task (pkg/tasks, on asynq) daily at RefreshTokenCleanupAt, which deletes the
// refresh tokens of sessions dead for longer than REFRESH_TOKEN_RETENTION. Every log-in
// adds a token and every refresh another, and nothing else ever deletes them.
package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/tasks"
)

// RefreshTokenCleanup declares refresh-tokens:cleanup. A failed run is retried a few
// times; failing for a day only keeps some rows a day longer.
var RefreshTokenCleanup = tasks.Task{Type: "refresh-tokens:cleanup", Queue: tasks.QueueLow, MaxRetry: 3, Timeout: 10 * time.Minute}

// RefreshTokenCleanupAt is the time of day, UTC, of the daily run: the quiet hour of
// the outbox cleanup, half an hour later.
const RefreshTokenCleanupAt = 3*time.Hour + 30*time.Minute

// DefaultRefreshTokenRetention is how long a dead session's tokens are kept
// (REFRESH_TOKEN_RETENTION): a week to look into a revoked session (a reuse, a theft)
// before the evidence goes. Reuse detection itself needs none of it, since a session
// is only dead once none of its tokens can be used.
const DefaultRefreshTokenRetention = 7 * 24 * time.Hour

// TokenDeleter deletes the refresh tokens of the sessions dead for longer than
// retention and says how many it deleted (*postgres.Store is one).
type TokenDeleter interface {
	DeleteDeadRefreshTokens(ctx context.Context, retention time.Duration) (int64, error)
}

// RegisterRefreshTokenCleanup handles refresh-tokens:cleanup on w and schedules it on s
// daily at RefreshTokenCleanupAt. The scheduler runs it once per day across every
// replica, and catches up the day's run at start when the service was down at that
// time.
func RegisterRefreshTokenCleanup(w *tasks.Worker, s *tasks.Scheduler, d TokenDeleter, retention time.Duration, log *slog.Logger) error {
	w.Handle(RefreshTokenCleanup, RefreshTokenCleanupHandler(d, retention, log))
	return s.Daily(RefreshTokenCleanup, RefreshTokenCleanupAt, nil)
}

// RefreshTokenCleanupHandler deletes the refresh tokens of the sessions dead for longer
// than retention and logs how many went. It is idempotent: a second run finds nothing
// more to delete.
func RefreshTokenCleanupHandler(d TokenDeleter, retention time.Duration, log *slog.Logger) tasks.HandlerFunc {
	return func(ctx context.Context, _ []byte) error {
		n, err := d.DeleteDeadRefreshTokens(ctx, retention)
		if err != nil {
			// The batches deleted so far stay deleted; a retry resumes from there.
			return err
		}
		log.LogAttrs(ctx, slog.LevelInfo, "refresh tokens cleaned",
			slog.Int64("deleted", n), slog.String("dead_for", retention.String()))
		return nil
	}
}
