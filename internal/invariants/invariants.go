// Package invariants checks from outside that the create-order saga lost nothing. It
// reads the inventory, payments and orders databases of a running stack (as each
// service's own role) and asserts the invariants of the create-order saga (docs/contract.md):
//
//   - every confirmed order has exactly one payment, captured (not refunded), for its
//     total in its currency, and a committed reservation of exactly its lines at the
//     prices it was quoted (and charged) at;
//   - every cancelled order nets zero money (no payment, a declined one, or a refunded
//     one) and its stock is back (no reservation, or a released or rejected one);
//   - no money is held and no stock reserved for an order the orders service does not
//     know;
//   - stock is never below zero;
//   - for each product, its initial stock = its stock + the quantities held by
//     reservations (reserved or committed). Once every order is settled the held ones
//     are exactly the confirmed orders' lines (the per-order rules above), so this is
//     docs/contract.md's "initial stock = stock + quantities in confirmed orders".
//
// The initial stock of a product is the stock in its product.created event in
// inventory's outbox: written in the same transaction as the product, it is the stock
// before any order, with no need to record anything before a test. A product whose
// stock an admin set later (a product.updated event) has no such baseline: the
// conservation rule skips it (and says so), the others still apply — unless the
// check is asked to AccountStockChanges, which replays the product's events to learn
// by how much each update changed its stock (see ledger.go). The outbox keeps
// published rows for 7 days, so on a long-lived stack older products are skipped too.
//
// Two more sets of rules span the whole stack rather than the saga: CheckEvents
// (every outbox row published, every event handled by each consumer group, the DLQ
// holding only what was expected) and CheckMail (every notification sent, and exactly
// one e-mail per order outcome, per notification and per event that owes one). They
// read Redis, Mailpit and the users and notifications databases, and are meant for a
// stack of one's own (a chaos run), since OnlyProducts cannot narrow them.
//
// The rules hold for settled orders only: an order whose saga is still running may
// hold stock or money in between. Check therefore reports unsettled orders as
// violations; call WaitSettled first, which polls until every order is settled. On a
// stack shared with other tests, scope both to the products a test created
// (OnlyProducts), so that other tests' orders in flight do not count.
package invariants

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
)

// Databases are the URLs of the three databases the invariants span, and of the two
// more that the delivery rules read (CheckEvents, CheckMail): users' outbox, and
// notifications' inbox and notifications.
type Databases struct {
	Inventory, Payments, Orders string
	Users, Notifications        string
}

// FromStack picks the three databases out of a devstack's (URLs().Databases).
func FromStack(dbs []devstack.Database) Databases {
	var d Databases
	for _, db := range dbs {
		switch db.Service {
		case "inventory":
			d.Inventory = db.URL
		case "payments":
			d.Payments = db.URL
		case "orders":
			d.Orders = db.URL
		case "users":
			d.Users = db.URL
		case "notifications":
			d.Notifications = db.URL
		}
	}
	return d
}

// Option narrows what is checked.
type Option func(*scope)

type scope struct {
	products []string // nil: every product and order
	ledger   bool     // AccountStockChanges
	events   *eventsCheck
	mailpit  string // CheckMail
}

// OnlyProducts limits the checks to these products and the orders with a line of any
// of them. Orphaned payments and reservations are still looked for everywhere.
func OnlyProducts(ids ...string) Option {
	return func(s *scope) { s.products = append(s.products, ids...) }
}

func newScope(opts []Option) scope {
	var s scope
	for _, o := range opts {
		o(&s)
	}
	return s
}

// Violation is one broken invariant.
type Violation struct {
	Rule    string // which invariant: see the Rule* constants
	OrderID string // the order concerned, if any
	Product string // the product concerned, if any
	Detail  string // what was found
}

