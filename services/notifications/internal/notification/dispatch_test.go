package notification_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeQueue is a task queue that, like asynq with task ids, holds one task per id.
type fakeQueue struct {
	mu       sync.Mutex
	tasks    map[uuid.UUID]string // id -> state: "pending" or "failed"
	reasons  map[uuid.UUID]string
	enqueues int  // successful
	down     bool // every call fails
	failAt   int  // the failAt-th Enqueue call (1-based) fails; 0: none
	calls    int  // Enqueue calls
}

var _ notification.Enqueuer = (*fakeQueue)(nil)

func newFakeQueue() *fakeQueue {
	return &fakeQueue{tasks: map[uuid.UUID]string{}, reasons: map[uuid.UUID]string{}}
}

func (q *fakeQueue) Enqueue(_ context.Context, id uuid.UUID) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	if q.down || q.calls == q.failAt {
		return errors.New("redis: connection refused")
	}
	if _, ok := q.tasks[id]; ok {
		return notification.ErrAlreadyEnqueued
	}
	q.tasks[id] = "pending"
	q.enqueues++
	return nil
}

func (q *fakeQueue) FailedTask(_ context.Context, id uuid.UUID) (string, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.down {
		return "", false, errors.New("redis: connection refused")
	}
	return q.reasons[id], q.tasks[id] == "failed", nil
}

func (q *fakeQueue) has(id uuid.UUID) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.tasks[id]
	return ok
}

func dispatcher(store *fakeStore, q *fakeQueue, now func() time.Time) *notification.Dispatcher {
	return notification.NewDispatcher(store, q, quiet, notification.DispatcherOptions{Now: now, StaleAfter: 5 * time.Minute, Batch: 10})
}

func TestPassEnqueuesEachQueuedNotificationOnce(t *testing.T) {
	t.Parallel()
	a, b := queued(t), queued(t)
	sent := queued(t)
	sent.Status = notification.StatusSent
	store, q := newFakeStore(a, b, sent), newFakeQueue()
	d := dispatcher(store, q, clock)
	n, err := d.Pass(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("Pass = %d, %v; want 2", n, err)
	}
	if !q.has(a.ID) {
		t.Errorf("enqueued %v, want a queued notification %s among them", q.tasks, a.ID)
	}
	if !q.has(b.ID) {
		t.Errorf("enqueued %v, want a queued notification %s among them", q.tasks, b.ID)
	}
	if q.has(sent.ID) {
		t.Errorf("enqueued %v, want the sent notification %s not among them", q.tasks, sent.ID)
	}
	if n, err := d.Pass(t.Context()); err != nil || n != 0 {
		t.Errorf("second Pass = %d, %v; want nothing left", n, err)
	}
}

func TestPassTakesAnExistingTaskAsDone(t *testing.T) {
	t.Parallel()
	a := queued(t)
	store, q := newFakeStore(a), newFakeQueue()
	q.tasks[a.ID] = "pending" // enqueued by a pass whose record was lost, or another replica
	n, err := dispatcher(store, q, clock).Pass(t.Context())
	if err != nil {
		t.Fatalf("Pass: %v, want no error", err)
	}
	if n != 1 {
		t.Fatalf("Pass = %d, want 1", n)
	}
	if due, _ := store.Due(t.Context(), at.Add(-time.Minute), 10); len(due) != 0 {
		t.Errorf("still due: %v", due)
	}
}

func TestPassStopsAtAQueueErrorAndKeepsWhatItDid(t *testing.T) {
	t.Parallel()
	store, q := newFakeStore(queued(t), queued(t), queued(t)), newFakeQueue()
	q.failAt = 2
	d := dispatcher(store, q, clock)
	n, err := d.Pass(t.Context())
	if err == nil || n != 1 {
		t.Fatalf("Pass = %d, %v; want 1 and the error", n, err)
	}
	if n, err := d.Pass(t.Context()); err != nil || n != 2 {
		t.Fatalf("next Pass = %d, %v; want the other 2", n, err)
	}
	if q.enqueues != 3 {
		t.Errorf("%d tasks, want 3", q.enqueues)
	}
}

