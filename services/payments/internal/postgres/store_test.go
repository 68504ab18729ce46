package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
	"github.com/bazaar-shop/bazaar/services/payments/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/payments/internal/postgres/migrations"
)

// countingProcessor is StripeTest that counts its calls and remembers the key of
// each. With a gate, every call waits for the gate to open (or its context to end)
// before it answers; with fail set, calls fail.
type countingProcessor struct {
	charges, refunds atomic.Int32
	gate             chan struct{}
	fail             atomic.Bool
	mu               sync.Mutex
	keys             map[string]int // calls per idempotency key
}

// saw counts a call with key.
func (p *countingProcessor) saw(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys == nil {
		p.keys = map[string]int{}
	}
	p.keys[key]++
}

// keysSeen is how many calls the processor got per key.
func (p *countingProcessor) keysSeen() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.keys)
}

var _ payment.Processor = (*countingProcessor)(nil)

func (p *countingProcessor) wait(ctx context.Context) error {
	if p.fail.Load() {
		return errors.New("processor: connection refused")
	}
	if p.gate == nil {
		return nil
	}
	select {
	case <-p.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *countingProcessor) Charge(ctx context.Context, key string, c payment.ChargeRequest) (payment.Outcome, error) {
	p.charges.Add(1)
	p.saw(key)
	if err := p.wait(ctx); err != nil {
		return payment.Outcome{}, err
	}
	return payment.StripeTest{}.Charge(ctx, key, c)
}

func (p *countingProcessor) Refund(ctx context.Context, key string, pay payment.Payment) error {
	p.refunds.Add(1)
	p.saw(key)
	if err := p.wait(ctx); err != nil {
		return err
	}
	return payment.StripeTest{}.Refund(ctx, key, pay)
}

// env is a service on a fresh database, with its store and processor at hand.
type env struct {
	svc   *payment.Service
	store *postgres.Store
	proc  *countingProcessor
	pool  *pgxpool.Pool
}

// newEnv migrates a fresh database and opens a pool big enough for ten concurrent
// callers plus the test's own queries, so that nothing a test sees (a lock waiter, a
// slow answer) comes from waiting for a pool connection.
func newEnv(t *testing.T, proc *countingProcessor) env {
	t.Helper()
	small := pgtest.New(t, migrations.FS)
	cfg, err := pgxpool.ParseConfig(small.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := postgres.NewStore(pool)
	return env{svc: payment.NewService(store, proc, time.Now, 30*time.Second), store: store, proc: proc, pool: pool}
}

func charge(method payment.Method) payment.ChargeRequest {
	return payment.ChargeRequest{
		OrderID: uuid.New(), UserID: uuid.New(),
		Amount: payment.Money{Cents: 4200, Currency: "USD"}, Method: method,
	}
}

// outboxRow is one event in the outbox.
type outboxRow struct {
	Stream, Type, Source, Subject string
	Time                          time.Time
	Data                          map[string]any
}

func events(t *testing.T, pool *pgxpool.Pool) []outboxRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT stream, type, source, subject, time, data FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var e outboxRow
		var data []byte
		if err := rows.Scan(&e.Stream, &e.Type, &e.Source, &e.Subject, &e.Time, &data); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &e.Data); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func count(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
	}
}

