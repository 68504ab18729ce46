package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres/migrations"
	"github.com/bazaar-shop/bazaar/services/orders/internal/report"
)

func newStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.New(t, migrations.FS)
	return postgres.NewStore(pool), pool
}

// placed stores an order created at with lines, driven to status.
func placed(t *testing.T, s *postgres.Store, at time.Time, status order.Status, lines ...order.Line) order.Order {
	t.Helper()
	o := order.Order{ID: uuid.New(), UserID: uuid.New(), Status: order.StatusPending, Lines: lines, Currency: "USD",
		PaymentMethod: order.PaymentVisa, CreatedAt: at, UpdatedAt: at}
	for _, l := range lines {
		o.TotalCents += l.Amount()
	}
	ctx := context.Background()
	o, _, created, err := s.CreateOrder(ctx, o, order.NewSaga(o), order.Lease{})
	if err != nil {
		t.Fatalf("create: %v, want no error", err)
	}
	if !created {
		t.Fatal("create: not created, want a new order")
	}
	if status == order.StatusPending {
		return o
	}
	l, ord, sg, err := s.ClaimSaga(ctx, o.ID, "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := order.Change{Order: ord, Saga: sg, StatusChanged: true, Log: order.StepLog{Step: order.StepCommit, Attempt: 1, Outcome: order.OutcomeOK, At: at}}
	c.Order.Status, c.Saga.State = status, order.SagaDone
	if status == order.StatusCancelled {
		c.Order.CancelReason = order.ReasonPaymentDeclined
	}
	if err := s.Apply(ctx, l, c); err != nil {
		t.Fatal(err)
	}
	return c.Order
}

func TestCreateOrderIsOnceAndReadBackWhole(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	at := time.Now().UTC().Truncate(time.Microsecond)
	o := placed(t, s, at, order.StatusPending, order.Line{ProductID: uuid.New(), Quantity: 2, UnitPriceCents: 150},
		order.Line{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 99})
	got, err := s.Order(context.Background(), o.ID)
	if err != nil {
		t.Fatalf("read back: %v, want no error", err)
	}
	if got.TotalCents != 399 {
		t.Fatalf("read back total %d cents, want 399", got.TotalCents)
	}
	if len(got.Lines) != 2 {
		t.Fatalf("read back lines %+v, want 2", got.Lines)
	}
	if got.Lines[0] != o.Lines[0] {
		t.Fatalf("read back line 0 %+v, want %+v", got.Lines[0], o.Lines[0])
	}
	if got.Lines[1] != o.Lines[1] {
		t.Fatalf("read back line 1 %+v, want %+v", got.Lines[1], o.Lines[1])
	}
	if !got.CreatedAt.Equal(at) {
		t.Fatalf("read back created at %v, want %v", got.CreatedAt, at)
	}
	if got.Status != order.StatusPending {
		t.Fatalf("read back status %s, want %s", got.Status, order.StatusPending)
	}
	if got.PaymentMethod != order.PaymentVisa {
		t.Fatalf("read back payment method %q, want %q", got.PaymentMethod, order.PaymentVisa)
	}
	// The same id again (an Idempotency-Key repeated) finds the first, stores nothing.
	again := o
	again.TotalCents = 1
	back, _, created, err := s.CreateOrder(context.Background(), again, order.NewSaga(again), order.Lease{})
	if err != nil {
		t.Fatalf("second create: %v, want no error", err)
	}
	if created {
		t.Error("second create created an order, want the first found")
	}
	if back.TotalCents != 399 {
		t.Errorf("second create: total %d cents, want the first's 399", back.TotalCents)
	}
	var events int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE type = 'order.created'`).Scan(&events); err != nil {
		t.Errorf("order.created events: %v", err)
	} else if events != 1 {
		t.Errorf("%d order.created events, want 1", events)
	}
	if _, err := s.Order(context.Background(), uuid.New()); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("unknown order: %v", err)
	}
}

func TestOrdersByUserPagesNewestFirst(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	user := uuid.New()
	base := time.Now().UTC().Truncate(time.Microsecond)
	var ids []uuid.UUID
	for i := range 5 {
		o := order.Order{ID: uuid.New(), UserID: user, Status: order.StatusPending, Currency: "USD", PaymentMethod: order.PaymentVisa,
			CreatedAt: base.Add(time.Duration(i) * time.Second), UpdatedAt: base,
			Lines: []order.Line{{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 1}}, TotalCents: 1}
		if _, _, _, err := s.CreateOrder(context.Background(), o, order.NewSaga(o), order.Lease{}); err != nil {
			t.Fatal(err)
		}
		ids = append([]uuid.UUID{o.ID}, ids...)
	}
	placed(t, s, base, order.StatusPending, order.Line{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 1}) // someone else's
	var got []uuid.UUID
	p := page.Request{Limit: 2}
	for range 4 {
		items, err := s.OrdersByUser(context.Background(), user, p)
		if err != nil {
			t.Fatal(err)
		}
		kept, next := page.Next(items, p.Limit, func(o order.Order) page.Cursor { return page.Cursor{Time: o.CreatedAt, ID: o.ID} })
		for _, o := range kept {
			got = append(got, o.ID)
			if len(o.Lines) != 1 {
				t.Errorf("order %s has %d lines", o.ID, len(o.Lines))
			}
		}
		if next == nil {
			break
		}
		c, _ := page.Decode(*next)
		p.After = &c
	}
	if len(got) != 5 {
		t.Fatalf("got %v", got)
	}
	for i := range got {
		if got[i] != ids[i] {
			t.Errorf("page order %v, want %v", got, ids)
			break
		}
	}
}

func TestIdempotencyKeyClaims(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	user := uuid.New()

	// Of racing first requests exactly one gets the key.
	var wg sync.WaitGroup
	var mu sync.Mutex
	states := map[order.KeyClaimState]int{}
	for range 8 {
		wg.Go(func() {
			c, err := s.ClaimKey(ctx, user, "k", "fp", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			states[c.State]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if n := states[order.KeyClaimNew]; n != 1 {
		t.Fatalf("%d new claims, want 1 (claims %v)", n, states)
	}
	if n := states[order.KeyClaimBusy]; n != 7 {
		t.Fatalf("%d busy claims, want 7 (claims %v)", n, states)
	}
	if c, _ := s.ClaimKey(ctx, user, "k", "other", time.Minute); c.State != order.KeyClaimMismatch {
		t.Errorf("another request with the key: %v", c.State)
	}
	if err := s.CompleteKey(ctx, user, "k", 201, []byte(`{"id":"x"}`), "/api/v1/orders/x"); err != nil {
		t.Fatal(err)
	}
	c, err := s.ClaimKey(ctx, user, "k", "fp", time.Minute)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if c.State != order.KeyClaimReplay {
		t.Errorf("replay state %v, want %v", c.State, order.KeyClaimReplay)
	}
	if c.Status != 201 {
		t.Errorf("replay status %d, want 201", c.Status)
	}
	if string(c.Body) != `{"id":"x"}` {
		t.Errorf("replay body %s", c.Body)
	}
	if c.Location != "/api/v1/orders/x" {
		t.Errorf("replay location %q", c.Location)
	}

	// A claim whose request died is taken over once it runs out.
	if c, _ := s.ClaimKey(ctx, user, "dead", "fp", time.Minute); c.State != order.KeyClaimNew {
		t.Fatalf("claim %v", c.State)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET locked_until = now() - interval '1 second' WHERE key = 'dead'`); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.ClaimKey(ctx, user, "dead", "fp", time.Minute); c.State != order.KeyClaimNew {
		t.Errorf("take-over %v", c.State)
	}
	// An abandoned claim frees the key.
	if err := s.AbandonKey(ctx, user, "dead"); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.ClaimKey(ctx, user, "dead", "new", time.Minute); c.State != order.KeyClaimNew {
		t.Errorf("after abandon %v", c.State)
	}
}