func TestPassLooksAgainAtStaleNotifications(t *testing.T) {
	t.Parallel()
	lost, retrying, failed := queued(t), queued(t), queued(t)
	store, q := newFakeStore(lost, retrying, failed), newFakeQueue()
	now := at
	d := dispatcher(store, q, func() time.Time { return now })
	if n, err := d.Pass(t.Context()); err != nil {
		t.Fatalf("Pass: %v, want no error", err)
	} else if n != 3 {
		t.Fatalf("Pass = %d, want 3", n)
	}

	// Long after: one task vanished (Redis lost it), one is still around, one failed
	// for good without its final-failure hook marking the row (the worker died).
	delete(q.tasks, lost.ID)
	q.tasks[failed.ID] = "failed"
	q.reasons[failed.ID] = "smtp: 451 try again later"
	now = at.Add(4 * time.Minute)
	if n, _ := d.Pass(t.Context()); n != 0 {
		t.Fatalf("a pass before StaleAfter handled %d", n)
	}
	now = at.Add(6 * time.Minute)
	if n, err := d.Pass(t.Context()); err != nil || n != 3 {
		t.Fatalf("stale Pass = %d, %v; want 3", n, err)
	}
	if !q.has(lost.ID) {
		t.Errorf("the lost task was not enqueued again: tasks %v", q.tasks)
	}
	if q.enqueues != 4 {
		t.Errorf("%d enqueues, want 4 (3, then the lost one again)", q.enqueues)
	}
	if got := store.get(retrying.ID); got.Status != notification.StatusQueued {
		t.Errorf("a notification whose task is still there: %+v", got)
	}
	got := store.get(failed.ID)
	if got.Status != notification.StatusFailed {
		t.Errorf("a notification whose task failed for good: status %q, want %q", got.Status, notification.StatusFailed)
	}
	if got.Error != "smtp: 451 try again later" {
		t.Errorf("a notification whose task failed for good: error %q, want the task's %q", got.Error, "smtp: 451 try again later")
	}
	if n, _ := d.Pass(t.Context()); n != 0 {
		t.Errorf("the stale ones came back at once: %d", n)
	}
}

func TestTwoDispatchersEnqueueEachOnce(t *testing.T) {
	t.Parallel()
	var ns []notification.Notification
	for range 50 {
		ns = append(ns, queued(t))
	}
	store, q := newFakeStore(ns...), newFakeQueue()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			d := dispatcher(store, q, clock)
			for {
				if n, err := d.Pass(context.Background()); err != nil || n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if q.enqueues != 50 {
		t.Errorf("%d tasks for 50 notifications", q.enqueues)
	}
}

func TestRunPassesAtOnceAndWhenWoken(t *testing.T) {
	t.Parallel()
	a := queued(t)
	store, q := newFakeStore(a), newFakeQueue()
	// Poll is an hour: only the first pass and the wake-up can enqueue.
	d := notification.NewDispatcher(store, q, quiet, notification.DispatcherOptions{Poll: time.Hour})
	wake := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, wake) }()
	waitFor(t, "the first pass", func() bool { return q.has(a.ID) })

	b := queued(t)
	store.mu.Lock()
	store.rows[b.ID] = &fakeRow{n: b}
	store.mu.Unlock()
	wake <- struct{}{}
	waitFor(t, "the woken pass", func() bool { return q.has(b.ID) })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestRunRidesOutAQueueOutage(t *testing.T) {
	t.Parallel()
	a := queued(t)
	store, q := newFakeStore(a), newFakeQueue()
	q.down = true
	d := notification.NewDispatcher(store, q, quiet, notification.DispatcherOptions{Poll: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil) }()
	waitFor(t, "retries", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.calls >= 3
	})
	q.mu.Lock()
	q.down = false
	q.mu.Unlock()
	waitFor(t, "the enqueue after the outage", func() bool { return q.has(a.ID) })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