// lockWaiters counts the sessions on the test's database waiting for a lock.
func lockWaiters(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestChargeCapturesOnceAndWritesItsEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	c := charge(payment.MethodVisa)

	p, err := e.svc.Charge(ctx, c)
	if err != nil {
		t.Fatalf("Charge: %v, want no error", err)
	}
	if p.Status != payment.StatusCaptured {
		t.Fatalf("Charge: status %s, want %s", p.Status, payment.StatusCaptured)
	}
	if p.OrderID != c.OrderID {
		t.Fatalf("Charge: order %s, want %s", p.OrderID, c.OrderID)
	}
	if p.UserID != c.UserID {
		t.Fatalf("Charge: user %s, want %s", p.UserID, c.UserID)
	}
	if p.Amount != c.Amount {
		t.Fatalf("Charge: amount %+v, want %+v", p.Amount, c.Amount)
	}
	if p.DeclineCode != "" {
		t.Fatalf("Charge: decline code %q, want none", p.DeclineCode)
	}
	if want := "ch_test_" + p.ID.String(); p.ProcessorRef != want {
		t.Fatalf("Charge: processor ref %q, want %q", p.ProcessorRef, want)
	}
	if p.SettledAt.IsZero() {
		t.Fatal("Charge: settled at zero, want a time")
	}
	stored, err := e.store.ByOrder(ctx, c.OrderID)
	if err != nil {
		t.Fatalf("stored: %v, want no error", err)
	}
	if stored.ID != p.ID {
		t.Errorf("stored id %s, want the returned %s", stored.ID, p.ID)
	}
	if stored.Status != payment.StatusCaptured {
		t.Errorf("stored status %s, want %s", stored.Status, payment.StatusCaptured)
	}
	if !stored.SettledAt.Equal(p.SettledAt) {
		t.Errorf("stored settled at %v, want the returned %v", stored.SettledAt, p.SettledAt)
	}
	if !stored.CreatedAt.Equal(p.CreatedAt) {
		t.Errorf("stored created at %v, want the returned %v", stored.CreatedAt, p.CreatedAt)
	}
	if stored.IdempotencyKey != c.OrderID.String() {
		t.Errorf("stored idempotency key %q, want the order id %s", stored.IdempotencyKey, c.OrderID)
	}
	if !stored.Matches(c) {
		t.Errorf("stored %+v does not match the request %+v", stored, c)
	}

	evs := events(t, e.pool)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Stream != "events.payments" {
		t.Errorf("event stream %q, want events.payments", ev.Stream)
	}
	if ev.Type != "payment.captured" {
		t.Errorf("event type %q, want payment.captured", ev.Type)
	}
	if ev.Source != "payments" {
		t.Errorf("event source %q, want payments", ev.Source)
	}
	if ev.Subject != p.ID.String() {
		t.Errorf("event subject %q, want the payment %s", ev.Subject, p.ID)
	}
	if !ev.Time.Equal(p.SettledAt) {
		t.Errorf("event time %v, want the settlement's %v", ev.Time, p.SettledAt)
	}
	want := map[string]any{"payment_id": p.ID.String(), "order_id": c.OrderID.String(), "user_id": c.UserID.String(),
		"amount_cents": float64(4200), "currency": "USD", "decline_code": nil}
	if len(ev.Data) != len(want) {
		t.Errorf("event data %v, want %v", ev.Data, want)
	}
	for k, v := range want {
		if ev.Data[k] != v {
			t.Errorf("event data %s = %v, want %v", k, ev.Data[k], v)
		}
	}

	// A retry answers the first outcome without asking the processor again.
	again, err := e.svc.Charge(ctx, c)
	if err != nil {
		t.Fatalf("retry: %v, want no error", err)
	}
	if again.ID != p.ID {
		t.Errorf("retry: payment %s, want the first %s", again.ID, p.ID)
	}
	if again.Status != payment.StatusCaptured {
		t.Errorf("retry: status %s, want %s", again.Status, payment.StatusCaptured)
	}
	if n := e.proc.charges.Load(); n != 1 {
		t.Errorf("%d processor charges, want 1", n)
	}
	if n, m := count(t, e.pool, "payments"), count(t, e.pool, "outbox"); n != 1 || m != 1 {
		t.Errorf("%d payments, %d events after the retry; want 1 and 1", n, m)
	}
}

func TestDeclinesAreRecordedWithTheirCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	for method, code := range map[payment.Method]payment.DeclineCode{
		payment.MethodDeclined:          payment.DeclinePaymentDeclined,
		payment.MethodInsufficientFunds: payment.DeclineInsufficientFunds,
	} {
		c := charge(method)
		p, err := e.svc.Charge(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v, want no error", method, err)
		}
		if p.Status != payment.StatusDeclined {
			t.Errorf("%s: status %s, want %s", method, p.Status, payment.StatusDeclined)
		}
		if p.DeclineCode != code {
			t.Errorf("%s: decline code %s, want %s", method, p.DeclineCode, code)
		}
		if r := apperr.ReasonOf(p.Declined()); r != string(code) {
			t.Errorf("%s: Declined() reason %q, want %q", method, r, code)
		}
		again, err := e.svc.Charge(ctx, c)
		if err != nil {
			t.Fatalf("%s retry: %v, want no error", method, err)
		}
		if again.ID != p.ID {
			t.Errorf("%s retry: payment %s, want the first %s", method, again.ID, p.ID)
		}
		if again.DeclineCode != code {
			t.Errorf("%s retry: decline code %s, want %s", method, again.DeclineCode, code)
		}
		stored, err := e.store.ByOrder(ctx, c.OrderID)
		if err != nil {
			t.Fatalf("%s stored: %v, want no error", method, err)
		}
		if stored.DeclineCode != code {
			t.Errorf("%s stored: decline code %s, want %s", method, stored.DeclineCode, code)
		}
		if stored.Status != payment.StatusDeclined {
			t.Errorf("%s stored: status %s, want %s", method, stored.Status, payment.StatusDeclined)
		}
	}
	if n := e.proc.charges.Load(); n != 2 {
		t.Errorf("%d processor charges, want 2", n)
	}
	evs := events(t, e.pool)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	codes := map[any]bool{}
	for _, ev := range evs {
		if ev.Type != "payment.declined" {
			t.Errorf("event type %q, want payment.declined", ev.Type)
		}
		if ev.Stream != "events.payments" {
			t.Errorf("event %s on stream %q, want events.payments", ev.Type, ev.Stream)
		}
		codes[ev.Data["decline_code"]] = true
	}
	if !codes["payment_declined"] {
		t.Errorf("decline codes in events: %v, want payment_declined among them", codes)
	}
	if !codes["insufficient_funds"] {
		t.Errorf("decline codes in events: %v, want insufficient_funds among them", codes)
	}
}

func TestTheSameKeyWithAnotherRequestChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	c := charge(payment.MethodDeclined)
	first, err := e.svc.Charge(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*payment.ChargeRequest){
		"amount": func(c *payment.ChargeRequest) { c.Amount.Cents = 1 },
		"method": func(c *payment.ChargeRequest) { c.Method = payment.MethodVisa },
		"user":   func(c *payment.ChargeRequest) { c.UserID = uuid.New() },
	} {
		other := c
		change(&other)
		if _, err := e.svc.Charge(ctx, other); !errors.Is(err, payment.ErrKeyReused) {
			t.Errorf("other %s: %v, want ErrKeyReused", name, err)
		}
	}
	stored, _ := e.store.ByOrder(ctx, c.OrderID)
	if stored.ID != first.ID {
		t.Errorf("stored payment %s, want the first %s", stored.ID, first.ID)
	}
	if stored.Status != payment.StatusDeclined {
		t.Errorf("stored status %s, want %s", stored.Status, payment.StatusDeclined)
	}
	if stored.Amount != c.Amount {
		t.Errorf("stored amount %+v, want %+v", stored.Amount, c.Amount)
	}
	if n, m, calls := count(t, e.pool, "payments"), count(t, e.pool, "outbox"), e.proc.charges.Load(); n != 1 || m != 1 || calls != 1 {
		t.Errorf("%d payments, %d events, %d processor calls; want 1 each", n, m, calls)
	}
}

// Identical charges that arrive together do not queue behind one another: no lock is
// held across the processor call, so each may ask the processor, all with the
// payment's id as the key, which the processor charges once. One outcome and one event
// are stored, and every caller answers the same payment.
func TestConcurrentIdenticalChargesStoreOneOutcome(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	e := newEnv(t, &countingProcessor{gate: gate})
	c := charge(payment.MethodVisa)

	const callers = 10
	results := make(chan payment.Payment, callers)
	var wg sync.WaitGroup
	// Should the wait below fail, open the gate and let the callers finish before the
	// pool closes (cleanups run last-registered first).
	t.Cleanup(func() { release(); wg.Wait() })
	for range callers {
		wg.Go(func() {
			p, err := e.svc.Charge(context.Background(), c)
			if err != nil {
				t.Errorf("Charge: %v", err)
			}
			results <- p
		})
	}
	// Every caller is inside the processor at once, and none waits on a lock.
	eventually(t, "ten processor calls with no caller waiting on a lock", func() bool {
		return e.proc.charges.Load() == callers && lockWaiters(t, e.pool) == 0
	})
	release()
	wg.Wait()
	close(results)

	var ids []uuid.UUID
	for p := range results {
		if p.Status != payment.StatusCaptured {
			t.Errorf("a caller got %+v", p)
		}
		ids = append(ids, p.ID)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Errorf("callers got different payments: %v", ids)
			break
		}
	}
	if keys := e.proc.keysSeen(); len(keys) != 1 || keys[ids[0].String()] != callers {
		t.Errorf("processor keys %v, want all %d calls with the payment's id %s", keys, callers, ids[0])
	}
	if n, m := count(t, e.pool, "payments"), count(t, e.pool, "outbox"); n != 1 || m != 1 {
		t.Errorf("%d payments, %d events; want 1 and 1", n, m)
	}
}

func TestAFailedProcessorCallLeavesAPendingPaymentTheRetrySettles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	c := charge(payment.MethodVisa)

	e.proc.fail.Store(true)
	if _, err := e.svc.Charge(ctx, c); apperr.CodeOf(err) != apperr.Unavailable {
		t.Fatalf("charge with the processor down: %v, want unavailable", err)
	}
	stored, err := e.store.ByOrder(ctx, c.OrderID)
	if err != nil {
		t.Fatalf("after the failure: %v, want no error", err)
	}
	if stored.Status != payment.StatusPending {
		t.Fatalf("after the failure: status %s, want %s", stored.Status, payment.StatusPending)
	}
	if !stored.SettledAt.IsZero() {
		t.Fatalf("after the failure: settled at %v, want zero", stored.SettledAt)
	}
	if n := count(t, e.pool, "outbox"); n != 0 {
		t.Errorf("%d events for a charge with no outcome, want 0", n)
	}
	// A pending payment is nobody's business but the saga's: the owner sees none yet.
	if list, err := e.svc.List(ctx, c.UserID, c.OrderID, page.Request{Limit: 20}); err != nil {
		t.Errorf("owner's list with a pending payment: %v, want no error", err)
	} else if len(list) != 0 {
		t.Errorf("owner's list with a pending payment: %+v, want none", list)
	}

	e.proc.fail.Store(false)
	p, err := e.svc.Charge(ctx, c)
	if err != nil {
		t.Fatalf("retry: %v, want no error", err)
	}
	if p.Status != payment.StatusCaptured {
		t.Fatalf("retry: status %s, want %s", p.Status, payment.StatusCaptured)
	}
	if p.ID != stored.ID {
		t.Fatalf("retry: payment %s, want the pending %s", p.ID, stored.ID)
	}
	if evs := events(t, e.pool); len(evs) != 1 {
		t.Errorf("events %+v, want one", evs)
	} else if evs[0].Type != "payment.captured" {
		t.Errorf("event type %q, want payment.captured", evs[0].Type)
	}
}