// The rules a Violation names.
const (
	RuleUnsettled      = "unsettled"          // an order or saga not finished
	RuleConfirmedMoney = "confirmed-money"    // a confirmed order without exactly one captured payment of its total
	RuleConfirmedStock = "confirmed-stock"    // a confirmed order without a committed reservation of its lines
	RuleConfirmedPrice = "confirmed-price"    // a confirmed order whose reservation has other prices than its quote
	RuleCancelledMoney = "cancelled-money"    // a cancelled order whose money was kept
	RuleCancelledStock = "cancelled-stock"    // a cancelled order whose stock is still held
	RuleOrphanMoney    = "orphan-money"       // money taken for an order orders does not know
	RuleOrphanStock    = "orphan-stock"       // stock held for an order orders does not know
	RuleNegativeStock  = "negative-stock"     // stock below zero
	RuleConservation   = "stock-conservation" // initial stock != stock + held quantities
	RuleOrderTotal     = "order-total"        // an order's total is not the sum of its lines
	RuleMissingSaga    = "missing-saga"       // an order without a saga
	// With AccountStockChanges:
	RuleStockLedger = "stock-ledger" // a product's stock is not what its events in inventory's outbox add up to
	// With CheckEvents:
	RuleUnpublished = "outbox-unpublished" // an outbox row never published
	RuleUnconsumed  = "event-unconsumed"   // an event a consumer group has not handled (pending, behind, or missing from its inbox)
	RuleDeadLetter  = "dead-letter"        // a DLQ entry that was not expected, or an expected one missing
	// With CheckMail:
	RuleEmailUnsent = "email-unsent" // a notification not sent
	RuleEmailOnce   = "email-once"   // not exactly one e-mail for an order's outcome, a notification or an event
)

func (v Violation) String() string {
	var who []string
	if v.OrderID != "" {
		who = append(who, "order "+v.OrderID)
	}
	if v.Product != "" {
		who = append(who, "product "+v.Product)
	}
	return fmt.Sprintf("%s: %s: %s", v.Rule, strings.Join(who, ", "), v.Detail)
}

// Report is what a check looked at, besides what it found wrong.
type Report struct {
	Orders, Confirmed, Cancelled int
	Products                     int
	// Skipped lists the products the conservation rule could not check, and why.
	Skipped []string
	// Rules are the rules applied, each once, in a fixed order: the saga's always,
	// the ledger and delivery ones when their options ask for them.
	Rules []string
	// AdminChanges counts the product.updated events the conservation rule accounted
	// for (AccountStockChanges).
	AdminChanges int
	// Delivery is what the event and mail rules looked at (CheckEvents, CheckMail).
	Delivery DeliveryReport
}

// Check asserts every invariant (see the package doc) on the databases, reporting
// each violation with t.Errorf, and returns them. It fails t at once when a database
// cannot be read. Call WaitSettled first: unsettled orders are violations here.
func Check(t testing.TB, dbs Databases, opts ...Option) []Violation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vs, rep, err := Violations(ctx, dbs, opts...)
	if err != nil {
		t.Fatalf("invariants: %v", err)
	}
	for _, v := range vs {
		t.Errorf("invariant violated: %s", v)
	}
	t.Logf("invariants: %d orders (%d confirmed, %d cancelled) and %d products checked, %d violations",
		rep.Orders, rep.Confirmed, rep.Cancelled, rep.Products, len(vs))
	for _, s := range rep.Skipped {
		t.Logf("invariants: stock conservation not checked for %s", s)
	}
	return vs
}

// WaitSettled polls the orders database until no order in scope is unfinished (its
// status not confirmed or cancelled, or its saga not done), and fails t when that
// has not happened within timeout, listing the unfinished ones with their sagas' last
// errors.
func WaitSettled(t testing.TB, dbs Databases, timeout time.Duration, opts ...Option) {
	t.Helper()
	if dbs.Orders == "" {
		t.Fatal(ErrMissingDatabase)
	}
	sc := newScope(opts)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		pending, err := unsettled(ctx, dbs.Orders, sc)
		cancel()
		switch {
		case err == nil && len(pending) == 0:
			return
		case time.Now().After(deadline):
			if err != nil {
				t.Fatalf("invariants: reading the orders database: %v", err)
			}
			t.Fatalf("invariants: %d orders not settled within %s:\n  %s", len(pending), timeout, strings.Join(pending, "\n  "))
		}
		time.Sleep(250 * time.Millisecond) // polling a database: nothing to wait on
	}
}

