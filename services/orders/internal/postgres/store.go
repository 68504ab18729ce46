// Package postgres is the orders service's storage: orders and their lines, sagas with
// their leases and step logs, Idempotency-Key claims, sales reports and the outbox, in
// Postgres through pgx. It translates database errors into the domain's (no rows is
// order.ErrNotFound, an unreachable server is apperr.Unavailable), and owns the wire
// form of the events it writes, so nothing above it knows SQL or event JSON.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
)

// Store implements order.Store (and report.Store, and the Idempotency-Key claims) on
// a pool.
type Store struct{ pool *pgxpool.Pool }

var _ order.Store = (*Store)(nil)

// NewStore stores in pool's database, which must have this package's migrations.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// writeEvent writes o's event typ, in the wire form orderevents publishes.
func writeEvent(ctx context.Context, tx pgx.Tx, typ orderevents.Type, o order.Order, at time.Time) error {
	var data any
	switch typ {
	case orderevents.TypeCancelled:
		data = orderevents.Cancelled{OrderID: o.ID, UserID: o.UserID, Reason: string(o.CancelReason), TotalCents: o.TotalCents, Currency: o.Currency}
	case orderevents.TypeCreated, orderevents.TypeConfirmed:
		items := make([]orderevents.Line, len(o.Lines))
		for i, l := range o.Lines {
			items[i] = orderevents.Line{ProductID: l.ProductID, Quantity: int(l.Quantity), UnitPriceCents: l.UnitPriceCents}
		}
		created := orderevents.Created{OrderID: o.ID, UserID: o.UserID, TotalCents: o.TotalCents, Currency: o.Currency, Items: items}
		data = created
		if typ == orderevents.TypeConfirmed {
			data = orderevents.Confirmed(created)
		}
	default:
		// Other types (the daily sales report) are not about one order; writing
		// one here would publish data that is not its payload.
		return fmt.Errorf("orders: event %q is not an order's event", typ)
	}
	return outbox.Write(ctx, tx, outbox.Event{Stream: orderevents.Stream, Type: string(typ), Source: orderevents.Source, Subject: o.ID.String(), Time: at, Data: data})
}

// orderColumnsOf lists the columns scanOrder reads, qualified by table (or alias) t.
func orderColumnsOf(t string) string {
	return fmt.Sprintf(`%[1]s.id, %[1]s.user_id, %[1]s.status, %[1]s.total_cents, %[1]s.currency, %[1]s.payment_method,
		coalesce(%[1]s.cancel_reason, ''), %[1]s.created_at, %[1]s.updated_at`, t)
}

var orderColumns = orderColumnsOf("orders")