func TestALookUpSettlesAPaymentACrashLeftPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	// What a process that died between inserting the pending row and recording the
	// processor's answer leaves behind.
	c := charge(payment.MethodInsufficientFunds)
	pending := payment.NewPending(uuid.New(), c, time.Now().UTC().Truncate(time.Microsecond))
	if err := e.store.CreatePending(ctx, pending); err != nil {
		t.Fatal(err)
	}
	// A second CreatePending for the order (a retry racing in) keeps the first row.
	if err := e.store.CreatePending(ctx, payment.NewPending(uuid.New(), c, time.Now())); err != nil {
		t.Fatal(err)
	}

	p, err := e.svc.Payment(ctx, c.OrderID)
	if err != nil {
		t.Fatalf("look-up of the pending payment: %v, want no error", err)
	}
	if p.ID != pending.ID {
		t.Fatalf("look-up of the pending payment: payment %s, want the first pending one %s", p.ID, pending.ID)
	}
	if p.Status != payment.StatusDeclined {
		t.Fatalf("look-up of the pending payment: status %s, want %s", p.Status, payment.StatusDeclined)
	}
	if p.DeclineCode != payment.DeclineInsufficientFunds {
		t.Fatalf("look-up of the pending payment: decline code %s, want %s", p.DeclineCode, payment.DeclineInsufficientFunds)
	}
	again, err := e.svc.Payment(ctx, c.OrderID)
	if err != nil {
		t.Fatalf("second look-up: %v, want no error", err)
	}
	if again.Status != payment.StatusDeclined {
		t.Errorf("second look-up: status %s, want %s", again.Status, payment.StatusDeclined)
	}
	if n := e.proc.charges.Load(); n != 1 {
		t.Errorf("second look-up: %d processor calls in all, want 1", n)
	}
	evs := events(t, e.pool)
	if len(evs) != 1 {
		t.Fatalf("events %+v, want one", evs)
	}
	if evs[0].Type != "payment.declined" {
		t.Errorf("event type %q, want payment.declined", evs[0].Type)
	}
	if evs[0].Subject != pending.ID.String() {
		t.Errorf("event subject %q, want the payment %s", evs[0].Subject, pending.ID)
	}
	if _, err := e.svc.Payment(ctx, uuid.New()); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("look-up of an order never charged: %v", err)
	}
}