func TestUpdateSagaLeavesAHeldSagaAlone(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	o := placed(t, s, time.Now().UTC(), order.StatusPending, order.Line{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 1})
	l, _, _, err := s.ClaimSaga(ctx, o.ID, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	called := false
	_, err = s.UpdateSaga(ctx, o.ID, func(order.Order, order.Saga) (order.Change, error) {
		called = true
		return order.Change{}, nil
	})
	if !errors.Is(err, order.ErrSagaBusy) {
		t.Errorf("update of a held saga: %v, want ErrSagaBusy", err)
	}
	if called {
		t.Error("update of a held saga called its function, want it not called")
	}
	if err := s.ReleaseSaga(ctx, l); err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateSaga(ctx, o.ID, func(o order.Order, sg order.Saga) (order.Change, error) {
		return order.StartCancel(o, sg, time.Now())
	})
	if !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("cancel of a pending order: %v", err)
	}
	if ids, err := s.SagasToRecover(ctx, 10); err != nil {
		t.Errorf("to recover: %v, want no error", err)
	} else if len(ids) != 1 {
		t.Errorf("to recover %v, want the one order %s", ids, o.ID)
	} else if ids[0] != o.ID {
		t.Errorf("to recover %s, want %s", ids[0], o.ID)
	}
}