// unsettled describes the unfinished orders in scope, the oldest 20.
func unsettled(ctx context.Context, ordersURL string, sc scope) ([]string, error) {
	conn, err := pgx.Connect(ctx, ordersURL)
	if err != nil {
		return nil, fmt.Errorf("connect to the orders database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `
		SELECT o.id::text, o.status, COALESCE(s.state, '(no saga)'), COALESCE(s.charge, ''), COALESCE(s.last_error, '')
		FROM orders o LEFT JOIN sagas s ON s.order_id = o.id
		WHERE (o.status NOT IN ('confirmed', 'cancelled') OR s.state IS DISTINCT FROM 'done')
		  AND `+inScope("o.id")+`
		ORDER BY o.created_at LIMIT 20`, sc.products)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var id, status, state, charge, lastErr string
		err := r.Scan(&id, &status, &state, &charge, &lastErr)
		return fmt.Sprintf("%s: status %s, saga %s, charge %s, last error %q", id, status, state, charge, lastErr), err
	})
}

// inScope is an SQL condition on the order id expression: true when $1 (the scope's
// products) is NULL or the order has a line of one of them.
func inScope(orderID string) string {
	return `($1::text[] IS NULL OR EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = ` + orderID + ` AND l.product_id::text = ANY($1::text[])))`
}

type line struct {
	product  string
	quantity int
	price    int64
}

type orderRow struct {
	id, status, reason, sagaState string
	total                         int64
	currency                      string
	lines                         []line
}

type paymentRow struct {
	status   string
	amount   int64
	currency string
}

type reservationRow struct {
	status string
	lines  []line
}

type world struct {
	orders       []orderRow
	allOrders    map[string]bool
	payments     map[string][]paymentRow
	reservations map[string]reservationRow
	stock        map[string]int // product → stock
	initial      map[string]int // product → stock at creation
	patched      map[string]bool
	ledger       map[string]*ledger // product → its stock replayed from the outbox (AccountStockChanges)
}

// Violations reads the databases and returns every broken invariant (see the package
// doc) and what it looked at. It fails when a database cannot be read.
func Violations(ctx context.Context, dbs Databases, opts ...Option) ([]Violation, Report, error) {
	if err := dbs.check(); err != nil {
		return nil, Report{}, err
	}
	sc := newScope(opts)
	// Inventory and payments first, orders last: an order row is committed before
	// its saga reserves or charges, so every reservation and payment read here has its
	// order in the later read, and none is mistaken for an orphan.
	w := world{payments: map[string][]paymentRow{}, reservations: map[string]reservationRow{},
		stock: map[string]int{}, initial: map[string]int{}, patched: map[string]bool{}, ledger: map[string]*ledger{}}
	if err := readInventory(ctx, dbs.Inventory, sc, &w); err != nil {
		return nil, Report{}, fmt.Errorf("inventory database: %w", err)
	}
	if err := readPayments(ctx, dbs.Payments, &w); err != nil {
		return nil, Report{}, fmt.Errorf("payments database: %w", err)
	}
	if err := readOrders(ctx, dbs.Orders, sc, &w); err != nil {
		return nil, Report{}, fmt.Errorf("orders database: %w", err)
	}
	vs, rep := judge(w, sc)
	if sc.events != nil || sc.mailpit != "" {
		dvs, drep, err := deliveryViolations(ctx, dbs, sc, &w)
		if err != nil {
			return nil, Report{}, err
		}
		vs = append(vs, dvs...)
		rep.Delivery = drep
	}
	rep.Rules = rulesOf(sc)
	return vs, rep, nil
}

// readOnly runs f in a read-only REPEATABLE READ transaction: one snapshot of the
// database, so that, for one, stock and reservations are read as of the same moment.
func readOnly(ctx context.Context, url string, f func(pgx.Tx) error) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, f)
}

func readInventory(ctx context.Context, url string, sc scope, w *world) error {
	return readOnly(ctx, url, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text, stock FROM products WHERE $1::text[] IS NULL OR id::text = ANY($1::text[])`, sc.products)
		if err != nil {
			return err
		}
		var id string
		var n int
		if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { w.stock[id] = n; return nil }); err != nil {
			return err
		}

		if sc.ledger {
			if err := readLedger(ctx, tx, w); err != nil {
				return err
			}
		}
		var typ string
		var stock *int
		created, updated := string(inventoryevents.TypeProductCreated), string(inventoryevents.TypeProductUpdated)
		rows, err = tx.Query(ctx, `SELECT subject, type, (data->>'stock')::int FROM outbox
			WHERE type = ANY($1) ORDER BY seq`, []string{created, updated})
		if err != nil {
			return err
		}
		if _, err := pgx.ForEachRow(rows, []any{&id, &typ, &stock}, func() error {
			switch {
			case typ == created && stock != nil:
				w.initial[id] = *stock
			case typ == updated:
				w.patched[id] = true
			}
			return nil
		}); err != nil {
			return err
		}

		var order, status string
		rows, err = tx.Query(ctx, `SELECT order_id::text, status FROM reservations`)
		if err != nil {
			return err
		}
		if _, err := pgx.ForEachRow(rows, []any{&order, &status}, func() error {
			w.reservations[order] = reservationRow{status: status}
			return nil
		}); err != nil {
			return err
		}
		var l line
		rows, err = tx.Query(ctx, `SELECT order_id::text, product_id::text, quantity, unit_price_cents FROM reservation_lines ORDER BY order_id, position`)
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, []any{&order, &l.product, &l.quantity, &l.price}, func() error {
			r := w.reservations[order]
			r.lines = append(r.lines, l)
			w.reservations[order] = r
			return nil
		})
		return err
	})
}

