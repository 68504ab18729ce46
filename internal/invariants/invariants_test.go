package invariants_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/invariants"
	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
)

// sqlOnly is a migrations directory as the service embeds it: its *.sql files.
type sqlOnly struct{ fs.FS }

func (s sqlOnly) ReadDir(name string) ([]fs.DirEntry, error) {
	all, err := fs.ReadDir(s.FS, name)
	return slices.DeleteFunc(all, func(e fs.DirEntry) bool { return !strings.HasSuffix(e.Name(), ".sql") }), err
}

// migrated is a fresh database with a service's real migrations, read from the tree
// (with the outbox table's first, as the service's own migrations package puts it):
// the checker must agree with the schemas the services actually have.
func migrated(t *testing.T, service string) *pgxpool.Pool {
	t.Helper()
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "services", service, "internal", "postgres", "migrations")
	var schema fs.FS = sqlOnly{os.DirFS(dir)}
	if service != "notifications" { // the one service that publishes nothing
		schema = outbox.WithTable(schema)
	}
	return pgtest.New(t, schema)
}

// fixture is the three databases, and the means to write what the services would.
type fixture struct {
	t             *testing.T
	inv, pay, ord *pgxpool.Pool
	dbs           invariants.Databases
	now           time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, now: time.Now().UTC()}
	for _, p := range []struct {
		pool    **pgxpool.Pool
		service string
	}{{&f.inv, "inventory"}, {&f.pay, "payments"}, {&f.ord, "orders"}} {
		*p.pool = migrated(t, p.service)
	}
	f.dbs = invariants.Databases{
		Inventory: f.inv.Config().ConnString(), Payments: f.pay.Config().ConnString(), Orders: f.ord.Config().ConnString(),
	}
	return f
}

// reset empties the three databases, for the next case.
func (f *fixture) reset() {
	f.t.Helper()
	f.exec(f.inv, `TRUNCATE products, reservations, reservation_lines, outbox`)
	f.exec(f.pay, `TRUNCATE payments, outbox`)
	f.exec(f.ord, `TRUNCATE orders, order_lines, sagas, saga_steps, outbox`)
}