// Concurrent refunds of one payment do not queue behind one another either: each may
// ask the processor, all with the key "refund_"+payment id, which the processor
// refunds once; one refund and one payment.refunded event are stored.
func TestConcurrentRefundsRecordOneRefund(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	c := charge(payment.MethodVisa)
	charged, err := e.svc.Charge(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	// From here the processor holds each call until the gate opens, so the refunds
	// overlap. (Set before any refund starts: the callers below only read it.)
	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	e.proc.gate = gate

	const callers = 10
	results := make(chan payment.Payment, callers)
	var wg sync.WaitGroup
	t.Cleanup(func() { release(); wg.Wait() })
	for range callers {
		wg.Go(func() {
			p, err := e.svc.Refund(context.Background(), c.OrderID)
			if err != nil {
				t.Errorf("Refund: %v", err)
			}
			results <- p
		})
	}
	eventually(t, "ten processor refunds with no caller waiting on a lock", func() bool {
		return e.proc.refunds.Load() == callers && lockWaiters(t, e.pool) == 0
	})
	release()
	wg.Wait()
	close(results)
	for p := range results {
		if p.ID != charged.ID {
			t.Errorf("a refund answered payment %s, want %s", p.ID, charged.ID)
		}
		if p.Status != payment.StatusRefunded {
			t.Errorf("a refund answered status %s, want %s", p.Status, payment.StatusRefunded)
		}
		if p.RefundedAt.IsZero() {
			t.Error("a refund answered refunded at zero, want a time")
		}
	}
	if keys := e.proc.keysSeen(); len(keys) != 2 || keys[charged.ID.String()] != 1 || keys["refund_"+charged.ID.String()] != callers {
		t.Errorf("processor keys %v, want the charge's once and all %d refunds with refund_%s", keys, callers, charged.ID)
	}
	evs := events(t, e.pool)
	if len(evs) != 2 || evs[0].Type != "payment.captured" || evs[1].Type != "payment.refunded" {
		t.Fatalf("events %+v, want captured then refunded", evs)
	}
	ref := evs[1]
	want := map[string]any{"payment_id": charged.ID.String(), "order_id": c.OrderID.String(), "user_id": c.UserID.String(),
		"amount_cents": float64(4200), "currency": "USD"}
	if len(ref.Data) != len(want) {
		t.Errorf("refund event data %v, want %v", ref.Data, want)
	}
	if ref.Subject != charged.ID.String() {
		t.Errorf("refund event subject %q, want the payment %s", ref.Subject, charged.ID)
	}
	for k, v := range want {
		if ref.Data[k] != v {
			t.Errorf("refund event data %s = %v, want %v", k, ref.Data[k], v)
		}
	}
}

func TestRefundingADeclinedOrUnknownChargeChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	c := charge(payment.MethodDeclined)
	declined, err := e.svc.Charge(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.svc.Refund(ctx, c.OrderID)
	if err != nil {
		t.Fatalf("refund of a declined charge: %v, want no error", err)
	}
	if p.ID != declined.ID {
		t.Errorf("refund of a declined charge: payment %s, want %s", p.ID, declined.ID)
	}
	if p.Status != payment.StatusDeclined {
		t.Errorf("refund of a declined charge: status %s, want %s", p.Status, payment.StatusDeclined)
	}
	if !p.RefundedAt.IsZero() {
		t.Errorf("refund of a declined charge: refunded at %v, want zero", p.RefundedAt)
	}
	if _, err := e.svc.Refund(ctx, uuid.New()); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("refund of an order never charged: %v, want ErrNotFound", err)
	}
	if n, m := e.proc.refunds.Load(), count(t, e.pool, "outbox"); n != 0 || m != 1 {
		t.Errorf("%d processor refunds, %d events; want 0 and 1 (the decline)", n, m)
	}
}

func TestTheListShowsOnlyTheOwnersPayments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	c := charge(payment.MethodVisa)
	p, err := e.svc.Charge(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	other := charge(payment.MethodVisa) // another order of another user
	if _, err := e.svc.Charge(ctx, other); err != nil {
		t.Fatal(err)
	}

	list, err := e.svc.List(ctx, c.UserID, c.OrderID, page.Request{Limit: 20})
	if err != nil {
		t.Fatalf("owner's list: %v, want no error", err)
	}
	if len(list) != 1 {
		t.Fatalf("owner's list: %+v, want one payment", list)
	}
	if list[0].ID != p.ID {
		t.Errorf("owner's list: payment %s, want %s", list[0].ID, p.ID)
	}
	if list[0].Status != payment.StatusCaptured {
		t.Errorf("owner's list: status %s, want %s", list[0].Status, payment.StatusCaptured)
	}
	for name, q := range map[string][2]uuid.UUID{
		"someone else asking for the order":  {other.UserID, c.OrderID},
		"the owner asking for another order": {c.UserID, other.OrderID},
	} {
		if list, err := e.svc.List(ctx, q[0], q[1], page.Request{Limit: 20}); err != nil {
			t.Errorf("%s: %v, want no error", name, err)
		} else if len(list) != 0 {
			t.Errorf("%s: %+v, want none", name, list)
		}
	}
	after := page.Cursor{Time: p.CreatedAt, ID: p.ID}
	if list, err := e.svc.List(ctx, c.UserID, c.OrderID, page.Request{Limit: 20, After: &after}); err != nil {
		t.Errorf("page after the only payment: %v, want no error", err)
	} else if len(list) != 0 {
		t.Errorf("page after the only payment: %+v, want none", list)
	}
}

// A refund of an order not yet charged races the charge itself (the saga gave up
// while its charge request was still on its way): either the charge wins and is then
// refunded, or the void wins and the charge is refused. Never money kept for a
// cancelled order.
func TestChargeAndVoidOfOneOrderExcludeEachOther(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	for range 20 {
		c := charge(payment.MethodVisa)
		var wg sync.WaitGroup
		var chargeErr, refundErr error
		var refunded payment.Payment
		wg.Add(2)
		go func() { defer wg.Done(); _, chargeErr = e.svc.Charge(ctx, c) }()
		go func() { defer wg.Done(); refunded, refundErr = e.svc.Refund(ctx, c.OrderID) }()
		wg.Wait()
		switch {
		case chargeErr == nil: // the charge came first; the refund gave the money back
			if refundErr != nil {
				t.Fatalf("charge won but the refund answered %v, want no error", refundErr)
			}
			if refunded.Status != payment.StatusRefunded {
				t.Fatalf("charge won but the refund answered status %s, want %s", refunded.Status, payment.StatusRefunded)
			}
		case errors.Is(chargeErr, payment.ErrVoided): // the void came first
			if !errors.Is(refundErr, payment.ErrNotFound) {
				t.Fatalf("void won but the refund answered %v", refundErr)
			}
			if _, err := e.svc.Payment(ctx, c.OrderID); !errors.Is(err, payment.ErrNotFound) {
				t.Fatalf("a voided order has a payment: %v", err)
			}
		default:
			t.Fatalf("charge: %v, refund: %v", chargeErr, refundErr)
		}
	}
}