func readPayments(ctx context.Context, url string, w *world) error {
	return readOnly(ctx, url, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT order_id::text, status, amount_cents, currency FROM payments ORDER BY created_at`)
		if err != nil {
			return err
		}
		var order string
		var p paymentRow
		_, err = pgx.ForEachRow(rows, []any{&order, &p.status, &p.amount, &p.currency}, func() error {
			w.payments[order] = append(w.payments[order], p)
			return nil
		})
		return err
	})
}

func readOrders(ctx context.Context, url string, sc scope, w *world) error {
	return readOnly(ctx, url, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text FROM orders`)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		w.allOrders = map[string]bool{}
		for _, id := range ids {
			w.allOrders[id] = true
		}

		rows, err = tx.Query(ctx, `
			SELECT o.id::text, o.status, COALESCE(o.cancel_reason, ''), COALESCE(s.state, ''), o.total_cents, o.currency
			FROM orders o LEFT JOIN sagas s ON s.order_id = o.id
			WHERE `+inScope("o.id")+` ORDER BY o.created_at, o.id`, sc.products)
		if err != nil {
			return err
		}
		w.orders, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderRow, error) {
			var o orderRow
			err := r.Scan(&o.id, &o.status, &o.reason, &o.sagaState, &o.total, &o.currency)
			return o, err
		})
		if err != nil {
			return err
		}
		index := map[string]int{}
		for i, o := range w.orders {
			index[o.id] = i
		}
		var order string
		var l line
		rows, err = tx.Query(ctx, `SELECT order_id::text, product_id::text, quantity, unit_price_cents FROM order_lines ORDER BY order_id, line`)
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, []any{&order, &l.product, &l.quantity, &l.price}, func() error {
			if i, ok := index[order]; ok {
				w.orders[i].lines = append(w.orders[i].lines, l)
			}
			return nil
		})
		return err
	})
}