func (f *fixture) exec(pool *pgxpool.Pool, sql string, args ...any) {
	f.t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// product creates a product with stock, as inventory does: the row and its
// product.created event.
func (f *fixture) product(stock int) string {
	f.t.Helper()
	id := uuid.NewString()
	f.exec(f.inv, `INSERT INTO products (id, sku, name, price_cents, currency, stock, created_at, updated_at)
		VALUES ($1, $2, 'Thing', 250, 'USD', $3, $4, $4)`, id, "SKU-"+id[:8], stock, f.now)
	f.exec(f.inv, `INSERT INTO outbox (id, stream, type, source, subject, time, data)
		VALUES ($1, 'events.inventory', 'product.created', 'inventory', $2, $3, jsonb_build_object('id', $2::text, 'stock', $4::int))`,
		uuid.New(), id, f.now, stock)
	return id
}

func (f *fixture) setStock(product string, stock int) {
	f.exec(f.inv, `UPDATE products SET stock = $2 WHERE id = $1`, product, stock)
}

type line struct {
	product  string
	quantity int
}

// order writes an order of lines at 250 cents each with its saga.
func (f *fixture) order(status, reason, saga string, lines ...line) string {
	f.t.Helper()
	id := uuid.NewString()
	var total int64
	for _, l := range lines {
		total += int64(l.quantity) * 250
	}
	var r any
	if reason != "" {
		r = reason
	}
	f.exec(f.ord, `INSERT INTO orders (id, user_id, status, total_cents, currency, payment_method, cancel_reason, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 'USD', 'pm_card_visa', $5, $6, $6)`, id, uuid.New(), status, total, r, f.now)
	for i, l := range lines {
		f.exec(f.ord, `INSERT INTO order_lines (order_id, line, product_id, quantity, unit_price_cents) VALUES ($1, $2, $3, $4, 250)`,
			id, i, l.product, l.quantity)
	}
	f.exec(f.ord, `INSERT INTO sagas (order_id, state, charge, created_at, updated_at) VALUES ($1, $2, 'none', $3, $3)`, id, saga, f.now)
	return id
}

// reservation writes inventory's reservation of the order; it does not touch stock.
func (f *fixture) reservation(order, status string, lines ...line) {
	f.t.Helper()
	f.exec(f.inv, `INSERT INTO reservations (order_id, status, currency, expires_at, created_at, updated_at)
		VALUES ($1, $2, 'USD', $3, $3, $3)`, order, status, f.now)
	for i, l := range lines {
		f.exec(f.inv, `INSERT INTO reservation_lines (order_id, position, product_id, quantity, unit_price_cents) VALUES ($1, $2, $3, $4, 250)`,
			order, i, l.product, l.quantity)
	}
}

func (f *fixture) payment(order, status string, amount int64) {
	f.t.Helper()
	var code any
	if status == "declined" {
		code = "payment_declined"
	}
	var settled, refunded any
	if status != "pending" {
		settled = f.now
	}
	if status == "refunded" {
		refunded = f.now
	}
	hash := make([]byte, 32)
	_, _ = rand.Read(hash)
	f.exec(f.pay, `INSERT INTO payments (id, order_id, user_id, amount_cents, currency, method, status, decline_code,
			idempotency_key, request_hash, created_at, settled_at, refunded_at)
		VALUES ($1, $2, $3, $4, 'USD', 'pm_card_visa', $5, $6, $11, $7, $8, $9, $10)`,
		uuid.New(), order, uuid.New(), amount, status, code, hash, f.now, settled, refunded, order)
}

// world is a settled shop where everything adds up: product a (created with 10)
// with one confirmed order of 2, a declined one, one out of stock and one the
// customer cancelled; product b untouched.
type world struct {
	a, b                                      string
	confirmed, declined, outOfStock, customer string
}

func goodWorld(f *fixture) world {
	w := world{a: f.product(10), b: f.product(3)}
	w.confirmed = f.order("confirmed", "", "done", line{w.a, 2})
	f.reservation(w.confirmed, "committed", line{w.a, 2})
	f.payment(w.confirmed, "captured", 500)

	w.declined = f.order("cancelled", "payment_declined", "done", line{w.a, 1})
	f.reservation(w.declined, "released", line{w.a, 1})
	f.payment(w.declined, "declined", 250)

	w.outOfStock = f.order("cancelled", "out_of_stock", "done", line{w.a, 20})
	f.reservation(w.outOfStock, "rejected")

	w.customer = f.order("cancelled", "customer_request", "done", line{w.a, 3})
	f.reservation(w.customer, "released", line{w.a, 3})
	f.payment(w.customer, "refunded", 750)

	f.setStock(w.a, 8)
	return w
}

func TestASettledShopThatAddsUpHasNoViolations(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	goodWorld(f)
	vs, rep, err := invariants.Violations(t.Context(), f.dbs)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 0 {
		t.Errorf("violations in a shop that adds up: %v", vs)
	}
	if rep.Orders != 4 || rep.Confirmed != 1 || rep.Cancelled != 3 || rep.Products != 2 || len(rep.Skipped) != 0 {
		t.Errorf("report %+v; want 4 orders (1 confirmed, 3 cancelled), 2 products, none skipped", rep)
	}
	// Check is the same, through t.
	if vs := invariants.Check(t, f.dbs); len(vs) != 0 {
		t.Errorf("Check: %v", vs)
	}
}

func TestEachBrokenInvariantIsReported(t *testing.T) {
	t.Parallel()
	// One set of databases, emptied between cases: creating three migrated
	// databases per case would cost more than all the checks.
	f := newFixture(t)
	for _, c := range []struct {
		name    string
		breakIt func(f *fixture, w world)
		want    string // the rule
	}{
		{"confirmed but refunded", func(f *fixture, w world) {
			f.exec(f.pay, `UPDATE payments SET status = 'refunded', refunded_at = now() WHERE order_id = $1`, w.confirmed)
		}, invariants.RuleConfirmedMoney},
		{"confirmed for the wrong amount", func(f *fixture, w world) {
			f.exec(f.pay, `UPDATE payments SET amount_cents = 499 WHERE order_id = $1`, w.confirmed)
		}, invariants.RuleConfirmedMoney},
		{"confirmed and never charged", func(f *fixture, w world) {
			f.exec(f.pay, `DELETE FROM payments WHERE order_id = $1`, w.confirmed)
		}, invariants.RuleConfirmedMoney},
		{"confirmed with its stock given back", func(f *fixture, w world) {
			f.exec(f.inv, `UPDATE reservations SET status = 'released' WHERE order_id = $1`, w.confirmed)
			f.setStock(w.a, 10)
		}, invariants.RuleConfirmedStock},
		{"confirmed with other lines reserved", func(f *fixture, w world) {
			f.exec(f.inv, `UPDATE reservation_lines SET quantity = 1 WHERE order_id = $1`, w.confirmed)
			f.setStock(w.a, 9)
		}, invariants.RuleConfirmedStock},
		{"confirmed at other prices than reserved", func(f *fixture, w world) {
			f.exec(f.inv, `UPDATE reservation_lines SET unit_price_cents = unit_price_cents + 1 WHERE order_id = $1`, w.confirmed)
		}, invariants.RuleConfirmedPrice},
		{"cancelled with the money kept", func(f *fixture, w world) {
			f.exec(f.pay, `UPDATE payments SET status = 'captured', refunded_at = NULL WHERE order_id = $1`, w.customer)
		}, invariants.RuleCancelledMoney},
		{"cancelled with a charge never settled", func(f *fixture, w world) {
			f.payment(w.outOfStock, "pending", 5000)
		}, invariants.RuleCancelledMoney},
		{"cancelled with its stock held", func(f *fixture, w world) {
			f.exec(f.inv, `UPDATE reservations SET status = 'reserved' WHERE order_id = $1`, w.declined)
			f.setStock(w.a, 7)
		}, invariants.RuleCancelledStock},
		{"money for no order", func(f *fixture, w world) {
			f.payment(uuid.NewString(), "captured", 100)
		}, invariants.RuleOrphanMoney},
		{"stock for no order", func(f *fixture, w world) {
			f.reservation(uuid.NewString(), "reserved", line{w.b, 1})
			f.setStock(w.b, 2)
		}, invariants.RuleOrphanStock},
		{"stock lost", func(f *fixture, w world) { f.setStock(w.a, 7) }, invariants.RuleConservation},
		{"stock made up", func(f *fixture, w world) { f.setStock(w.b, 4) }, invariants.RuleConservation},
		{"a pending order", func(f *fixture, w world) { f.order("pending", "", "running", line{w.b, 1}) }, invariants.RuleUnsettled},
		{"a saga still compensating", func(f *fixture, w world) {
			f.exec(f.ord, `UPDATE sagas SET state = 'compensation_failed' WHERE order_id = $1`, w.customer)
		}, invariants.RuleUnsettled},
		{"a total that is not its lines", func(f *fixture, w world) {
			f.exec(f.ord, `UPDATE orders SET total_cents = 1 WHERE id = $1`, w.declined)
		}, invariants.RuleOrderTotal},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.t = t
			f.reset()
			w := goodWorld(f)
			c.breakIt(f, w)
			vs, _, err := invariants.Violations(t.Context(), f.dbs)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(vs, func(v invariants.Violation) bool { return v.Rule == c.want }) {
				t.Errorf("violations %v; want one of rule %s", vs, c.want)
			}
		})
	}
}

func TestScopeLeavesOtherProductsOrdersOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := goodWorld(f)
	f.order("pending", "", "running", line{w.a, 1}) // another test's order in flight
	f.setStock(w.a, 5)                              // and its stock in motion

	vs, rep, err := invariants.Violations(t.Context(), f.dbs, invariants.OnlyProducts(w.b))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 0 || rep.Orders != 0 || rep.Products != 1 {
		t.Errorf("scoped to b: violations %v, report %+v; want none, 0 orders, 1 product", vs, rep)
	}
	mine := f.order("confirmed", "", "done", line{w.b, 1})
	f.reservation(mine, "committed", line{w.b, 1})
	f.setStock(w.b, 2) // and no payment: a violation within the scope
	vs, _, _ = invariants.Violations(t.Context(), f.dbs, invariants.OnlyProducts(w.b))
	if len(vs) != 1 || vs[0].Rule != invariants.RuleConfirmedMoney || vs[0].OrderID != mine {
		t.Errorf("violations %v; want only the uncharged order %s", vs, mine)
	}
}

func TestAProductAnAdminRestockedIsLeftOutOfConservation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := goodWorld(f)
	f.setStock(w.b, 50)
	f.exec(f.inv, `INSERT INTO outbox (id, stream, type, source, subject, time, data)
		VALUES ($1, 'events.inventory', 'product.updated', 'inventory', $2, now(), jsonb_build_object('stock', 50))`, uuid.New(), w.b)
	vs, rep, err := invariants.Violations(t.Context(), f.dbs)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 0 || len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0], w.b) {
		t.Errorf("violations %v, skipped %v; want none, and b skipped", vs, rep.Skipped)
	}
}

func TestWaitSettledWaitsForTheLastSaga(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := goodWorld(f)
	pending := f.order("pending", "", "running", line{w.b, 1})
	// finishing is set just before the statement that settles the saga: the commit can
	// be visible to WaitSettled before exec returns here, so the flag, not the end of
	// the goroutine, marks the earliest moment WaitSettled may return.
	var finishing atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond) // the saga's work, as far as this test goes
		f.exec(f.ord, `UPDATE orders SET status = 'cancelled', cancel_reason = 'out_of_stock' WHERE id = $1`, pending)
		finishing.Store(true)
		f.exec(f.ord, `UPDATE sagas SET state = 'done' WHERE order_id = $1`, pending)
	}()
	invariants.WaitSettled(t, f.dbs, 30*time.Second)
	if !finishing.Load() {
		t.Error("WaitSettled returned while an order was pending")
	}
	<-done
}

// fatalRecorder is a testing.TB whose Fatalf ends only the goroutine that calls it.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func TestWaitSettledGivesUpNamingTheUnsettled(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := goodWorld(f)
	stuck := f.order("paid", "", "running", line{w.b, 1})
	f.exec(f.ord, `UPDATE sagas SET last_error = 'payments: connection refused' WHERE order_id = $1`, stuck)

	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		invariants.WaitSettled(rec, f.dbs, 500*time.Millisecond)
	}()
	<-done
	if !strings.Contains(rec.msg, stuck) || !strings.Contains(rec.msg, "connection refused") {
		t.Errorf("WaitSettled failed with %q; want the stuck order and its last error", rec.msg)
	}
}