func TestSalesReportAndTheDailyEvent(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tea, cake := uuid.New(), uuid.New()
	placed(t, s, day.Add(time.Hour), order.StatusConfirmed, order.Line{ProductID: tea, Quantity: 3, UnitPriceCents: 200})
	placed(t, s, day.Add(2*time.Hour), order.StatusConfirmed, order.Line{ProductID: tea, Quantity: 1, UnitPriceCents: 200},
		order.Line{ProductID: cake, Quantity: 2, UnitPriceCents: 500})
	placed(t, s, day.Add(3*time.Hour), order.StatusCancelled, order.Line{ProductID: cake, Quantity: 9, UnitPriceCents: 500})
	placed(t, s, day.Add(4*time.Hour), order.StatusPending, order.Line{ProductID: cake, Quantity: 1, UnitPriceCents: 500})
	placed(t, s, day.Add(25*time.Hour), order.StatusConfirmed, order.Line{ProductID: cake, Quantity: 50, UnitPriceCents: 500}) // the next day

	r := report.Day(day.Add(30 * time.Hour))
	sales, err := s.SalesReport(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if sales.Orders != 4 {
		t.Errorf("report of %d orders, want 4", sales.Orders)
	}
	if sales.Confirmed != 2 {
		t.Errorf("report of %d confirmed, want 2", sales.Confirmed)
	}
	if sales.Cancelled != 1 {
		t.Errorf("report of %d cancelled, want 1", sales.Cancelled)
	}
	if want := (report.Money{Currency: "USD", AmountCents: 1800}); len(sales.Revenue) != 1 {
		t.Errorf("report revenue %+v, want [%+v]", sales.Revenue, want)
	} else if sales.Revenue[0] != want {
		t.Errorf("report revenue %+v, want %+v", sales.Revenue[0], want)
	}
	if len(sales.TopProducts) != 2 {
		t.Errorf("top products %+v, want 2", sales.TopProducts)
	} else {
		if want := (report.ProductSales{ProductID: tea, Quantity: 4, RevenueCents: 800, Currency: "USD"}); sales.TopProducts[0] != want {
			t.Errorf("top product %+v, want %+v", sales.TopProducts[0], want)
		}
		if p := sales.TopProducts[1]; p.ProductID != cake {
			t.Errorf("second product %s, want the cake %s", p.ProductID, cake)
		}
		if p := sales.TopProducts[1]; p.Quantity != 2 {
			t.Errorf("second product quantity %d, want 2", p.Quantity)
		}
	}
	empty, err := s.SalesReport(context.Background(), report.Range{From: day.AddDate(-1, 0, 0), To: day.AddDate(-1, 0, 1)})
	if err != nil {
		t.Fatalf("empty report: %v, want no error", err)
	}
	if empty.Orders != 0 {
		t.Errorf("empty report of %d orders, want 0", empty.Orders)
	}
	if empty.Revenue == nil {
		t.Error("empty report revenue nil, want an empty list")
	}
	if empty.TopProducts == nil {
		t.Error("empty report top products nil, want an empty list")
	}

	for range 2 { // a task run twice writes one event
		if err := s.WriteDailySales(context.Background(), sales); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	var subject string
	var data []byte
	if err := pool.QueryRow(context.Background(),
		`SELECT count(*) OVER (), subject, data FROM outbox WHERE type = 'report.daily_sales'`).Scan(&n, &subject, &data); err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	_ = json.Unmarshal(data, &ev)
	if n != 1 {
		t.Errorf("%d report.daily_sales events, want 1", n)
	}
	if subject != "2025-03-01" {
		t.Errorf("report.daily_sales subject %q, want 2025-03-01", subject)
	}
	for k, v := range map[string]any{"day": "2025-03-01", "orders": 4.0, "from": "2025-03-01T00:00:00Z"} {
		if ev[k] != v {
			t.Errorf("report.daily_sales data %s = %v, want %v; data %s", k, ev[k], v, data)
		}
	}
}

func TestANewSagaIsHeldByItsCreator(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	at := time.Now().UTC()
	o := order.Order{ID: uuid.New(), UserID: uuid.New(), Status: order.StatusPending, Currency: "USD", PaymentMethod: order.PaymentVisa,
		CreatedAt: at, UpdatedAt: at, Lines: []order.Line{{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 5}}, TotalCents: 5}
	sg := order.NewSaga(o)
	_, lease, created, err := s.CreateOrder(ctx, o, sg, order.Lease{Owner: "creator", TTL: time.Minute})
	if err != nil {
		t.Fatalf("create: %v, want no error", err)
	}
	if !created {
		t.Fatal("create: not created, want a new order")
	}
	if lease.Token == 0 {
		t.Fatalf("create: lease %+v without a token, want one", lease)
	}
	if lease.OrderID != o.ID {
		t.Fatalf("create: lease of order %s, want %s", lease.OrderID, o.ID)
	}
	// Recovery neither lists nor takes it while its creator holds it.
	if ids, err := s.SagasToRecover(ctx, 10); err != nil {
		t.Errorf("to recover: %v, want no error", err)
	} else if len(ids) != 0 {
		t.Errorf("to recover: %v, want none", ids)
	}
	if _, _, _, err := s.ClaimSaga(ctx, o.ID, "recovery", time.Minute); !errors.Is(err, order.ErrSagaBusy) {
		t.Errorf("claim by another worker: %v", err)
	}
	c := order.Advance(o, sg, order.StepReserve, order.Outcome{Kind: order.OutcomeOK}, at, order.DefaultPolicy)
	if err := s.Apply(ctx, lease, c); err != nil {
		t.Errorf("the creator's change: %v", err)
	}
	if err := s.ReleaseSaga(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.SagasToRecover(ctx, 10); len(ids) != 1 {
		t.Errorf("released saga not recoverable: %v", ids)
	}
}

// The change that finishes a saga gives its lease back in the same commit: the
// customer can cancel the confirmed order at once, with no ReleaseSaga; a change that
// does not finish it keeps the lease.
func TestTheChangeThatFinishesASagaGivesItsLeaseBack(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	line := order.Line{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 5}
	o := placed(t, s, time.Now().UTC(), order.StatusPending, line)
	l, ord, sg, err := s.ClaimSaga(ctx, o.ID, "worker", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	held := func() (owner *string, until *time.Time) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT locked_by, locked_until FROM sagas WHERE order_id = $1`, o.ID).Scan(&owner, &until); err != nil {
			t.Fatal(err)
		}
		return owner, until
	}
	c := order.Change{Order: ord, Saga: sg, Log: order.StepLog{Step: order.StepReserve, Attempt: 1, Outcome: order.OutcomeOK, At: time.Now().UTC()}}
	if err := s.Apply(ctx, l, c); err != nil {
		t.Fatal(err)
	}
	owner, until := held()
	if owner == nil {
		t.Fatal("a step that does not finish the saga gave the lease back: locked_by NULL, want the worker")
	}
	if until == nil {
		t.Fatal("a step that does not finish the saga gave the lease back: locked_until NULL, want a time")
	}

	c.Order.Status, c.Saga.State, c.StatusChanged = order.StatusConfirmed, order.SagaDone, true
	c.Log.Step = order.StepCommit
	if err := s.Apply(ctx, l, c); err != nil {
		t.Fatal(err)
	}
	owner, until = held()
	if owner != nil {
		t.Errorf("the finished saga is still held by %q, want locked_by NULL", *owner)
	}
	if until != nil {
		t.Errorf("the finished saga is still held until %v, want locked_until NULL", *until)
	}
	if _, err := s.UpdateSaga(ctx, o.ID, func(o order.Order, sg order.Saga) (order.Change, error) {
		return order.StartCancel(o, sg, time.Now().UTC())
	}); err != nil {
		t.Errorf("cancel right after confirmation: %v, want it taken", err)
	}
}

// A status this code does not know (one a newer version wrote during a rolling
// deploy, say) is an error on every read of an order, the operators' list of sagas
// included, rather than a value nothing above the store expects.
func TestEveryReadOfAnOrderRefusesAStatusItDoesNotKnow(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	o := placed(t, s, time.Now().UTC(), order.StatusPending, order.Line{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 5})
	if _, err := pool.Exec(ctx, `ALTER TABLE orders DROP CONSTRAINT orders_status_check`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE orders SET status = 'on_hold' WHERE id = $1`, o.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Order(ctx, o.ID); err == nil {
		t.Errorf("Order read status %q", got.Status)
	}
	if got, err := s.Saga(ctx, o.ID); err == nil {
		t.Errorf("Saga read status %q", got.Order.Status)
	}
	if got, err := s.Sagas(ctx, nil, page.Request{Limit: 10}); err == nil {
		t.Errorf("Sagas read %d sagas", len(got))
	}
}