// judge applies the rules to what was read.
func judge(w world, sc scope) ([]Violation, Report) {
	var vs []Violation
	add := func(rule, order, product, format string, args ...any) {
		vs = append(vs, Violation{Rule: rule, OrderID: order, Product: product, Detail: fmt.Sprintf(format, args...)})
	}
	rep := Report{Orders: len(w.orders), Products: len(w.stock)}

	for _, o := range w.orders {
		var sum int64
		for _, l := range o.lines {
			sum += int64(l.quantity) * l.price
		}
		if sum != o.total {
			add(RuleOrderTotal, o.id, "", "total %d %s, lines sum to %d", o.total, o.currency, sum)
		}
		if o.sagaState == "" {
			add(RuleMissingSaga, o.id, "", "%s order has no saga", o.status)
		}
		if (o.status != "confirmed" && o.status != "cancelled") || (o.sagaState != "done" && o.sagaState != "") {
			add(RuleUnsettled, o.id, "", "status %s, saga %s: not settled (WaitSettled first)", o.status, o.sagaState)
			continue
		}
		pays, res := w.payments[o.id], w.reservations[o.id]
		switch o.status {
		case "confirmed":
			rep.Confirmed++
			switch {
			case len(pays) != 1:
				add(RuleConfirmedMoney, o.id, "", "%d payments (%s), want exactly one captured", len(pays), describe(pays))
			case pays[0].status != "captured" || pays[0].amount != o.total || pays[0].currency != o.currency:
				add(RuleConfirmedMoney, o.id, "", "payment %s, want captured %d %s", describe(pays), o.total, o.currency)
			}
			if res.status != "committed" {
				add(RuleConfirmedStock, o.id, "", "reservation %s, want committed", or(res.status, "missing"))
			} else if !sameLines(res.lines, o.lines) {
				add(RuleConfirmedStock, o.id, "", "reservation holds %v, the order has %v", quantities(res.lines), quantities(o.lines))
			} else if rp, op := prices(res.lines), prices(o.lines); !maps.Equal(rp, op) {
				add(RuleConfirmedPrice, o.id, "", "reserved at %v, quoted and charged at %v", rp, op)
			}
		case "cancelled":
			rep.Cancelled++
			for _, p := range pays {
				if p.status != "declined" && p.status != "refunded" {
					add(RuleCancelledMoney, o.id, "", "cancelled (%s) with a %s payment of %d %s", o.reason, p.status, p.amount, p.currency)
				}
			}
			if res.status == "reserved" || res.status == "committed" {
				add(RuleCancelledStock, o.id, "", "cancelled (%s) with its reservation still %s: %v", o.reason, res.status, quantities(res.lines))
			}
		}
	}

	for _, order := range sortedKeys(w.payments) {
		if w.allOrders[order] {
			continue
		}
		for _, p := range w.payments[order] {
			if p.status == "captured" || p.status == "pending" {
				add(RuleOrphanMoney, order, "", "a %s payment of %d %s for an order the orders service does not have", p.status, p.amount, p.currency)
			}
		}
	}
	held := map[string]int{}
	for _, order := range sortedKeys(w.reservations) {
		r := w.reservations[order]
		if r.status != "reserved" && r.status != "committed" {
			continue
		}
		for _, l := range r.lines {
			held[l.product] += l.quantity
		}
		if !w.allOrders[order] {
			add(RuleOrphanStock, order, "", "a %s reservation of %v for an order the orders service does not have", r.status, quantities(r.lines))
		}
	}

	for _, p := range sortedKeys(w.stock) {
		stock := w.stock[p]
		if stock < 0 {
			add(RuleNegativeStock, "", p, "stock %d", stock)
		}
		initial, ok := w.initial[p]
		if l := w.ledger[p]; sc.ledger && ok && l != nil {
			rep.AdminChanges += l.changes
			if l.stock != stock {
				add(RuleStockLedger, "", p, "its events in inventory's outbox add up to %d in stock, the product has %d", l.stock, stock)
			}
			if l.baseline != stock+held[p] {
				add(RuleConservation, "", p, "created with %d, changed by admins by %+d (%d updates), now %d in stock + %d held by reservations = %d",
					initial, l.baseline-initial, l.changes, stock, held[p], stock+held[p])
			}
			continue
		}
		switch {
		case !ok:
			rep.Skipped = append(rep.Skipped, p+": no product.created event in the outbox")
		case w.patched[p]:
			rep.Skipped = append(rep.Skipped, p+": updated by an admin since it was created")
		case initial != stock+held[p]:
			add(RuleConservation, "", p, "created with %d, now %d in stock + %d held by reservations = %d",
				initial, stock, held[p], stock+held[p])
		}
	}
	return vs, rep
}

func describe(ps []paymentRow) string {
	if len(ps) == 0 {
		return "none"
	}
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprintf("%s %d %s", p.status, p.amount, p.currency))
	}
	return strings.Join(s, ", ")
}

func quantities(ls []line) map[string]int {
	m := map[string]int{}
	for _, l := range ls {
		m[l.product] += l.quantity
	}
	return m
}

// prices is each line's unit price by product.
func prices(ls []line) map[string]int64 {
	m := make(map[string]int64, len(ls))
	for _, l := range ls {
		m[l.product] = l.price
	}
	return m
}

func sameLines(a, b []line) bool {
	qa, qb := quantities(a), quantities(b)
	if len(qa) != len(qb) {
		return false
	}
	for p, n := range qa {
		if qb[p] != n {
			return false
		}
	}
	return true
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// ErrMissingDatabase is returned for Databases with a URL missing.
var ErrMissingDatabase = errors.New("invariants: the inventory, payments and orders database URLs are all needed")

func (d Databases) check() error {
	if d.Inventory == "" || d.Payments == "" || d.Orders == "" {
		return ErrMissingDatabase
	}
	return nil
}
