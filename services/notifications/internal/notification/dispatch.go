package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Due is a queued notification that needs its task enqueued.
type Due struct {
	ID uuid.UUID
	// Stale says its task was enqueued before, long ago, and the notification is
	// still queued: the task may have been lost, or have failed for good without
	// marking the row.
	Stale bool
	// TraceParent is the trace of the event that queued it ("" for none): its task
	// is enqueued in that trace.
	TraceParent string
}

// DispatchStore is the storage the Dispatcher needs. Every method fails with an error
// when the database cannot be reached.
type DispatchStore interface {
	// Due returns up to limit queued notifications, oldest first, whose task was
	// never enqueued or was last enqueued before staleBefore.
	Due(ctx context.Context, staleBefore time.Time, limit int) ([]Due, error)
	// MarkEnqueued records that ids' tasks were enqueued at at.
	MarkEnqueued(ctx context.Context, ids []uuid.UUID, at time.Time) error
	// MarkFailed gives up on a queued notification, keeping reason.
	MarkFailed(ctx context.Context, id uuid.UUID, reason string) error
}

// Enqueuer puts email:send tasks on the task queue.
type Enqueuer interface {
	// Enqueue adds the task that sends notification id, under a task id derived from
	// id, so that the queue refuses a second one: it fails with ErrAlreadyEnqueued
	// when that task exists (waiting, running, retrying, failed, or completed and
	// retained), and with another error when the queue cannot be reached.
	Enqueue(ctx context.Context, id uuid.UUID) error
	// FailedTask reports whether the task of notification id has failed for good
	// (its retries ran out), with its last error. It fails when the queue cannot be
	// reached.
	FailedTask(ctx context.Context, id uuid.UUID) (reason string, failed bool, err error)
}

// DispatcherOptions tune a Dispatcher; zero values take the defaults.
type DispatcherOptions struct {
	// Poll is how often the Dispatcher looks for due notifications without being
	// woken (default 1s): wake-ups are hints that can be lost.
	Poll time.Duration
	// StaleAfter is how long a queued notification's task may be in the queue before
	// the Dispatcher looks at it again (default 5m), and then again every StaleAfter.
	// A task that is still there, waiting or retrying (through a mail server outage of
	// days), is left alone: the task id refuses a second one and only a task that has
	// failed for good gets its row marked failed. So the sweep costs a lookup per
	// waiting row, never a duplicate or an early failure.
	StaleAfter time.Duration
	// Batch is the most notifications handled per pass (default 100).
	Batch int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Dispatcher makes sure every queued notification has its email:send task. The row is
// the source of truth: the consumer only writes it, in the event's transaction, and the
// Dispatcher enqueues the task afterwards, so a process that dies between the commit
// and the enqueue loses nothing — the next pass (here or on another replica) finds the
// row without its task. Replicas can dispatch at once: the task id is the notification
// id, so the queue takes each task once, and the task checks the row's status before
// sending.
type Dispatcher struct {
	store DispatchStore
	queue Enqueuer
	log   *slog.Logger
	opts  DispatcherOptions
}

// NewDispatcher dispatches store's queued notifications to queue.
func NewDispatcher(store DispatchStore, queue Enqueuer, log *slog.Logger, opts DispatcherOptions) *Dispatcher {
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 5 * time.Minute
	}
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Dispatcher{store: store, queue: queue, log: log.With("component", "email-dispatcher"), opts: opts}
}

// Run dispatches until ctx ends, then returns nil: a pass at once, then one whenever
// wake fires (a notification was queued) or Poll passes. Failures (Postgres or Redis
// down) are logged and retried with backoff; rows wait meanwhile.
func (d *Dispatcher) Run(ctx context.Context, wake <-chan struct{}) error {
	backoff := d.opts.Poll
	for {
		n, err := d.Pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			d.log.Warn("dispatching failed; queued notifications wait", "err", err, "retry_in", backoff.String())
			select { // a wake-up does not cut a backoff short
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = d.opts.Poll
		if n == d.opts.Batch {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-time.After(d.opts.Poll):
		}
	}
}

// Pass enqueues the tasks of up to Batch due notifications and records them as
// enqueued, returning how many it handled. A stale notification whose task exists is
// left to it, unless the task failed for good without marking the row (the worker
// died in between): then the row is marked failed with the task's error. Pass stops
// at the first error; what it enqueued before is recorded.
func (d *Dispatcher) Pass(ctx context.Context) (int, error) {
	now := d.opts.Now()
	due, err := d.store.Due(ctx, now.Add(-d.opts.StaleAfter), d.opts.Batch)
	if err != nil {
		return 0, fmt.Errorf("find due notifications: %w", err)
	}
	done := make([]uuid.UUID, 0, len(due))
	var passErr error
	for _, n := range due {
		if err := d.dispatch(ctx, n); err != nil {
			passErr = err
			break
		}
		done = append(done, n.ID)
	}
	if len(done) > 0 {
		if err := d.store.MarkEnqueued(ctx, done, now); err != nil {
			// Harmless to repeat: the next pass finds them again and the queue refuses
			// the duplicates.
			return len(done), errors.Join(passErr, fmt.Errorf("record enqueued: %w", err))
		}
	}
	return len(done), passErr
}

func (d *Dispatcher) dispatch(ctx context.Context, n Due) error {
	err := d.queue.Enqueue(telemetry.WithTraceParent(ctx, n.TraceParent), n.ID)
	switch {
	case err == nil:
		if n.Stale {
			// Its task had gone (Redis lost it): this one replaces it.
			d.log.Warn("re-enqueued a queued notification whose task was gone", "notification_id", n.ID)
		}
		return nil
	case !errors.Is(err, ErrAlreadyEnqueued):
		return fmt.Errorf("enqueue notification %s: %w", n.ID, err)
	case !n.Stale:
		return nil // another replica, or an earlier pass whose record was lost, was first
	}
	why, failed, err := d.queue.FailedTask(ctx, n.ID)
	if err != nil {
		return fmt.Errorf("inspect task of notification %s: %w", n.ID, err)
	}
	if !failed {
		return nil // still waiting or retrying: leave it be
	}
	if why == "" {
		why = "its email:send task failed for good"
	}
	d.log.Warn("a notification's task failed for good without marking it; marking it failed",
		"notification_id", n.ID, "error", why)
	if err := d.store.MarkFailed(ctx, n.ID, why); err != nil {
		return fmt.Errorf("mark notification %s failed: %w", n.ID, err)
	}
	return nil
}
