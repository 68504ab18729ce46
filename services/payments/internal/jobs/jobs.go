// Package jobs is the payments service's background work:
//
//   - the sweep of payments left pending, every SweepEvery (a minute) and once at
//     start, in process (see RunSweep for why not on the task queue);
//   - payments:voids-cleanup, a periodic task (pkg/tasks, on asynq) daily at
//     VoidsCleanupAt, which forgets the voids older than VOID_RETENTION.
package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/tasks"
)

// The sweep's schedule: every minute it settles the payments pending for longer than
// a minute. A charge asks the processor within seconds of recording its pending row
// (PROCESSOR_TIMEOUT), so a payment pending for a minute has nobody settling it.
const (
	SweepEvery = time.Minute
	SweepAge   = time.Minute
)

// Settler settles the payments pending for longer than age and says how many it
// settled (*payment.Service is one).
type Settler interface {
	SettlePending(ctx context.Context, age time.Duration) (int, error)
}

// RunSweep settles the payments left pending: once at start, for what a previous run
// of the service left behind, then every SweepEvery, until ctx ends; it returns nil.
// A pass is cut off when the next is due, and a failed pass is only logged: the next
// one does the same work.
//
// It runs in process on a ticker, not as a periodic task on the queue (asynq, in
// Redis), on purpose: payments keeps charging while Redis is down (its events wait in
// the outbox), so the sweep that finishes interrupted charges must not depend on Redis
// either. The price is that every replica sweeps, not one per minute across them; that
// is safe because a sweep only does what any look-up does (the processor is asked
// with the payment's own key, and the outcome is recorded only if the payment is
// still pending), and cheap because payments are rarely left pending.
func RunSweep(ctx context.Context, s Settler, log *slog.Logger) error {
	ticker := time.NewTicker(SweepEvery)
	defer ticker.Stop()
	for {
		sweep(ctx, s, log)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// sweep runs one pass and logs what it did.
func sweep(ctx context.Context, s Settler, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, SweepEvery)
	defer cancel()
	n, err := s.SettlePending(ctx, SweepAge)
	switch {
	case err != nil && ctx.Err() == nil:
		log.WarnContext(ctx, "pending payments sweep failed; the next one tries again", "settled", n, "err", err)
	case n > 0:
		log.InfoContext(ctx, "pending payments settled", "settled", n)
	default:
		log.DebugContext(ctx, "pending payments sweep", "settled", n)
	}
}

// VoidsCleanup declares payments:voids-cleanup. A failed run is retried a few times;
// failing for a day only keeps some rows a day longer.
var VoidsCleanup = tasks.Task{Type: "payments:voids-cleanup", Queue: tasks.QueueLow, MaxRetry: 3, Timeout: 10 * time.Minute}

// VoidsCleanupAt is the time of day, UTC, of the voids cleanup: a quiet hour, after
// the outbox cleanup (outbox.CleanupAt).
const VoidsCleanupAt = 3*time.Hour + 15*time.Minute

// DefaultVoidRetention is how long a void is kept (VOID_RETENTION): a void only has to
// outlive a charge request that was on its way when it was made, which takes seconds
// (minutes with retries); a month leaves room for any clock skew or replay an operator
// might attempt, and for investigating a cancelled order.
const DefaultVoidRetention = 30 * 24 * time.Hour

// MinVoidRetention is the least VOID_RETENTION accepted: well past the orders saga's
// charge budget (2 minutes) and its retries, so that a void cannot be forgotten while
// a charge it must stop may still arrive.
const MinVoidRetention = time.Hour

// VoidForgetter deletes the voids older than retention and says how many it deleted
// (*payment.Service is one).
type VoidForgetter interface {
	ForgetVoids(ctx context.Context, retention time.Duration) (int64, error)
}

// RegisterVoidsCleanup handles payments:voids-cleanup on w and schedules it on s daily
// at VoidsCleanupAt. The scheduler runs it once per day across every replica, and
// catches up the day's run at start when the service was down at that time.
func RegisterVoidsCleanup(w *tasks.Worker, s *tasks.Scheduler, v VoidForgetter, retention time.Duration, log *slog.Logger) error {
	w.Handle(VoidsCleanup, VoidsCleanupHandler(v, retention, log))
	return s.Daily(VoidsCleanup, VoidsCleanupAt, nil)
}

// VoidsCleanupHandler deletes the voids older than retention and logs how many went.
// It is idempotent: a second run finds nothing more to delete.
func VoidsCleanupHandler(v VoidForgetter, retention time.Duration, log *slog.Logger) tasks.HandlerFunc {
	return func(ctx context.Context, _ []byte) error {
		n, err := v.ForgetVoids(ctx, retention)
		if err != nil {
			// The batches deleted so far stay deleted; a retry resumes from there.
			return fmt.Errorf("deleted %d old voids, then: %w", n, err)
		}
		log.InfoContext(ctx, "old voids forgotten", "deleted", n, "older_than", retention.String())
		return nil
	}
}
