package tasks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
)

func TestBackoffGrowsIsJitteredAndCapped(t *testing.T) {
	t.Parallel()
	delay := backoff(time.Second, 5*time.Minute)
	for n := range 40 {
		ceiling := min(time.Second<<min(n, 20), 5*time.Minute)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := delay(n, nil, nil)
			// The extra second makes up for asynq rounding due times down to seconds.
			if d < ceiling/2+time.Second || d > ceiling+time.Second {
				t.Fatalf("retry %d waits %s, want within [%s, %s] + 1s", n, d, ceiling/2, ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("retry %d: only %d distinct delays in 200, want jitter", n, len(seen))
		}
	}
}

func TestSlotStart(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	every15s := &entry{period: 15 * time.Second}
	daily3 := &entry{period: 24 * time.Hour, offset: 3 * time.Hour}
	for _, tc := range []struct {
		e        *entry
		now, out string
	}{
		{every15s, "2026-03-01T12:00:07.5Z", "2026-03-01T12:00:00Z"},
		{every15s, "2026-03-01T12:00:15Z", "2026-03-01T12:00:15Z"},
		{every15s, "2026-03-01T13:00:14.999+01:00", "2026-03-01T12:00:00Z"},
		{daily3, "2026-03-01T02:59:59Z", "2026-02-28T03:00:00Z"},
		{daily3, "2026-03-01T03:00:00Z", "2026-03-01T03:00:00Z"},
		{daily3, "2026-03-01T23:00:00Z", "2026-03-01T03:00:00Z"},
		{every15s, "1969-12-31T23:59:59Z", "1969-12-31T23:59:45Z"},
	} {
		if got := tc.e.slotStart(at(tc.now)); !got.Equal(at(tc.out)) {
			t.Errorf("period %s offset %s at %s: slot %s, want %s", tc.e.period, tc.e.offset, tc.now, got, tc.out)
		}
	}
	if r := daily3.retention(); r != 48*time.Hour {
		t.Errorf("daily retention %s, want 48h", r)
	}
	if r := every15s.retention(); r != time.Hour {
		t.Errorf("15s retention %s, want 1h", r)
	}
}

// TestLateReplicaFindsTheSlotTaken is the case asynq's Unique option gets wrong: the
// first replica's run of a slot has already finished (so a uniqueness lock would be
// gone) when a second replica, late, enqueues the same slot. The slot's id is still
// retained, so the second enqueue is refused and the slot runs once.
func TestLateReplicaFindsTheSlotTaken(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	task := Task{Type: "test:hourly"}
	var mu sync.Mutex
	runs := 0
	w, err := NewWorker(url, slog.New(slog.DiscardHandler), Config{Service: "svc", PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.Handle(task, func(context.Context, []byte) error {
		mu.Lock()
		defer mu.Unlock()
		runs++
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var logs [2]bytes.Buffer
	var replicas [2]*Scheduler
	for i := range replicas {
		c, err := NewClient(url, "svc")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		replicas[i] = NewScheduler(c, slog.New(slog.NewTextHandler(&logs[i], &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	e := &entry{task: task, period: time.Hour, payload: []byte("null")}
	slot := e.slotStart(time.Now())

	if !replicas[0].enqueue(t.Context(), e, slot, false) {
		t.Fatalf("first replica: enqueue = false, want true; logs: %s", logs[0].String())
	}
	if !strings.Contains(logs[0].String(), "periodic task enqueued") {
		t.Fatalf("first replica did not log \"periodic task enqueued\": %s", logs[0].String())
	}
	in, err := NewInspector(url, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	// Wait until the run has finished, by any measure: asynq would have dropped a
	// Unique lock by now.
	id := task.Type + "@" + slot.Format(time.RFC3339)
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := runs
		mu.Unlock()
		info, err := in.Get(t.Context(), id)
		if n == 1 && (errors.Is(err, ErrTaskNotFound) || err == nil && info.State == StateCompleted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot's run did not finish: %d runs, %+v, %v", n, info, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}

	if !replicas[1].enqueue(t.Context(), e, slot, false) {
		t.Fatalf("late replica: enqueue = false, want true; logs: %s", logs[1].String())
	}
	if !strings.Contains(logs[1].String(), "periodic task already scheduled") {
		t.Fatalf("late replica did not find the slot taken: no \"periodic task already scheduled\" in %s", logs[1].String())
	}
	if _, err := replicas[1].client.enqueue(t.Context(), task, nil, nil); err != nil {
		t.Fatal(err) // a sentinel behind any task the late replica might have queued
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := runs
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sentinel task did not run")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	mu.Lock()
	defer mu.Unlock()
	if runs != 2 {
		t.Errorf("%d runs, want 2: the slot once and the sentinel", runs)
	}
}

// A task with its own RetryCap backs off up to that cap; the worker's other tasks keep
// the worker's.
func TestRetryCapPerTask(t *testing.T) {
	t.Parallel()
	// The worker never starts, so it never connects.
	w, err := NewWorker("redis://127.0.0.1:6379/0", slog.New(slog.DiscardHandler), Config{Service: "svc", RetryCap: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer w.rdb.Close()
	patient := Task{Type: "test:patient", RetryCap: 15 * time.Minute}
	plain := Task{Type: "test:plain"}
	noop := func(context.Context, []byte) error { return nil }
	w.Handle(patient, noop)
	w.Handle(plain, noop)
	delay := w.retryDelay(time.Second, 5*time.Minute)
	for _, tc := range []struct {
		task Task
		cap  time.Duration
	}{{patient, 15 * time.Minute}, {plain, 5 * time.Minute}, {Task{Type: "test:unregistered"}, 5 * time.Minute}} {
		longest := time.Duration(0)
		for range 200 {
			d := delay(30, nil, asynq.NewTask(tc.task.Type, nil))
			if d < tc.cap/2+time.Second || d > tc.cap+time.Second {
				t.Fatalf("%s: retry 30 waits %s, want within [%s, %s] + 1s", tc.task.Type, d, tc.cap/2, tc.cap)
			}
			longest = max(longest, d)
		}
		if longest < tc.cap*3/4 {
			t.Errorf("%s: longest of 200 waits %s, want near its cap %s", tc.task.Type, longest, tc.cap)
		}
	}
}

const inboxDDL = `-- +goose Up
CREATE TABLE inbox (
    event_id   uuid PRIMARY KEY,
    stream     text NOT NULL,
    type       text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now()
);
-- +goose Down
DROP TABLE inbox;
`

func TestInboxCleanupDeletesOnlyOldRows(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t, fstest.MapFS{"00001_inbox.sql": {Data: []byte(inboxDDL)}})
	ctx := t.Context()
	insert := func(n int, handled string) {
		t.Helper()
		for range n {
			_, err := pool.Exec(ctx, `INSERT INTO inbox (event_id, stream, type, handled_at)
				VALUES ($1, 'events.test', 'thing.done', `+handled+`)`, uuid.New())
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(5, "now() - interval '11 days'")
	insert(1, "now() - interval '10 days' + interval '1 hour'") // not yet 10 days old
	insert(1, "now()")

	// Batches of 2 take three statements for the five old rows.
	n, err := inboxPurge(DefaultInboxRetention, 2).Run(ctx, pool)
	if err != nil || n != 5 {
		t.Fatalf("deleted %d (%v), want 5", n, err)
	}
	var kept int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM inbox`).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if kept != 2 {
		t.Errorf("kept %d rows, want 2", kept)
	}

	// The task's handler does the same with its retention, and says how much it removed.
	insert(3, "now() - interval '2 hours'")
	var log bytes.Buffer
	if err := CleanInbox(pool, slog.New(slog.NewJSONHandler(&log, nil)), time.Hour)(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), `"deleted":4`) {
		t.Errorf("cleanup log %q does not report 4 deleted (the 3 two hours old, the one 10 days less an hour)", log.String())
	}

	pool.Close()
	if _, err := inboxPurge(DefaultInboxRetention, 2).Run(ctx, pool); err == nil || !strings.Contains(err.Error(), "inbox cleanup") {
		t.Errorf("cleanup on a closed pool: %v, want a named error", err)
	}
}
