package jobs_test

import (
	"context"
	"log/slog"
	netmail "net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/smtptest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testclock"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/jobs"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/mail"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/postgres/migrations"
)

const service = "notifications"

// The mail server is down for what the Sender's clock says is most of three days,
// with the worker retrying and the dispatcher sweeping all along. A notification
// younger than the give-up age stays queued through every failed try, and is sent
// once, and only once, when the server is back; one older than it is given up (failed,
// its task archived) once it has had its retries.
func TestLongSMTPOutageDelaysMailAndLosesNone(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.New(t, migrations.FS)
	store := postgres.NewStore(pool)
	redisURL := redistest.New(t)
	smtp := smtptest.New(t)
	smtp.Refuse()
	log := slog.New(slog.DiscardHandler)

	start := time.Now().UTC().Truncate(time.Millisecond)
	waiting := addNotification(t, pool, store, "waiting@example.com", start)
	stale := addNotification(t, pool, store, "stale@example.com", start.Add(-2*time.Hour))
	// 71 hours into the outage: the first notification is just younger than the
	// default give-up age of 72 h, the second just older.
	clk := testclock.New(start.Add(71 * time.Hour))

	giveUp := notification.DefaultGiveUp
	// Retries every second or so (asynq's resolution), not every quarter of an hour.
	task := jobs.EmailTask(giveUp, 50*time.Millisecond)
	worker, err := tasks.NewWorker(redisURL, log, tasks.Config{Service: service, RetryBase: 10 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	from := netmail.Address{Name: "Bazaar", Address: "no-reply@bazaar.local"}
	sender := notification.NewSender(store, mail.New(smtp.Addr(), from, time.Second), clk.Now, giveUp)
	jobs.RegisterEmail(worker, task, sender, log)
	client, err := tasks.NewClient(redisURL, service)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	inspector, err := tasks.NewInspector(redisURL, service)
	if err != nil {
		t.Fatal(err)
	}
	defer inspector.Close()
	// The dispatcher looks at the waiting rows again every 100 ms, as it would every
	// 5 minutes in production: many sweeps over the outage.
	dispatcher := notification.NewDispatcher(store, jobs.NewEmailEnqueuer(task, client, inspector), log,
		notification.DispatcherOptions{Poll: 20 * time.Millisecond, StaleAfter: 100 * time.Millisecond})
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = worker.Run(runCtx) })
	wg.Go(func() { _ = dispatcher.Run(runCtx, nil) })
	defer func() { stop(); wg.Wait() }()

	// The old one runs out of patience after its retries...
	r := waitRow(t, pool, stale, "the old notification given up", func(r row) bool { return r.status != "queued" })
	if r.status != "failed" {
		t.Errorf("old notification: %+v; want it failed", r)
	}
	if r.attempts != giveUp.Retries+1 {
		t.Errorf("old notification: %d attempts, want %d (1 + its retries)", r.attempts, giveUp.Retries+1)
	}
	if !strings.Contains(r.err, "gave up") {
		t.Errorf("old notification's error %q; want it to say the Sender gave up", r.err)
	}
	if !strings.Contains(r.err, "421") {
		t.Errorf("old notification's error %q; want the mail server's 421 in it", r.err)
	}
	waitTask(t, inspector, stale, "the old notification's task archived", func(s tasks.State) bool { return s == tasks.StateFailed })
	// ...while the young one goes on waiting, well past its retry count and through
	// the dispatcher's sweeps.
	r = waitRow(t, pool, waiting, "the waiting notification retried past its count",
		func(r row) bool { return r.attempts >= giveUp.Retries+3 || r.status != "queued" })
	if r.status != "queued" {
		t.Fatalf("after %d attempts in the outage: %+v; want it queued", r.attempts, r)
	}
	if !strings.Contains(r.err, "421") {
		t.Errorf("after %d attempts in the outage: error %q; want the mail server's 421", r.attempts, r.err)
	}
	info, err := inspector.Get(ctx, jobs.EmailTaskID(waiting))
	if err != nil {
		t.Fatalf("the waiting notification's task: %v", err)
	}
	if info.State == tasks.StateFailed {
		t.Fatalf("the waiting notification's task: %+v; want it still retrying", info)
	}

	// The server is back: the e-mail goes out, once.
	smtp.Recover()
	r = waitRow(t, pool, waiting, "the waiting notification sent", func(r row) bool { return r.status != "queued" })
	if r.status != "sent" {
		t.Fatalf("after the outage: %+v; want it sent", r)
	}
	waitTask(t, inspector, waiting, "its task completed", func(s tasks.State) bool { return s == tasks.StateCompleted })
	// One more sweep with nothing left to do: the dispatcher leaves sent rows alone.
	if _, err := dispatcher.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(smtp.To("waiting@example.com")); n != 1 {
		t.Errorf("%d e-mails for the waiting notification, want 1", n)
	}
	if n := len(smtp.To("stale@example.com")); n != 0 {
		t.Errorf("%d e-mails for the given-up notification, want 0", n)
	}
	if r := readRow(t, pool, stale); r.status != "failed" {
		t.Errorf("the given-up notification is now %+v", r)
	}
}

