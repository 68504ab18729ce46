package order_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/services/orders/internal/downstream"
	"github.com/bazaar-shop/bazaar/services/orders/internal/fakes"
	"github.com/bazaar-shop/bazaar/services/orders/internal/inventory"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/payments"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres/migrations"
)

// These tests run the saga against fake inventory and payments services (HTTP, per
// docs/internal-api.md) through the real clients, with a real database.

// clock is the real time plus an offset tests can move forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.offset) }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// notes records the status changes the saga publishes.
type notes struct {
	mu      sync.Mutex
	changes map[uuid.UUID][]order.Status
}

func (n *notes) Notify(_ context.Context, c order.StatusChange) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.changes[c.OrderID] = append(n.changes[c.OrderID], c.Status)
}

func (n *notes) of(id uuid.UUID) []order.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.changes[id])
}

// rig is a saga with its fakes and database.
type rig struct {
	pool  *pgxpool.Pool
	store *postgres.Store
	inv   *fakes.Inventory
	pay   *fakes.Payments
	clock *clock
	notes *notes
	saga  *order.Orchestrator
	svc   *order.Service
	// invClient and payClient call the fakes directly, as a crashed process would
	// have before it could record the answer.
	invClient *inventory.Client
	payClient *payments.Client
	user      uuid.UUID
	// product is in stock (100 units at 250 cents).
	product uuid.UUID
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{
		pool: pgtest.New(t, migrations.FS), inv: fakes.NewInventory(t), pay: fakes.NewPayments(t),
		clock: &clock{}, notes: &notes{changes: map[uuid.UUID][]order.Status{}}, user: uuid.New(),
	}
	r.store = postgres.NewStore(r.pool)
	r.product = r.inv.AddProduct(250, 100)
	cfg := func(url string) downstream.Config {
		// The breakers and ejections are tested by package downstream; here they would
		// only make the call counts depend on timing.
		return downstream.Config{BaseURL: url, Timeout: 300 * time.Millisecond, BackoffInitial: time.Millisecond, Credentials: fakes.Credentials{},
			BackoffMax: 5 * time.Millisecond, Balancing: balancer.Settings{BreakerFailures: 1 << 20, EjectAfter: 1 << 20}}
	}
	inv, err := inventory.New(cfg(r.inv.URL))
	if err != nil {
		t.Fatal(err)
	}
	pay, err := payments.New(cfg(r.pay.URL))
	if err != nil {
		t.Fatal(err)
	}
	r.invClient, r.payClient = inv, pay
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := order.Deps{Store: r.store, Inventory: inv, Payments: pay, Notifier: r.notes, Now: r.clock.Now, Log: log}
	r.saga = order.NewOrchestrator(d, order.OrchestratorConfig{Policy: policy, LeaseTTL: 10 * time.Second})
	r.svc = order.NewService(d, r.saga, 5*time.Second)
	return r
}

// create places an order of quantity units of product with method, and returns it as
// the inline saga left it.
func (r *rig) create(t *testing.T, method order.PaymentMethod, product uuid.UUID, quantity int) order.Order {
	t.Helper()
	o, err := r.svc.Create(context.Background(), r.user, uuid.New(),
		order.NewOrder{Lines: []order.WantedLine{{ProductID: product, Quantity: order.Quantity(quantity)}}, PaymentMethod: method})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return o
}

