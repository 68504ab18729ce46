package postgres_test

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/orders/internal/jobs"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres/migrations"
)

// The rows here are written with SQL rather than through the saga, so that their ages
// can be set: a saga that finished a month ago, a step retried for days.

// retentionDB is a migrated orders database and its store.
func retentionDB(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.New(t, migrations.FS)
	return postgres.NewStore(pool), pool
}

// sagaRow adds an order and its saga: done (the order confirmed) finished that long
// ago, or running (the order pending) when finishedAgo is negative.
func sagaRow(t *testing.T, pool *pgxpool.Pool, finishedAgo time.Duration) uuid.UUID {
	t.Helper()
	ctx := t.Context()
	id := uuid.New()
	status, state := "confirmed", "done"
	var finished *time.Time
	if finishedAgo >= 0 {
		at := time.Now().Add(-finishedAgo)
		finished = &at
	} else {
		status, state = "pending", "running"
	}
	created := time.Now().Add(-90 * 24 * time.Hour)
	if _, err := pool.Exec(ctx, `INSERT INTO orders (id, user_id, status, total_cents, currency, payment_method, created_at, updated_at)
		VALUES ($1, $2, $3, 100, 'USD', 'pm_card_visa', $4, $4)`, id, uuid.New(), status, created); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO sagas (order_id, state, charge, created_at, updated_at, finished_at)
		VALUES ($1, $2, 'none', $3, $3, $4)`, id, state, created, finished); err != nil {
		t.Fatal(err)
	}
	return id
}

// steps logs n attempts of step with outcome for saga id, numbered from first.
func steps(t *testing.T, pool *pgxpool.Pool, id uuid.UUID, step, outcome string, first, n int) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), `INSERT INTO saga_steps (order_id, step, attempt, outcome, error, at)
		SELECT $1, $2, g, $3, CASE WHEN $3 = 'failed' THEN 'payments: 503' ELSE '' END, now()
		FROM generate_series($4::int, $4::int + $5::int - 1) g`, id, step, outcome, first, n); err != nil {
		t.Fatal(err)
	}
}

// attempts lists saga id's logged attempts of step, oldest first.
func attempts(t *testing.T, pool *pgxpool.Pool, id uuid.UUID, step string) []int {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT attempt FROM saga_steps WHERE order_id = $1 AND step = $2 ORDER BY id`, id, step)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var a int
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func countRows(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFinishedSagasLoseTheirStepLogAfterRetention(t *testing.T) {
	t.Parallel()
	store, pool := retentionDB(t)
	old := sagaRow(t, pool, 31*24*time.Hour)
	recent := sagaRow(t, pool, 29*24*time.Hour)
	running := sagaRow(t, pool, -1)
	for _, id := range []uuid.UUID{old, recent, running} {
		steps(t, pool, id, "reserve", "ok", 1, 1)
		steps(t, pool, id, "charge", "failed", 1, 2)
		steps(t, pool, id, "charge", "ok", 3, 1)
	}

	n, err := store.DeleteFinishedSagaSteps(t.Context(), 30*24*time.Hour)
	if err != nil || n != 4 {
		t.Fatalf("deleted %d (%v), want the 4 steps of the saga finished 31 days ago", n, err)
	}
	for id, want := range map[uuid.UUID]int{old: 0, recent: 4, running: 4} {
		if got := countRows(t, pool, `SELECT count(*) FROM saga_steps WHERE order_id = $1`, id); got != want {
			t.Errorf("saga %s keeps %d steps, want %d", id, got, want)
		}
	}
	// Only the log goes: the order and its saga stay.
	if got := countRows(t, pool, `SELECT count(*) FROM sagas s JOIN orders o ON o.id = s.order_id WHERE s.order_id = $1`, old); got != 1 {
		t.Errorf("the old order or its saga went with its steps")
	}
}

// A saga that retries a step every 15 s writes thousands of log rows a day; it keeps
// the first and the latest KeepFailedSteps failures of each step (what started the
// trouble, and what it is now), and every success.
func TestAStuckSagaKeepsItsFirstAndLatestFailures(t *testing.T) {
	t.Parallel()
	store, pool := retentionDB(t)
	const keep = 50
	stuck := sagaRow(t, pool, -1)
	steps(t, pool, stuck, "reserve", "ok", 1, 1)
	steps(t, pool, stuck, "charge", "failed", 1, 500)
	steps(t, pool, stuck, "release", "failed", 1, 120)
	short := sagaRow(t, pool, -1) // 2×keep failures or fewer: nothing to thin
	steps(t, pool, short, "charge", "failed", 1, 2*keep)
	justDone := sagaRow(t, pool, 12*time.Hour) // ended since the last pass: thinned once more
	steps(t, pool, justDone, "charge", "failed", 1, 300)
	steps(t, pool, justDone, "charge", "ok", 301, 1)
	longDone := sagaRow(t, pool, 10*24*time.Hour) // left whole until its log's retention ends
	steps(t, pool, longDone, "charge", "failed", 1, 300)

	n, err := store.PruneFailedSagaSteps(t.Context(), keep)
	if want := int64(400 + 20 + 200); err != nil || n != want {
		t.Fatalf("pruned %d (%v), want %d", n, err, want)
	}
	want := func(ranges ...[2]int) []int {
		var out []int
		for _, r := range ranges {
			for a := r[0]; a <= r[1]; a++ {
				out = append(out, a)
			}
		}
		return out
	}
	for _, tc := range []struct {
		id   uuid.UUID
		step string
		want []int
	}{
		{stuck, "reserve", want([2]int{1, 1})},
		{stuck, "charge", want([2]int{1, 50}, [2]int{451, 500})},
		{stuck, "release", want([2]int{1, 50}, [2]int{71, 120})},
		{short, "charge", want([2]int{1, 100})},
		{justDone, "charge", want([2]int{1, 50}, [2]int{251, 301})},
		{longDone, "charge", want([2]int{1, 300})},
	} {
		if got := attempts(t, pool, tc.id, tc.step); !slices.Equal(got, tc.want) {
			t.Errorf("%s of saga %s keeps attempts %v, want %v", tc.step, tc.id, brief(got), brief(tc.want))
		}
	}

	// More failures since: the next pass thins them again, and a pass with nothing to
	// do deletes nothing.
	steps(t, pool, stuck, "charge", "failed", 501, 10)
	if n, err := store.PruneFailedSagaSteps(t.Context(), keep); err != nil || n != 10 {
		t.Errorf("second pass pruned %d (%v), want 10", n, err)
	}
	if got := attempts(t, pool, stuck, "charge"); !slices.Equal(got, want([2]int{1, 50}, [2]int{461, 510})) {
		t.Errorf("charge after the second pass keeps %v", brief(got))
	}
	if n, err := store.PruneFailedSagaSteps(t.Context(), keep); err != nil || n != 0 {
		t.Errorf("idle pass pruned %d (%v), want 0", n, err)
	}
}

// An answered Idempotency-Key is kept a day for replays, then deleted. A request that
// repeats the key later creates nothing new: the order id is derived from the user and
// the key (order.IdempotentID), so the create finds the order the first request made.
func TestOldIdempotencyKeysAreDeleted(t *testing.T) {
	t.Parallel()
	store, pool := retentionDB(t)
	ctx := t.Context()
	user := uuid.New()
	key := func(name, created string, status any, lockedUntil string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body, locked_until, created_at)
			VALUES ($1, $2, 'fp', $3, CASE WHEN $3::int IS NULL THEN NULL ELSE '{}'::bytea END, `+lockedUntil+`, `+created+`)`,
			user, name, status); err != nil {
			t.Fatal(err)
		}
	}
	key("answered-long-ago", "now() - interval '25 hours'", 201, "NULL")
	key("answered-today", "now() - interval '23 hours'", 201, "NULL")
	key("abandoned-long-ago", "now() - interval '25 hours'", nil, "now() - interval '25 hours'")
	// A request that took the key over a moment ago, its first claim a day old: still
	// running, so kept.
	key("taken-over-now", "now() - interval '25 hours'", nil, "now() + interval '15 seconds'")
	// The order the first of them made.
	if _, err := pool.Exec(ctx, `INSERT INTO orders (id, user_id, status, total_cents, currency, payment_method, created_at, updated_at)
		VALUES ($1, $2, 'confirmed', 100, 'USD', 'pm_card_visa', now() - interval '25 hours', now())`,
		order.IdempotentID(user, "answered-long-ago"), user); err != nil {
		t.Fatal(err)
	}

	n, err := store.DeleteIdempotencyKeys(ctx, 24*time.Hour)
	if err != nil {
		t.Fatalf("delete idempotency keys: %v", err)
	}
	if n != 2 {
		t.Fatalf("deleted %d, want the answered and the abandoned key over a day old", n)
	}
	for name, want := range map[string]int{"answered-long-ago": 0, "abandoned-long-ago": 0, "answered-today": 1, "taken-over-now": 1} {
		if got := countRows(t, pool, `SELECT count(*) FROM idempotency_keys WHERE user_id = $1 AND key = $2`, user, name); got != want {
			t.Errorf("key %s: %d rows, want %d", name, got, want)
		}
	}
	// The key repeated: a new claim, for an order id that names the existing order.
	c, err := store.ClaimKey(ctx, user, "answered-long-ago", "fp", time.Minute)
	if err != nil {
		t.Fatalf("claim of the deleted key: %v", err)
	}
	if c.State != order.KeyClaimNew {
		t.Fatalf("claim of the deleted key: %+v; want a new claim", c)
	}
	if got := countRows(t, pool, `SELECT count(*) FROM orders WHERE id = $1`, order.IdempotentID(user, "answered-long-ago")); got != 1 {
		t.Errorf("the key's order is not where its id says")
	}
}

// retention:cleanup is registered with the worker and the scheduler, and today's run
// (due since 03:45 UTC, or yesterday's, caught up at start) deletes what is past its
// retention, as the log says.
func TestCleanupRunsAsADailyTask(t *testing.T) {
	t.Parallel()
	store, pool := retentionDB(t)
	old := sagaRow(t, pool, 40*24*time.Hour)
	steps(t, pool, old, "charge", "ok", 1, 1)
	stuck := sagaRow(t, pool, -1)
	steps(t, pool, stuck, "charge", "failed", 1, 150)
	if _, err := pool.Exec(t.Context(), `INSERT INTO idempotency_keys (user_id, key, fingerprint, status, created_at)
		VALUES ($1, 'k', 'fp', 201, now() - interval '2 days')`, uuid.New()); err != nil {
		t.Fatal(err)
	}

	url := redistest.New(t)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	worker, err := tasks.NewWorker(url, log, tasks.Config{Service: "orders", PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	client, err := tasks.NewClient(url, "orders")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	queue := &platform.Tasks{Client: client, Worker: worker, Scheduler: tasks.NewScheduler(client, log)}
	if err := jobs.Register(queue, jobs.Deps{Reports: store, Log: log, Cleanup: store.Cleanup(postgres.DefaultRetention, log)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = worker.Run(ctx) })
	wg.Go(func() { _ = queue.Scheduler.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), `"msg":"retention cleanup done"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no cleanup within a minute; log:\n%s", logs.String())
		}
		time.Sleep(25 * time.Millisecond) // polling interval
	}
	for _, want := range []string{`"saga_steps":1`, `"failed_saga_steps":50`, `"idempotency_keys":1`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("cleanup log lacks %s:\n%s", want, logs.String())
		}
	}
	if got := countRows(t, pool, `SELECT count(*) FROM saga_steps`); got != 100 {
		t.Errorf("%d step rows left, want the stuck saga's 100", got)
	}
}

// brief shows a list of attempts by its runs: [1-50 451-500].
func brief(as []int) string {
	var parts []string
	for i := 0; i < len(as); {
		j := i
		for j+1 < len(as) && as[j+1] == as[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(as[i]))
		} else {
			parts = append(parts, strconv.Itoa(as[i])+"-"+strconv.Itoa(as[j]))
		}
		i = j + 1
	}
	return "[" + strings.Join(parts, " ") + "]"
}