// The processor is the outside world and may take up to PROCESSOR_TIMEOUT to answer:
// nothing of the database may be held meanwhile, or a slow processor would queue every
// other request for the payment behind a row lock and pin pool connections and open
// transactions (vacuum waits on those). So while a charge, a look-up and a refund are
// each held inside the processor, the test locks the payment's row itself, without
// waiting, and finds no transaction open and no pool connection taken.
func TestNothingIsHeldWhileTheProcessorIsAsked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	captured := charge(payment.MethodVisa)
	if _, err := e.svc.Charge(ctx, captured); err != nil {
		t.Fatal(err)
	}
	interrupted := charge(payment.MethodVisa) // a charge a crash left pending
	if err := e.store.CreatePending(ctx, payment.NewPending(uuid.New(), interrupted, time.Now())); err != nil {
		t.Fatal(err)
	}
	fresh := charge(payment.MethodVisa)

	// The test's own connection, outside the service's pool.
	own, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close(context.Background()) })

	cases := []struct {
		name   string
		order  uuid.UUID
		call   func() (payment.Payment, error)
		calls  *atomic.Int32 // the processor's counter the call goes through
		status payment.Status
	}{
		{"charge", fresh.OrderID, func() (payment.Payment, error) { return e.svc.Charge(ctx, fresh) }, &e.proc.charges, payment.StatusCaptured},
		{"look-up", interrupted.OrderID, func() (payment.Payment, error) { return e.svc.Payment(ctx, interrupted.OrderID) }, &e.proc.charges, payment.StatusCaptured},
		{"refund", captured.OrderID, func() (payment.Payment, error) { return e.svc.Refund(ctx, captured.OrderID) }, &e.proc.refunds, payment.StatusRefunded},
	}
	for _, c := range cases {
		gate := make(chan struct{})
		var open sync.Once
		release := func() { open.Do(func() { close(gate) }) }
		e.proc.gate = gate // the previous case's call has returned: nobody reads it now
		before := c.calls.Load()
		done := make(chan payment.Payment, 1)
		var wg sync.WaitGroup
		t.Cleanup(func() { release(); wg.Wait() })
		wg.Go(func() {
			p, err := c.call()
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			done <- p
		})
		eventually(t, c.name+" held inside the processor", func() bool { return c.calls.Load() == before+1 })

		tx, err := own.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var id uuid.UUID
		err = tx.QueryRow(ctx, `SELECT id FROM payments WHERE order_id = $1 FOR UPDATE NOWAIT`, c.order).Scan(&id)
		if rerr := tx.Rollback(ctx); rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			t.Errorf("%s: the payment's row cannot be locked while the processor is asked: %v", c.name, err)
		}
		var idle int
		if err := own.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&idle); err != nil {
			t.Fatal(err)
		}
		if idle != 0 {
			t.Errorf("%s: %d connections idle in transaction while the processor is asked, want 0", c.name, idle)
		}
		if n := e.pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("%s: %d pool connections taken while the processor is asked, want 0", c.name, n)
		}

		release()
		p := <-done
		if p.OrderID != c.order {
			t.Errorf("%s answered order %s, want %s", c.name, p.OrderID, c.order)
		}
		if p.Status != c.status {
			t.Errorf("%s answered status %s, want %s", c.name, p.Status, c.status)
		}
		wg.Wait()
	}
	// Each call recorded its outcome once: three captures (the first charge, the fresh
	// one, the interrupted one) and one refund.
	evs := events(t, e.pool)
	types := map[string]int{}
	for _, ev := range evs {
		types[ev.Type]++
	}
	if len(evs) != 4 || types["payment.captured"] != 3 || types["payment.refunded"] != 1 {
		t.Errorf("events %v, want 3 payment.captured and 1 payment.refunded", types)
	}
}