func (r *rig) order(t *testing.T, id uuid.UUID) order.Order {
	t.Helper()
	o, err := r.store.Order(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// recover runs recovery passes until the order's saga is done, or fails the test.
func (r *rig) recoverUntilDone(t *testing.T, id uuid.UUID) order.Order {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err := r.saga.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		if o := r.order(t, id); o.Status.Terminal() && r.sagaState(t, id) == order.SagaDone {
			return o
		}
	}
	t.Fatalf("saga of %s never finished: %+v", id, r.steps(t, id))
	return order.Order{}
}

func (r *rig) sagaState(t *testing.T, id uuid.UUID) order.SagaState {
	t.Helper()
	var s string
	if err := r.pool.QueryRow(context.Background(), `SELECT state FROM sagas WHERE order_id = $1`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return order.SagaState(s)
}

// steps is the order's step log as "step:outcome" strings.
func (r *rig) steps(t *testing.T, id uuid.UUID) []string {
	t.Helper()
	rows, err := r.pool.Query(context.Background(), `SELECT step || ':' || outcome FROM saga_steps WHERE order_id = $1 ORDER BY id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

type event struct {
	Type string
	Data map[string]any
}

// events are the outbox events about the order, in order.
func (r *rig) events(t *testing.T, id uuid.UUID) []event {
	t.Helper()
	rows, err := r.pool.Query(context.Background(), `SELECT type, data FROM outbox WHERE subject = $1 ORDER BY seq`, id.String())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []event
	for rows.Next() {
		var e event
		var data []byte
		if err := rows.Scan(&e.Type, &data); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &e.Data); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func types(evs []event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func TestSagaConfirmsAnOrderWithItsEvents(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	o := r.create(t, order.PaymentVisa, r.product, 3)
	if o.Status != order.StatusConfirmed {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusConfirmed)
	}
	if o.TotalCents != 750 {
		t.Fatalf("order total %d cents, want 750", o.TotalCents)
	}
	if o.Currency != "USD" {
		t.Fatalf("order currency %q, want USD", o.Currency)
	}
	if o.Lines[0].UnitPriceCents != 250 {
		t.Fatalf("order line unit price %d cents, want 250", o.Lines[0].UnitPriceCents)
	}
	if n := r.inv.Stock(r.product); n != 97 {
		t.Errorf("stock %d, want 97", n)
	}
	if res := r.inv.Reservation(o.ID); res != "committed" {
		t.Errorf("reservation %q, want committed", res)
	}
	if n := r.pay.Captures(o.ID); n != 1 {
		t.Errorf("%d captures, want 1", n)
	}
	p, _ := r.pay.Payment(o.ID)
	if p.AmountCents != 750 {
		t.Errorf("payment of %d cents, want 750", p.AmountCents)
	}
	if p.UserID != r.user {
		t.Errorf("payment by user %s, want %s", p.UserID, r.user)
	}
	evs := r.events(t, o.ID)
	if got := types(evs); !slices.Equal(got, []string{"order.created", "order.confirmed"}) {
		t.Fatalf("events %v", got)
	}
	c := evs[1].Data
	items, _ := c["items"].([]any)
	for k, v := range map[string]any{"order_id": o.ID.String(), "user_id": r.user.String(), "total_cents": 750.0, "currency": "USD"} {
		if c[k] != v {
			t.Errorf("order.confirmed data %s = %v, want %v", k, c[k], v)
		}
	}
	if len(items) != 1 {
		t.Fatalf("order.confirmed items %v, want one", c["items"])
	}
	it, _ := items[0].(map[string]any)
	for k, v := range map[string]any{"product_id": r.product.String(), "quantity": 3.0, "unit_price_cents": 250.0} {
		if it[k] != v {
			t.Errorf("order.confirmed item %s = %v, want %v", k, it[k], v)
		}
	}
	if got := r.steps(t, o.ID); !slices.Equal(got, []string{"reserve:ok", "charge:ok", "commit:ok"}) {
		t.Errorf("step log %v", got)
	}
	want := []order.Status{order.StatusPending, order.StatusReserved, order.StatusPaid, order.StatusConfirmed}
	if got := r.notes.of(o.ID); !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	if r.sagaState(t, o.ID) != order.SagaDone {
		t.Error("saga not done")
	}
}

func TestSagaCancelsOutOfStockWithNothingToRelease(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	scarce := r.inv.AddProduct(100, 2)
	o := r.create(t, order.PaymentVisa, scarce, 3)
	if o.Status != order.StatusCancelled {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusCancelled)
	}
	if o.CancelReason != order.ReasonOutOfStock {
		t.Fatalf("order cancel reason %q, want %s", o.CancelReason, order.ReasonOutOfStock)
	}
	if n := r.inv.Stock(scarce); n != 2 {
		t.Errorf("stock %d, want 2", n)
	}
	if n := r.inv.Calls("release", o.ID); n != 0 {
		t.Errorf("%d release calls, want 0", n)
	}
	if n := r.pay.Calls("charge", o.ID); n != 0 {
		t.Errorf("%d charge calls, want 0", n)
	}
	if n := r.inv.Calls("reserve", o.ID); n != 1 {
		t.Errorf("%d reserve calls, want 1", n)
	}
	evs := r.events(t, o.ID)
	if got := types(evs); !slices.Equal(got, []string{"order.created", "order.cancelled"}) {
		t.Fatalf("events %v", got)
	}
	d := evs[1].Data
	for k, v := range map[string]any{"reason": "out_of_stock", "total_cents": 300.0, "user_id": r.user.String()} {
		if d[k] != v {
			t.Errorf("order.cancelled data %s = %v, want %v", k, d[k], v)
		}
	}
}

func TestSagaDeclinedCardReleasesStockAndCancelsWithTheReason(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for method, reason := range map[order.PaymentMethod]order.CancelReason{
		order.PaymentDeclined:          order.ReasonPaymentDeclined,
		order.PaymentInsufficientFunds: order.ReasonInsufficientFunds,
	} {
		o := r.create(t, method, r.product, 5)
		if o.Status != order.StatusCancelled {
			t.Errorf("%s: order status %s, want %s", method, o.Status, order.StatusCancelled)
		}
		if o.CancelReason != reason {
			t.Errorf("%s: order cancel reason %q, want %s", method, o.CancelReason, reason)
		}
		if res := r.inv.Reservation(o.ID); res != "released" {
			t.Errorf("%s: reservation %q, want released", method, res)
		}
		if n := r.pay.Captures(o.ID); n != 0 {
			t.Errorf("%s: %d captures, want 0", method, n)
		}
		if n := r.pay.Calls("refund", o.ID); n != 0 {
			t.Errorf("%s: %d refund calls, want 0", method, n)
		}
		if got := r.steps(t, o.ID); !slices.Equal(got, []string{"reserve:ok", "charge:refused", "release:ok"}) {
			t.Errorf("%s: step log %v", method, got)
		}
		if evs := r.events(t, o.ID); len(evs) != 2 {
			t.Errorf("%s: events %v, want 2", method, evs)
		} else if evs[1].Data["reason"] != string(reason) {
			t.Errorf("%s: cancellation event reason %v, want %s", method, evs[1].Data["reason"], reason)
		}
	}
	if r.inv.Stock(r.product) != 100 {
		t.Errorf("stock %d, want all 100 back", r.inv.Stock(r.product))
	}
}

func TestSagaWithPaymentsDownStaysInProgressThenRecoveryConfirms(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.pay.SetDown(true)
	o := r.create(t, order.PaymentVisa, r.product, 1)
	if o.Status != order.StatusReserved {
		t.Fatalf("with payments down: %s, want reserved (in progress)", o.Status)
	}
	if st := r.sagaState(t, o.ID); st != order.SagaRunning {
		t.Errorf("saga %s", st)
	}
	// A recovery pass while payments is still down changes nothing.
	if _, err := r.saga.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.order(t, o.ID).Status; got != order.StatusReserved {
		t.Errorf("after a pass with payments down: %s", got)
	}
	r.pay.SetDown(false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusConfirmed {
		t.Errorf("after recovery: order status %s, want %s", o.Status, order.StatusConfirmed)
	}
	if n := r.pay.Captures(o.ID); n != 1 {
		t.Errorf("after recovery: %d captures, want 1", n)
	}
	if res := r.inv.Reservation(o.ID); res != "committed" {
		t.Errorf("after recovery: reservation %q, want committed", res)
	}
	if got := types(r.events(t, o.ID)); !slices.Equal(got, []string{"order.created", "order.confirmed"}) {
		t.Errorf("events %v", got)
	}
}

func TestSagaLearnsALostChargeAnswerFromPaymentsWithoutChargingTwice(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.pay.SetDropping(true) // the charge happens; its answer never arrives
	o := r.create(t, order.PaymentVisa, r.product, 2)
	if o.Status != order.StatusConfirmed {
		t.Fatalf("order %s; step log %v", o.Status, r.steps(t, o.ID))
	}
	if r.pay.Captures(o.ID) != 1 || r.pay.Calls("lookup", o.ID) < 1 {
		t.Errorf("captures %d, look-ups %d; want 1 capture, learnt by a look-up", r.pay.Captures(o.ID), r.pay.Calls("lookup", o.ID))
	}
}

func TestSagaOverItsChargeBudgetCompensatesAsTimeout(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.pay.SetDown(true)
	o := r.create(t, order.PaymentVisa, r.product, 4)
	if o.Status != order.StatusReserved {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusReserved)
	}
	if n := r.inv.Stock(r.product); n != 96 {
		t.Fatalf("stock %d, want 96", n)
	}
	r.clock.advance(policy.ChargeBudget + time.Second)
	r.pay.SetDown(false) // too late: the order is not charged any more
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusCancelled)
	}
	if o.CancelReason != order.ReasonTimeout {
		t.Fatalf("order cancel reason %q, want %s", o.CancelReason, order.ReasonTimeout)
	}
	if n := r.inv.Stock(r.product); n != 100 {
		t.Errorf("stock %d, want 100", n)
	}
	if n := r.pay.Captures(o.ID); n != 0 {
		t.Errorf("%d captures, want 0", n)
	}
	// The failed charges may have taken money: the refund settles that (payments
	// had none, so it voids the order).
	steps := r.steps(t, o.ID)
	if len(steps) < 4 {
		t.Errorf("step log %v, want at least 4 steps", steps)
	} else if tail := steps[len(steps)-3:]; !slices.Equal(tail, []string{"expire:ok", "release:ok", "refund:ok"}) {
		t.Errorf("step log ends %v, want [expire:ok release:ok refund:ok]; whole log %v", tail, steps)
	}
}

func TestSagaSettlesAnUnknownChargeByAskingBeforeItCancels(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.pay.SetSlow(time.Second) // every call times out: the charge's outcome is unknown
	o := r.create(t, order.PaymentVisa, r.product, 1)
	if o.Status != order.StatusReserved {
		t.Fatalf("order %s", o.Status)
	}
	var charge string
	if err := r.pool.QueryRow(context.Background(), `SELECT charge FROM sagas WHERE order_id = $1`, o.ID).Scan(&charge); err != nil {
		t.Fatalf("the saga's charge: %v", err)
	}
	if charge != "unknown" {
		t.Fatalf("charge %q, want unknown", charge)
	}
	r.pay.SetSlow(0)
	r.clock.advance(policy.ChargeBudget + time.Second)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusCancelled)
	}
	if o.CancelReason != order.ReasonTimeout {
		t.Fatalf("order cancel reason %q, want %s", o.CancelReason, order.ReasonTimeout)
	}
	// Payments had no charge, and was told to settle the order anyway (a refund voids
	// it, so a charge still on its way takes nothing).
	if n := r.pay.Calls("refund", o.ID); n != 1 {
		t.Errorf("%d refund calls, want 1 (after %d look-ups)", n, r.pay.Calls("lookup", o.ID))
	}
	if n := r.pay.Captures(o.ID); n != 0 {
		t.Errorf("%d captures, want 0", n)
	}
	if r.inv.Stock(r.product) != 100 {
		t.Errorf("stock %d", r.inv.Stock(r.product))
	}
}

func TestSagaWhoseReservationExpiredBeforeCommitRefunds(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.inv.SetFailing("commit", true)
	o := r.create(t, order.PaymentVisa, r.product, 2)
	if o.Status != order.StatusPaid {
		t.Fatalf("order %s", o.Status)
	}
	r.inv.Expire(o.ID)
	r.inv.SetFailing("commit", false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusCancelled)
	}
	if o.CancelReason != order.ReasonTimeout {
		t.Fatalf("order cancel reason %q, want %s", o.CancelReason, order.ReasonTimeout)
	}
	if p, _ := r.pay.Payment(o.ID); p.Status != "refunded" {
		t.Errorf("payment %+v, want refunded", p)
	}
	if n := r.pay.Captures(o.ID); n != 1 {
		t.Errorf("%d captures, want 1", n)
	}
	if n := r.inv.Stock(r.product); n != 100 {
		t.Errorf("stock %d, want 100", n)
	}
}

func TestCompensationThatKeepsFailingIsVisibleAndFinishesWhenItCan(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.inv.SetFailing("release", true)
	o := r.create(t, order.PaymentDeclined, r.product, 1)
	if o.Status != order.StatusCancelling {
		t.Fatalf("order %s", o.Status)
	}
	// Inventory stays down for longer than AlarmAfter.
	r.clock.advance(policy.AlarmAfter)
	if _, err := r.saga.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := r.sagaState(t, o.ID); st != order.SagaCompensationFailed {
		t.Fatalf("saga %s, step log %v", st, r.steps(t, o.ID))
	}
	views, err := r.svc.Sagas(context.Background(), order.SagaCompensationFailed, page.Request{Limit: 10})
	if err != nil {
		t.Fatalf("sagas: %v", err)
	}
	if len(views) != 1 {
		t.Fatalf("%d compensation_failed sagas, want 1: %+v", len(views), views)
	}
	v := views[0]
	if v.Saga.OrderID != o.ID {
		t.Errorf("saga of order %s, want %s", v.Saga.OrderID, o.ID)
	}
	if v.Next != order.StepRelease {
		t.Errorf("next step %q, want %q", v.Next, order.StepRelease)
	}
	if v.Order.Status != order.StatusCancelling {
		t.Errorf("order status %s, want %s", v.Order.Status, order.StatusCancelling)
	}
	if v.Saga.Reason != order.ReasonPaymentDeclined {
		t.Errorf("saga reason %q, want %q", v.Saga.Reason, order.ReasonPaymentDeclined)
	}
	if v.Saga.FailingSince.IsZero() {
		t.Error("saga has no failing_since")
	}
	if len(v.Steps) != 4 {
		t.Fatalf("%d steps, want 4: %+v", len(v.Steps), v.Steps)
	}
	last := v.Steps[len(v.Steps)-1]
	if last.Error == "" {
		t.Errorf("last step %+v has no error", last)
	}
	if last.Attempt != 2 {
		t.Errorf("last step's attempt %d, want 2", last.Attempt)
	}
	if all, _ := r.svc.Sagas(context.Background(), "", page.Request{Limit: 10}); len(all) != 1 {
		t.Errorf("unfinished sagas %d, want 1", len(all))
	}
	if done, _ := r.svc.Sagas(context.Background(), order.SagaRunning, page.Request{Limit: 10}); len(done) != 0 {
		t.Errorf("running sagas %d, want 0", len(done))
	}
	r.inv.SetFailing("release", false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled {
		t.Errorf("order %s, want %s", o.Status, order.StatusCancelled)
	}
	if o.CancelReason != order.ReasonPaymentDeclined {
		t.Errorf("cancel reason %q, want %q", o.CancelReason, order.ReasonPaymentDeclined)
	}
	if stock := r.inv.Stock(r.product); stock != 100 {
		t.Errorf("stock %d, want 100", stock)
	}
	if left, _ := r.svc.Sagas(context.Background(), "", page.Request{Limit: 10}); len(left) != 0 {
		t.Errorf("%d unfinished sagas left", len(left))
	}
}

func TestRacingRecoveryPassesNeverDriveASagaTwice(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.inv.SetFailing("reserve", true)
	var ids []uuid.UUID
	for range 12 {
		o := r.create(t, order.PaymentVisa, r.product, 1)
		if o.Status != order.StatusPending {
			t.Fatalf("order %s with inventory down", o.Status)
		}
		ids = append(ids, o.ID)
	}
	before := map[uuid.UUID]int{}
	for _, id := range ids {
		before[id] = r.inv.Calls("reserve", id)
	}
	r.inv.SetFailing("reserve", false)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := r.saga.Recover(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		o := r.recoverUntilDone(t, id)
		if o.Status != order.StatusConfirmed {
			t.Errorf("%s: %s", id, o.Status)
		}
		reserves, charges, commits := r.inv.Calls("reserve", id)-before[id], r.pay.Calls("charge", id), r.inv.Calls("commit", id)
		if reserves != 1 || charges != 1 || commits != 1 || r.pay.Captures(id) != 1 {
			t.Errorf("%s: %d reserves, %d charges, %d commits, %d captures; want one of each", id, reserves, charges, commits, r.pay.Captures(id))
		}
		got := r.steps(t, id)
		if slices.Index(got, "reserve:ok") < 0 {
			t.Errorf("%s: step log %v, want a reserve:ok", id, got)
		}
		if len(got) != countFailed(got)+3 {
			t.Errorf("%s: step log %v of %d steps, want %d: the failed reserves and three more", id, got, len(got), countFailed(got)+3)
		}
	}
}

func countFailed(steps []string) int {
	n := 0
	for _, s := range steps {
		if s == "reserve:failed" {
			n++
		}
	}
	return n
}

func TestALeaseKeepsOtherWorkersOut(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.inv.SetFailing("reserve", true)
	o := r.create(t, order.PaymentVisa, r.product, 1)
	ctx := context.Background()
	l1, _, _, err := r.store.ClaimSaga(ctx, o.ID, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r.store.ClaimSaga(ctx, o.ID, "b", time.Minute); !errors.Is(err, order.ErrSagaBusy) {
		t.Errorf("second claim: %v, want busy", err)
	}
	// Drive leaves a held saga alone.
	if got, err := r.saga.Drive(ctx, o.ID); err != nil {
		t.Errorf("Drive of a held saga: %v, want no error", err)
	} else if got.Status != order.StatusPending {
		t.Errorf("Drive of a held saga = %s, want %s", got.Status, order.StatusPending)
	}
	// A lease that ran out is taken over, and the old holder can no longer write.
	if _, err := r.pool.Exec(ctx, `UPDATE sagas SET locked_until = now() - interval '1 second' WHERE order_id = $1`, o.ID); err != nil {
		t.Fatal(err)
	}
	l2, ord, sg, err := r.store.ClaimSaga(ctx, o.ID, "b", time.Minute)
	if err != nil {
		t.Fatalf("take-over: %v, want no error", err)
	}
	if l2.Token == l1.Token {
		t.Fatalf("take-over: token %v, want a new one", l2.Token)
	}
	c := order.Advance(ord, sg, order.StepReserve, order.Outcome{Kind: order.OutcomeOK}, time.Now(), policy)
	if err := r.store.Apply(ctx, l1, c); !errors.Is(err, order.ErrLeaseLost) {
		t.Errorf("stale lease wrote: %v", err)
	}
	if err := r.store.Apply(ctx, l2, c); err != nil {
		t.Errorf("current lease: %v", err)
	}
	if _, _, _, err := r.store.ClaimSaga(ctx, uuid.New(), "a", time.Minute); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("claim of an unknown saga: %v", err)
	}
}

func TestCustomerCancelRefundsAndRestocks(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pending := func() order.Order {
		r.inv.SetFailing("reserve", true)
		defer r.inv.SetFailing("reserve", false)
		return r.create(t, order.PaymentVisa, r.product, 1)
	}()
	if _, err := r.svc.Cancel(context.Background(), r.user, pending.ID); !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("cancel of a pending order: %v", err)
	}
	o := r.create(t, order.PaymentVisa, r.product, 10)
	if _, err := r.svc.Cancel(context.Background(), uuid.New(), o.ID); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("cancel of someone else's order: %v", err)
	}
	c, err := r.svc.Cancel(context.Background(), r.user, o.ID)
	if err != nil {
		t.Fatalf("cancel: %v, want no error", err)
	}
	if c.Status != order.StatusCancelled {
		t.Fatalf("cancel: order status %s, want %s", c.Status, order.StatusCancelled)
	}
	if c.CancelReason != order.ReasonCustomerRequest {
		t.Fatalf("cancel: cancel reason %q, want %s", c.CancelReason, order.ReasonCustomerRequest)
	}
	if p, _ := r.pay.Payment(o.ID); p.Status != "refunded" {
		t.Errorf("payment %q, want refunded", p.Status)
	}
	if res := r.inv.Reservation(o.ID); res != "released" {
		t.Errorf("reservation %q, want released", res)
	}
	if n := r.inv.Stock(r.product); n != 100 {
		t.Errorf("stock %d, want 100", n)
	}
	if got := types(r.events(t, o.ID)); !slices.Equal(got, []string{"order.created", "order.confirmed", "order.cancelled"}) {
		t.Errorf("events %v", got)
	}
	if _, err := r.svc.Cancel(context.Background(), r.user, o.ID); !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("second cancel: %v, want ErrNotCancellable", err)
	}
	if n := r.pay.Calls("refund", o.ID); n != 1 {
		t.Errorf("after a second cancel: %d refund calls, want 1", n)
	}
}