// CreateOrder implements order.Store.
func (s *Store) CreateOrder(ctx context.Context, o order.Order, sg order.Saga, lease order.Lease) (order.Order, order.Lease, bool, error) {
	created := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`INSERT INTO orders (id, user_id, status, total_cents, currency, payment_method, created_at, updated_at)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
			o.ID, o.UserID, o.Status, o.TotalCents, o.Currency, o.PaymentMethod, o.CreatedAt, o.UpdatedAt)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		created = true
		products := make([]uuid.UUID, len(o.Lines))
		quantities := make([]int32, len(o.Lines))
		prices := make([]int64, len(o.Lines))
		for i, l := range o.Lines {
			products[i], quantities[i], prices[i] = l.ProductID, int32(l.Quantity), l.UnitPriceCents
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO order_lines (order_id, line, product_id, quantity, unit_price_cents)
			 SELECT $1, l.n - 1, l.product_id, l.quantity, l.price
			 FROM unnest($2::uuid[], $3::int[], $4::bigint[]) WITH ORDINALITY AS l(product_id, quantity, price, n)`,
			o.ID, products, quantities, prices); err != nil {
			return err
		}
		var owner *string
		if lease.Owner != "" {
			owner = &lease.Owner
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO sagas (order_id, state, charge, created_at, updated_at, lease_token, locked_by, locked_until)
			 VALUES ($1, $2, $3, $4, $5, 1, $6,
			         CASE WHEN $6::text IS NULL THEN NULL ELSE now() + make_interval(secs => $7) END)`,
			sg.OrderID, sg.State, sg.Charge, sg.CreatedAt, sg.UpdatedAt, owner, lease.TTL.Seconds()); err != nil {
			return err
		}
		return writeEvent(ctx, tx, orderevents.TypeCreated, o, o.CreatedAt)
	})
	if err != nil {
		return order.Order{}, order.Lease{}, false, dbError(err, "create order")
	}
	if !created {
		existing, err := s.Order(ctx, o.ID)
		return existing, order.Lease{}, false, err
	}
	if lease.Owner == "" {
		return o, order.Lease{}, true, nil
	}
	lease.OrderID, lease.Token = o.ID, 1
	return o, lease, true, nil
}

// Order implements order.Store.
func (s *Store) Order(ctx context.Context, id uuid.UUID) (order.Order, error) {
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id))
	if err != nil {
		return order.Order{}, dbError(err, "order")
	}
	orders := []order.Order{o}
	if err := loadLines(ctx, s.pool, orders); err != nil {
		return order.Order{}, err
	}
	return orders[0], nil
}

// OrdersByUser implements order.Store.
func (s *Store) OrdersByUser(ctx context.Context, userID uuid.UUID, p page.Request) ([]order.Order, error) {
	var after *time.Time
	var afterID uuid.UUID
	if p.After != nil {
		after, afterID = &p.After.Time, p.After.ID
	}
	rows, err := s.pool.Query(ctx,
		`SELECT `+orderColumns+` FROM orders
		 WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
		 ORDER BY created_at DESC, id DESC LIMIT $4`,
		userID, after, afterID, p.Limit+1)
	if err != nil {
		return nil, dbError(err, "orders by user")
	}
	orders, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (order.Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, dbError(err, "orders by user")
	}
	if err := loadLines(ctx, s.pool, orders); err != nil {
		return nil, err
	}
	return orders, nil
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// loadLines fills in the lines of orders with one query.
func loadLines(ctx context.Context, q querier, orders []order.Order) error {
	if len(orders) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(orders))
	at := make(map[uuid.UUID]int, len(orders))
	for i, o := range orders {
		ids[i], at[o.ID] = o.ID, i
	}
	rows, err := q.Query(ctx,
		`SELECT order_id, product_id, quantity, unit_price_cents FROM order_lines
		 WHERE order_id = ANY($1) ORDER BY order_id, line`, ids)
	if err != nil {
		return dbError(err, "order lines")
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var l order.Line
		var q int
		if err := rows.Scan(&id, &l.ProductID, &q, &l.UnitPriceCents); err != nil {
			return dbError(err, "order lines")
		}
		l.Quantity = order.Quantity(q)
		i := at[id]
		orders[i].Lines = append(orders[i].Lines, l)
	}
	return dbError(rows.Err(), "order lines")
}

func scanOrder(row pgx.Row) (order.Order, error) {
	var r orderRow
	err := row.Scan(r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return order.Order{}, order.ErrNotFound
	}
	if err != nil {
		return order.Order{}, err
	}
	return r.parse()
}

// orderRow receives the columns of orderColumnsOf, in every query that reads an
// order (alone or joined to its saga), so that each read checks them the same way.
type orderRow struct {
	o                      order.Order
	status, method, reason string
}

// dest is where Scan puts the columns of orderColumnsOf, in their order.
func (r *orderRow) dest() []any {
	return []any{&r.o.ID, &r.o.UserID, &r.status, &r.o.TotalCents, &r.o.Currency, &r.method, &r.reason, &r.o.CreatedAt, &r.o.UpdatedAt}
}

// parse is the order scanned, without its lines. A status or cancel reason the domain
// does not know is an error rather than a value nothing above the store expects.
func (r *orderRow) parse() (order.Order, error) {
	o := r.o
	var err error
	if o.Status, err = order.ParseStatus(r.status); err != nil {
		return order.Order{}, err
	}
	if o.CancelReason, err = order.ParseCancelReason(r.reason); err != nil {
		return order.Order{}, err
	}
	o.PaymentMethod = order.PaymentMethod(r.method)
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	return o, nil
}

// sagaColumnsOf lists the columns scanSaga reads, qualified by table (or alias) t.
func sagaColumnsOf(t string) string {
	return fmt.Sprintf(`%[1]s.order_id, %[1]s.state, coalesce(%[1]s.cancel_reason, ''), %[1]s.charge, %[1]s.failing_since,
		%[1]s.reserved, %[1]s.attempts, %[1]s.failures, %[1]s.last_error, %[1]s.created_at, %[1]s.updated_at, %[1]s.finished_at`, t)
}

var sagaColumns = sagaColumnsOf("sagas")

func scanSaga(row pgx.Row, extra ...any) (order.Saga, error) {
	var sg order.Saga
	var state, reason, charge string
	var failingSince, finishedAt *time.Time
	dest := append([]any{&sg.OrderID, &state, &reason, &charge, &failingSince, &sg.Reserved, &sg.Attempts, &sg.Failures,
		&sg.LastError, &sg.CreatedAt, &sg.UpdatedAt, &finishedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return order.Saga{}, err
	}
	sg.State = order.SagaState(state)
	var err error
	if sg.Reason, err = order.ParseCancelReason(reason); err != nil {
		return order.Saga{}, err
	}
	if sg.Charge, err = order.ParseChargeState(charge); err != nil {
		return order.Saga{}, err
	}
	if failingSince != nil {
		sg.FailingSince = failingSince.UTC()
	}
	if finishedAt != nil {
		sg.FinishedAt = finishedAt.UTC()
	}
	sg.CreatedAt, sg.UpdatedAt = sg.CreatedAt.UTC(), sg.UpdatedAt.UTC()
	return sg, nil
}

// setSaga writes the columns of a saga that a change sets. Its parameters are named
// (sagaArgs gives them), so that the statements using it add their own by name, and
// a column added here cannot shift theirs.
const setSaga = `state = @state, cancel_reason = @cancel_reason, charge = @charge, failing_since = @failing_since,
	reserved = @reserved, attempts = @attempts, failures = @failures, last_error = @last_error,
	updated_at = @updated_at, finished_at = @finished_at`

// sagaArgs are the arguments of a statement that uses setSaga: setSaga's, from sg,
// and the statement's own (its WHERE, say), which must not reuse a name of setSaga's.
// They are strict: pgx refuses a statement that lacks one of them or has one too
// many.
func sagaArgs(sg order.Saga, own pgx.StrictNamedArgs) (pgx.StrictNamedArgs, error) {
	args := pgx.StrictNamedArgs{
		"state": sg.State, "cancel_reason": nullable(string(sg.Reason)), "charge": sg.Charge,
		"failing_since": nullTime(sg.FailingSince), "reserved": sg.Reserved, "attempts": sg.Attempts,
		"failures": sg.Failures, "last_error": sg.LastError, "updated_at": sg.UpdatedAt,
		"finished_at": nullTime(sg.FinishedAt),
	}
	for name, v := range own {
		if _, taken := args[name]; taken {
			return nil, fmt.Errorf("saga statement argument @%s is one of setSaga's", name)
		}
		args[name] = v
	}
	return args, nil
}

// ClaimSaga implements order.Store. The conditional UPDATE is the lease: of workers
// racing for one saga exactly one sees a row come back.
func (s *Store) ClaimSaga(ctx context.Context, id uuid.UUID, owner string, ttl time.Duration) (order.Lease, order.Order, order.Saga, error) {
	lease := order.Lease{OrderID: id, Owner: owner, TTL: ttl}
	sg, err := scanSaga(s.pool.QueryRow(ctx,
		`UPDATE sagas SET lease_token = lease_token + 1, locked_by = $2, locked_until = now() + make_interval(secs => $3)
		 WHERE order_id = $1 AND state <> 'done' AND (locked_until IS NULL OR locked_until < now())
		 RETURNING `+sagaColumns+`, lease_token`,
		id, owner, ttl.Seconds()), &lease.Token)
	if errors.Is(err, pgx.ErrNoRows) {
		var state string
		var busy bool
		err := s.pool.QueryRow(ctx, `SELECT state, coalesce(locked_until > now(), false) FROM sagas WHERE order_id = $1`, id).Scan(&state, &busy)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return order.Lease{}, order.Order{}, order.Saga{}, order.ErrNotFound
		case err != nil:
			return order.Lease{}, order.Order{}, order.Saga{}, dbError(err, "claim saga")
		case state == string(order.SagaDone):
			return order.Lease{}, order.Order{}, order.Saga{}, order.ErrSagaDone
		}
		return order.Lease{}, order.Order{}, order.Saga{}, order.ErrSagaBusy
	}
	if err != nil {
		return order.Lease{}, order.Order{}, order.Saga{}, dbError(err, "claim saga")
	}
	o, err := s.Order(ctx, id)
	if err != nil {
		return order.Lease{}, order.Order{}, order.Saga{}, err
	}
	return lease, o, sg, nil
}

// Apply implements order.Store. A change that finishes the saga gives its lease back
// in the same statement (there is nothing left to drive), which saves the order a
// commit; any other renews the lease.
func (s *Store) Apply(ctx context.Context, l order.Lease, c order.Change) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		args, err := sagaArgs(c.Saga, pgx.StrictNamedArgs{
			"order_id": l.OrderID, "lease_token": l.Token, "lease_secs": l.TTL.Seconds(), "finishes": c.Saga.State == order.SagaDone,
		})
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx,
			`UPDATE sagas SET `+setSaga+`,
			     locked_by = CASE WHEN @finishes THEN NULL ELSE locked_by END,
			     locked_until = CASE WHEN @finishes THEN NULL ELSE now() + make_interval(secs => @lease_secs) END
			 WHERE order_id = @order_id AND lease_token = @lease_token`, args)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return order.ErrLeaseLost
		}
		return writeChange(ctx, tx, c)
	})
	return dbError(err, "apply saga change")
}

// writeChange writes what a change does besides the saga's row: the order's status,
// the step log entry and the event.
func writeChange(ctx context.Context, tx pgx.Tx, c order.Change) error {
	if c.StatusChanged {
		if _, err := tx.Exec(ctx,
			`UPDATE orders SET status = $2, cancel_reason = $3, updated_at = $4 WHERE id = $1`,
			c.Order.ID, c.Order.Status, nullable(string(c.Order.CancelReason)), c.Order.UpdatedAt); err != nil {
			return err
		}
	}
	if c.Log.Step != order.StepNone {
		if _, err := tx.Exec(ctx,
			`INSERT INTO saga_steps (order_id, step, attempt, outcome, error, at) VALUES ($1, $2, $3, $4, $5, $6)`,
			c.Order.ID, c.Log.Step, c.Log.Attempt, c.Log.Outcome, c.Log.Error, c.Log.At); err != nil {
			return err
		}
	}
	if c.Event != "" {
		return writeEvent(ctx, tx, c.Event, c.Order, c.Log.At)
	}
	return nil
}

// ReleaseSaga implements order.Store.
func (s *Store) ReleaseSaga(ctx context.Context, l order.Lease) error {
	_, err := s.pool.Exec(ctx,
		`UPDATE sagas SET locked_by = NULL, locked_until = NULL WHERE order_id = $1 AND lease_token = $2`,
		l.OrderID, l.Token)
	return dbError(err, "release saga")
}

// SagasToRecover implements order.Store.
func (s *Store) SagasToRecover(ctx context.Context, limit int) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT order_id FROM sagas
		 WHERE state <> 'done' AND (locked_until IS NULL OR locked_until < now())
		 ORDER BY updated_at LIMIT $1`, limit)
	if err != nil {
		return nil, dbError(err, "sagas to recover")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	return ids, dbError(err, "sagas to recover")
}