// Record is the only way an outcome is stored, and it moves a payment only from the
// status the caller saw: a second outcome for a payment that has moved on (a
// concurrent request's, a stale snapshot's) writes nothing and answers what is stored.
func TestRecordMovesAPaymentOnlyFromTheStatusItWasIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond)
	pending := payment.NewPending(uuid.New(), charge(payment.MethodDeclined), at)
	if err := e.store.CreatePending(ctx, pending); err != nil {
		t.Fatal(err)
	}
	declined, err := pending.Settle(payment.Outcome{Status: payment.StatusDeclined, DeclineCode: payment.DeclinePaymentDeclined, Reference: "ch_1"}, at)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.store.Record(ctx, payment.StatusPending, declined); err != nil {
		t.Fatalf("Record(pending → declined): %v, want no error", err)
	} else if !reflect.DeepEqual(got, declined) {
		t.Fatalf("Record(pending → declined) = %+v, want %+v", got, declined)
	}

	captured, _ := pending.Settle(payment.Outcome{Status: payment.StatusCaptured, Reference: "ch_2"}, at.Add(time.Second))
	if got, err := e.store.Record(ctx, payment.StatusPending, captured); err != nil {
		t.Errorf("a second outcome for a settled payment: %v, want no error", err)
	} else {
		if got.Status != payment.StatusDeclined {
			t.Errorf("a second outcome for a settled payment: status %s, want the stored %s", got.Status, payment.StatusDeclined)
		}
		if got.ProcessorRef != "ch_1" {
			t.Errorf("a second outcome for a settled payment: processor ref %q, want the stored ch_1", got.ProcessorRef)
		}
	}
	refunded := captured
	refunded.Status, refunded.RefundedAt = payment.StatusRefunded, at
	if got, err := e.store.Record(ctx, payment.StatusCaptured, refunded); err != nil {
		t.Errorf("a refund of a declined payment: %v, want no error", err)
	} else if got.Status != payment.StatusDeclined {
		t.Errorf("a refund of a declined payment: status %s, want the stored %s", got.Status, payment.StatusDeclined)
	}
	if stored, _ := e.store.ByOrder(ctx, pending.OrderID); !reflect.DeepEqual(stored, declined) {
		t.Errorf("stored %+v, want %+v", stored, declined)
	}
	if evs := events(t, e.pool); len(evs) != 1 || evs[0].Type != "payment.declined" {
		t.Errorf("events %+v, want one payment.declined", evs)
	}

	other, _ := payment.NewPending(uuid.New(), charge(payment.MethodVisa), at).Settle(payment.Outcome{Status: payment.StatusCaptured}, at)
	if _, err := e.store.Record(ctx, payment.StatusPending, other); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("Record of a payment never stored: %v, want ErrNotFound", err)
	}
	if _, err := e.store.Record(ctx, payment.StatusDeclined, declined); !errors.Is(err, payment.ErrBadTransition) {
		t.Errorf("Record to the status it is in: %v, want ErrBadTransition", err)
	}
}

// The sweep finishes the charges dead processes left pending, oldest first and a batch
// at a time, and leaves alone a charge still in progress. While the processor is down
// it stops at once and changes nothing; a second sweep has nothing left to do.
func TestTheSweepSettlesPaymentsLeftPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	old := time.Now().Add(-2 * time.Minute)
	want := map[uuid.UUID]payment.Status{} // payment id → its status after the sweep
	leave := func(m payment.Method, at time.Time, then payment.Status) {
		t.Helper()
		p := payment.NewPending(uuid.New(), charge(m), at)
		if err := e.store.CreatePending(ctx, p); err != nil {
			t.Fatal(err)
		}
		want[p.ID] = then
	}
	for range payment.SweepBatch + 1 { // more than one batch
		leave(payment.MethodVisa, old, payment.StatusCaptured)
	}
	leave(payment.MethodDeclined, old, payment.StatusDeclined)
	leave(payment.MethodInsufficientFunds, old.Add(time.Second), payment.StatusDeclined)
	leave(payment.MethodVisa, time.Now(), payment.StatusPending) // a charge in progress
	const left = payment.SweepBatch + 3

	statuses := func() map[uuid.UUID]payment.Status {
		t.Helper()
		rows, err := e.pool.Query(ctx, `SELECT id, status FROM payments`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[uuid.UUID]payment.Status{}
		for rows.Next() {
			var id uuid.UUID
			var st payment.Status
			if err := rows.Scan(&id, &st); err != nil {
				t.Fatal(err)
			}
			got[id] = st
		}
		return got
	}

	e.proc.fail.Store(true)
	if n, err := e.svc.SettlePending(ctx, time.Minute); n != 0 || apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("sweep with the processor down: %d, %v; want 0 and unavailable", n, err)
	}
	if calls := e.proc.charges.Load(); calls != 1 {
		t.Errorf("%d processor calls with the processor down, want 1 (the sweep stops at the first)", calls)
	}
	for id, st := range statuses() {
		if st != payment.StatusPending {
			t.Errorf("payment %s is %s after a failed sweep", id, st)
		}
	}

	e.proc.fail.Store(false)
	if n, err := e.svc.SettlePending(ctx, time.Minute); n != left || err != nil {
		t.Errorf("sweep: %d, %v; want %d settled", n, err, left)
	}
	got := statuses()
	for id, st := range want {
		if got[id] != st {
			t.Errorf("payment %s is %s, want %s", id, got[id], st)
		}
	}
	perPayment := map[string]int{}
	for _, ev := range events(t, e.pool) {
		perPayment[ev.Subject]++
	}
	if len(perPayment) != left {
		t.Errorf("events about %d payments, want %d", len(perPayment), left)
	}
	for id, n := range perPayment {
		if n != 1 {
			t.Errorf("%d events about payment %s, want 1", n, id)
		}
	}

	calls := e.proc.charges.Load()
	n, err := e.svc.SettlePending(ctx, time.Minute)
	if err != nil {
		t.Errorf("second sweep: %v, want no error", err)
	}
	if n != 0 {
		t.Errorf("second sweep: %d settled, want 0", n)
	}
	if more := e.proc.charges.Load() - calls; more != 0 {
		t.Errorf("second sweep: %d more processor calls, want 0", more)
	}
	if m := count(t, e.pool, "outbox"); m != left {
		t.Errorf("second sweep: %d events in all, want %d", m, left)
	}
}