// The task's own retry budget never runs out before the Sender gives up: asynq
// archiving it would mark the notification failed early.
func TestTaskRetriesOutlastTheGiveUpAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		giveUp notification.GiveUp
		cap    time.Duration
	}{
		{notification.DefaultGiveUp, jobs.DefaultEmailRetryCap},
		{notification.GiveUp{Retries: 25, After: 30 * 24 * time.Hour}, time.Second},
		{notification.GiveUp{Retries: 0, After: 24 * time.Hour}, time.Hour},
	} {
		task := jobs.EmailTask(tc.giveUp, tc.cap)
		if task.RetryCap != tc.cap {
			t.Errorf("%+v: retry cap %s, want %s", tc.giveUp, task.RetryCap, tc.cap)
		}
		if task.Queue != tasks.QueueCritical {
			t.Errorf("%+v: queue %q, want %q", tc.giveUp, task.Queue, tasks.QueueCritical)
		}
		// The least time the retries take once backoff has reached the cap: each waits
		// at least half the cap, and asynq at least a second.
		perRetry := max(tc.cap/2, time.Second)
		if capped := time.Duration(task.MaxRetry-64) * perRetry; capped < tc.giveUp.After {
			t.Errorf("%+v, cap %s: %d retries last only %s", tc.giveUp, tc.cap, task.MaxRetry, capped)
		}
		if task.MaxRetry-64 < tc.giveUp.Retries {
			t.Errorf("%+v, cap %s: %d retries, want 64 beyond the %d the Sender may use", tc.giveUp, tc.cap, task.MaxRetry, tc.giveUp.Retries)
		}
	}
}

// row is a notification as stored.
type row struct {
	status   string
	attempts int
	err      string
}

func addNotification(t *testing.T, pool *pgxpool.Pool, store *postgres.Store, email string, created time.Time) uuid.UUID {
	t.Helper()
	r, err := notification.NewRecipient(uuid.New(), email, "Outage")
	if err != nil {
		t.Fatal(err)
	}
	n := notification.New(uuid.New(), notification.KindWelcome, r, notification.Details{}, created)
	err = pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		_, err := store.InTx(tx).Add(t.Context(), n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n.ID
}

func readRow(t *testing.T, pool *pgxpool.Pool, id uuid.UUID) row {
	t.Helper()
	var r row
	var errText *string
	if err := pool.QueryRow(t.Context(), `SELECT status, attempts, error FROM notifications WHERE id = $1`, id).
		Scan(&r.status, &r.attempts, &errText); err != nil {
		t.Fatal(err)
	}
	if errText != nil {
		r.err = *errText
	}
	return r
}

func waitRow(t *testing.T, pool *pgxpool.Pool, id uuid.UUID, what string, cond func(row) bool) row {
	t.Helper()
	var r row
	eventually(t, what, func() bool { r = readRow(t, pool, id); return cond(r) })
	return r
}

func waitTask(t *testing.T, in *tasks.Inspector, id uuid.UUID, what string, cond func(tasks.State) bool) {
	t.Helper()
	eventually(t, what, func() bool {
		info, err := in.Get(t.Context(), jobs.EmailTaskID(id))
		return err == nil && cond(info.State)
	})
}

// eventually polls cond until it holds, failing the test after a minute: the retries
// come about once a second, on a machine shared with other packages' tests.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(25 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