// UpdateSaga implements order.Store.
func (s *Store) UpdateSaga(ctx context.Context, id uuid.UUID, fn func(order.Order, order.Saga) (order.Change, error)) (order.Change, error) {
	var c order.Change
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		o, err := scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		var busy bool
		sg, err := scanSaga(tx.QueryRow(ctx,
			`SELECT `+sagaColumns+`, coalesce(locked_until > now(), false) FROM sagas WHERE order_id = $1 FOR UPDATE`, id), &busy)
		if errors.Is(err, pgx.ErrNoRows) {
			return order.ErrNotFound
		}
		if err != nil {
			return err
		}
		if busy {
			return order.ErrSagaBusy
		}
		orders := []order.Order{o}
		if err := loadLines(ctx, tx, orders); err != nil {
			return err
		}
		if c, err = fn(orders[0], sg); err != nil {
			return err
		}
		args, err := sagaArgs(c.Saga, pgx.StrictNamedArgs{"order_id": id})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE sagas SET `+setSaga+` WHERE order_id = @order_id`, args); err != nil {
			return err
		}
		return writeChange(ctx, tx, c)
	})
	if err != nil {
		return order.Change{}, dbError(err, "update saga")
	}
	return c, nil
}

// maxStepsShown bounds the step log shown per saga: a saga retried every 15 seconds
// for a day has thousands of attempts, and the latest say what is wrong.
const maxStepsShown = 50

// Sagas implements order.Store.
func (s *Store) Sagas(ctx context.Context, states []order.SagaState, p page.Request) ([]order.SagaView, error) {
	var after *time.Time
	var afterID uuid.UUID
	if p.After != nil {
		after, afterID = &p.After.Time, p.After.ID
	}
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = string(st)
	}
	rows, err := s.pool.Query(ctx,
		`SELECT `+sagaColumnsOf("s")+`, coalesce(s.locked_until > now(), false), `+orderColumnsOf("o")+`
		 FROM sagas s JOIN orders o ON o.id = s.order_id
		 WHERE (CASE WHEN cardinality($1::text[]) = 0 THEN s.state <> 'done' ELSE s.state = ANY($1) END)
		   AND ($2::timestamptz IS NULL OR (s.created_at, s.order_id) > ($2, $3))
		 ORDER BY s.created_at, s.order_id LIMIT $4`,
		names, after, afterID, p.Limit+1)
	if err != nil {
		return nil, dbError(err, "sagas")
	}
	views, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (order.SagaView, error) {
		var v order.SagaView
		var or orderRow
		sg, err := scanSaga(r, append([]any{&v.Leased}, or.dest()...)...)
		if err != nil {
			return v, err
		}
		if v.Order, err = or.parse(); err != nil {
			return v, err
		}
		v.Saga, v.Next = sg, sg.Next(v.Order)
		return v, nil
	})
	if err != nil {
		return nil, dbError(err, "sagas")
	}
	if len(views) == 0 {
		return views, nil
	}
	ids := make([]uuid.UUID, len(views))
	at := make(map[uuid.UUID]int, len(views))
	for i, v := range views {
		ids[i], at[v.Saga.OrderID] = v.Saga.OrderID, i
	}
	steps, err := s.pool.Query(ctx,
		`SELECT order_id, step, attempt, outcome, error, at FROM (
		     SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY id DESC) AS n
		     FROM saga_steps WHERE order_id = ANY($1)) recent
		 WHERE n <= $2 ORDER BY order_id, id`, ids, maxStepsShown)
	if err != nil {
		return nil, dbError(err, "saga steps")
	}
	defer steps.Close()
	for steps.Next() {
		var id uuid.UUID
		var l order.StepLog
		var step, outcome string
		if err := steps.Scan(&id, &step, &l.Attempt, &outcome, &l.Error, &l.At); err != nil {
			return nil, dbError(err, "saga steps")
		}
		l.Step, l.Outcome, l.At = order.Step(step), order.OutcomeKind(outcome), l.At.UTC()
		i := at[id]
		views[i].Steps = append(views[i].Steps, l)
	}
	return views, dbError(steps.Err(), "saga steps")
}

// Saga implements order.Store.
func (s *Store) Saga(ctx context.Context, id uuid.UUID) (order.SagaView, error) {
	var v order.SagaView
	var or orderRow
	sg, err := scanSaga(s.pool.QueryRow(ctx,
		`SELECT `+sagaColumnsOf("s")+`, coalesce(s.locked_until > now(), false), `+orderColumnsOf("o")+`
		 FROM sagas s JOIN orders o ON o.id = s.order_id WHERE s.order_id = $1`, id),
		append([]any{&v.Leased}, or.dest()...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return order.SagaView{}, order.ErrNotFound
	}
	if err != nil {
		return order.SagaView{}, dbError(err, "saga")
	}
	o, err := or.parse()
	if err != nil {
		return order.SagaView{}, err
	}
	v.Saga, v.Next = sg, sg.Next(o)
	orders := []order.Order{o}
	if err := loadLines(ctx, s.pool, orders); err != nil {
		return order.SagaView{}, err
	}
	v.Order = orders[0]
	// The whole log, unlike Sagas': it is one saga's, and retention:cleanup thins a
	// step that keeps failing to its first and latest SAGA_STEPS_KEEP failures daily,
	// so it stays bounded.
	rows, err := s.pool.Query(ctx,
		`SELECT step, attempt, outcome, error, at FROM saga_steps WHERE order_id = $1 ORDER BY id`, id)
	if err != nil {
		return order.SagaView{}, dbError(err, "saga steps")
	}
	v.Steps, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (order.StepLog, error) {
		var l order.StepLog
		var step, outcome string
		err := r.Scan(&step, &l.Attempt, &outcome, &l.Error, &l.At)
		l.Step, l.Outcome, l.At = order.Step(step), order.OutcomeKind(outcome), l.At.UTC()
		return l, err
	})
	if err != nil {
		return order.SagaView{}, dbError(err, "saga steps")
	}
	return v, nil
}

// Events returns the order events in the outbox about the subjects (order ids),
// oldest first: an admin's read, which scans the outbox (outbox.About says why that
// is acceptable and an index is not).
func (s *Store) Events(ctx context.Context, subjects []string) ([]outbox.Record, error) {
	records, err := outbox.About(ctx, s.pool, subjects)
	return records, dbError(err, "outbox events")
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// dbError reports a database error as pkg/pgdb classifies it: a domain error passes
// through, an unreachable server is a 503 naming this database, the rest a 500.
func dbError(err error, op string) error { return pgdb.Error(err, "orders", op) }