// Voids older than the retention are forgotten, and the younger ones keep refusing
// charges; a repeat has nothing left to do.
func TestForgetVoidsDeletesOnlyTheOldOnes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &countingProcessor{})
	ctx := context.Background()
	const retention = 30 * 24 * time.Hour
	old, recent := charge(payment.MethodVisa), charge(payment.MethodVisa)
	for c, at := range map[*payment.ChargeRequest]time.Time{&old: time.Now().Add(-retention - time.Hour), &recent: time.Now().Add(-retention + time.Hour)} {
		if voided, err := e.store.Void(ctx, c.OrderID, at); err != nil {
			t.Fatalf("void: %v, want no error", err)
		} else if !voided {
			t.Fatal("void: not voided, want voided")
		}
	}
	if n, err := e.svc.ForgetVoids(ctx, retention); n != 1 || err != nil {
		t.Errorf("ForgetVoids = %d, %v; want 1", n, err)
	}
	if n, err := e.svc.ForgetVoids(ctx, retention); n != 0 || err != nil {
		t.Errorf("second ForgetVoids = %d, %v; want 0", n, err)
	}
	if _, err := e.svc.Charge(ctx, recent); !errors.Is(err, payment.ErrVoided) {
		t.Errorf("charge of an order voided within the retention: %v, want ErrVoided", err)
	}
	if p, err := e.svc.Charge(ctx, old); err != nil {
		t.Errorf("charge of an order whose void was forgotten: %v, want no error", err)
	} else if p.Status != payment.StatusCaptured {
		t.Errorf("charge of an order whose void was forgotten: status %s, want %s", p.Status, payment.StatusCaptured)
	}
}

// A compensation's refund can arrive while the charge it undoes is still waiting for
// the processor (the saga gave up on the answer). Neither waits for the other: the
// refund asks the processor for the charge's outcome itself (same key), records it,
// and refunds it; the charge's own answer then finds the payment moved on. The money
// comes back, and each event is written once.
func TestARefundDuringTheChargeTakesTheMoneyBack(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	e := newEnv(t, &countingProcessor{gate: gate})
	c := charge(payment.MethodVisa)

	var wg sync.WaitGroup
	t.Cleanup(func() { release(); wg.Wait() })
	var charged, refunded payment.Payment
	var chargeErr, refundErr error
	wg.Go(func() { charged, chargeErr = e.svc.Charge(context.Background(), c) })
	eventually(t, "the charge inside the processor", func() bool { return e.proc.charges.Load() == 1 })
	wg.Go(func() { refunded, refundErr = e.svc.Refund(context.Background(), c.OrderID) })
	eventually(t, "the refund asking for the charge's outcome", func() bool { return e.proc.charges.Load() == 2 })
	release()
	wg.Wait()

	if refundErr != nil || refunded.Status != payment.StatusRefunded {
		t.Errorf("refund: %+v, %v; want refunded", refunded, refundErr)
	}
	if chargeErr != nil {
		t.Errorf("charge: %v, want no error", chargeErr)
	} else {
		if charged.ID != refunded.ID {
			t.Errorf("charge: payment %s, want the refunded %s", charged.ID, refunded.ID)
		}
		if charged.Status != payment.StatusCaptured && charged.Status != payment.StatusRefunded {
			t.Errorf("charge: status %s, want %s or %s", charged.Status, payment.StatusCaptured, payment.StatusRefunded)
		}
	}
	if stored, err := e.store.ByOrder(context.Background(), c.OrderID); err != nil || stored.Status != payment.StatusRefunded {
		t.Errorf("stored %+v, %v; want refunded", stored, err)
	}
	evs := events(t, e.pool)
	if len(evs) != 2 || evs[0].Type != "payment.captured" || evs[1].Type != "payment.refunded" {
		t.Errorf("events %+v, want captured then refunded", evs)
	}
}
