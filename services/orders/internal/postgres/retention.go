package postgres

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

// Retention says how long the orders database keeps what only operators and repeated
// requests read. Orders, their lines and their sagas are kept; see Store.Cleanup.
type Retention struct {
	// SagaSteps is how long the step log of a finished saga is kept
	// (SAGA_STEPS_RETENTION): time to look into how an order went.
	SagaSteps time.Duration
	// KeepFailedSteps is how many failed attempts of one step a saga keeps at each end,
	// its first and its latest (SAGA_STEPS_KEEP): a saga retried every RECOVER_EVERY
	// logs thousands of attempts a day, and those between say nothing new.
	KeepFailedSteps int
	// IdempotencyKeys is how long an Idempotency-Key and its stored answer are kept
	// (IDEMPOTENCY_KEY_RETENTION), counted from its first claim.
	IdempotencyKeys time.Duration
}

// DefaultRetention is the retention without settings: a month of step logs, the
// first and the latest 50 failures of a step (the operators' view shows the latest
// 50 steps), and a day of Idempotency-Keys, the window clients retry in.
var DefaultRetention = Retention{SagaSteps: 30 * 24 * time.Hour, KeepFailedSteps: 50, IdempotencyKeys: 24 * time.Hour}

// Batches bound the rows one statement deletes, so that no statement holds locks or
// builds WAL for long while orders are being placed.
const (
	retentionBatch = 10_000
	// pruneSagasBatch is how many (saga, step) logs one thinning statement takes.
	pruneSagasBatch = 100
)

// prunedAfterDone is how long after it finished a saga's log is still thinned: one
// pass after it ends covers the failures it logged since the pass before, with room
// for passes missed while the worker or Redis was down.
const prunedAfterDone = 3 * 24 * time.Hour

// DeleteFinishedSagaSteps deletes the step log of sagas finished more than age ago and
// returns how many rows went. The sagas and orders stay. A saga that is reopened later
// (a customer cancelling a confirmed order) simply logs its new steps.
func (s *Store) DeleteFinishedSagaSteps(ctx context.Context, age time.Duration) (int64, error) {
	return s.deleteInBatches(ctx, "delete finished saga steps",
		`DELETE FROM saga_steps WHERE id IN (
		     SELECT st.id FROM saga_steps st JOIN sagas s ON s.order_id = st.order_id
		     WHERE s.state = 'done' AND s.finished_at < now() - make_interval(secs => $1)
		     LIMIT $2)`,
		age.Seconds(), retentionBatch)
}

// PruneFailedSagaSteps thins the failed attempts of every step of a saga that is
// running, or finished in the last few days, to its first keep and its latest keep,
// and returns how many rows went. Successes and refusals are never touched: a saga has
// a handful. So a saga stuck for weeks keeps at most 2×keep rows per step, however
// long it retries.
func (s *Store) PruneFailedSagaSteps(ctx context.Context, keep int) (int64, error) {
	return s.deleteInBatches(ctx, "prune failed saga steps",
		`WITH heavy AS (
		     SELECT st.order_id, st.step FROM saga_steps st JOIN sagas s ON s.order_id = st.order_id
		     WHERE st.outcome = 'failed'
		       AND (s.state <> 'done' OR s.finished_at > now() - make_interval(secs => $2))
		     GROUP BY st.order_id, st.step
		     HAVING count(*) > 2 * $1::int
		     LIMIT $3
		 ), ranked AS (
		     SELECT st.id,
		            row_number() OVER (PARTITION BY st.order_id, st.step ORDER BY st.id) AS from_first,
		            row_number() OVER (PARTITION BY st.order_id, st.step ORDER BY st.id DESC) AS from_last
		     FROM saga_steps st JOIN heavy h ON h.order_id = st.order_id AND h.step = st.step
		     WHERE st.outcome = 'failed'
		 )
		 DELETE FROM saga_steps WHERE id IN (SELECT id FROM ranked WHERE from_first > $1 AND from_last > $1)`,
		keep, prunedAfterDone.Seconds(), pruneSagasBatch)
}

// DeleteIdempotencyKeys deletes the Idempotency-Keys first claimed more than age ago,
// answered or abandoned, and returns how many went; a key whose request is running
// now (a late repeat took it over) stays. A request repeating a deleted key claims it
// afresh and creates nothing new: its order id is derived from the user and the key
// (order.IdempotentID), so the create finds the order the first request made and
// answers with it as it now stands; a different request under the key is still 422,
// because the order itself is compared with the request (order.Service.Create). What
// is lost is only the replay of the very first answer, byte for byte.
func (s *Store) DeleteIdempotencyKeys(ctx context.Context, age time.Duration) (int64, error) {
	return s.deleteInBatches(ctx, "delete idempotency keys",
		`DELETE FROM idempotency_keys WHERE (user_id, key) IN (
		     SELECT user_id, key FROM idempotency_keys
		     WHERE created_at < now() - make_interval(secs => $1)
		       AND (status IS NOT NULL OR locked_until IS NULL OR locked_until < now())
		     LIMIT $2)`,
		age.Seconds(), retentionBatch)
}

// deleteInBatches is pgdb.DeleteInBatches on the store's pool, its error named op.
func (s *Store) deleteInBatches(ctx context.Context, op, query string, args ...any) (int64, error) {
	n, err := pgdb.DeleteInBatches(ctx, s.pool, query, args...)
	return n, dbError(err, op)
}

// Cleanup is the handler of the daily retention:cleanup task (jobs.Cleanup): it
// applies r — the step logs of sagas finished over r.SagaSteps ago, the failures of
// repeating steps beyond r.KeepFailedSteps at each end, Idempotency-Keys over
// r.IdempotencyKeys old — and logs what it deleted. Each part runs even when another
// fails; the task is retried if any did.
func (s *Store) Cleanup(r Retention, log *slog.Logger) func(context.Context, []byte) error {
	return func(ctx context.Context, _ []byte) error {
		steps, err1 := s.DeleteFinishedSagaSteps(ctx, r.SagaSteps)
		failed, err2 := s.PruneFailedSagaSteps(ctx, r.KeepFailedSteps)
		keys, err3 := s.DeleteIdempotencyKeys(ctx, r.IdempotencyKeys)
		log.InfoContext(ctx, "retention cleanup done", "saga_steps", steps, "failed_saga_steps", failed,
			"idempotency_keys", keys, "saga_steps_retention", r.SagaSteps.String(),
			"keep_failed_steps", r.KeepFailedSteps, "idempotency_key_retention", r.IdempotencyKeys.String())
		return errors.Join(err1, err2, err3)
	}
}
