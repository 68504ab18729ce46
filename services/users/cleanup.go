package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/users/internal/postgres"
)

// cleanRefreshTokens is refresh-tokens:cleanup: every login adds a token and every
// refresh another, and nothing else ever deletes them.
var cleanRefreshTokens = tasks.Task{Type: "refresh-tokens:cleanup", Queue: tasks.QueueLow, MaxRetry: 3, Timeout: 10 * time.Minute}

// cleanRefreshTokensAt is the time of day, UTC, of the daily run: the quiet hour of
// the outbox cleanup, half an hour later.
const cleanRefreshTokensAt = 3*time.Hour + 30*time.Minute

// defaultRefreshTokenRetention is how long a dead session's tokens are kept
// (REFRESH_TOKEN_RETENTION): a week to look into a revoked session (a reuse, a theft)
// before the evidence goes. Reuse detection itself needs none of it, since a session
// is only dead once none of its tokens can be used.
const defaultRefreshTokenRetention = 7 * 24 * time.Hour

// scheduleRefreshTokenCleanup registers refresh-tokens:cleanup with the service's
// worker and runs it daily.
func scheduleRefreshTokenCleanup(p *platform.Platform, store *postgres.Store, retention time.Duration) error {
	t, err := p.Tasks()
	if err != nil {
		return err
	}
	t.Worker.Handle(cleanRefreshTokens, func(ctx context.Context, _ []byte) error {
		n, err := store.DeleteDeadRefreshTokens(ctx, retention)
		if err != nil {
			return err
		}
		p.Log.LogAttrs(ctx, slog.LevelInfo, "refresh tokens cleaned",
			slog.Int64("deleted", n), slog.String("dead_for", retention.String()))
		return nil
	})
	return t.Scheduler.Daily(cleanRefreshTokens, cleanRefreshTokensAt, nil)
}
