package payment_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
)

// fakeStore keeps payments in memory; one mutex stands in for a transaction. The SQL
// store has its own tests, concurrency included.
type fakeStore struct {
	mu       sync.Mutex
	payments map[uuid.UUID]payment.Payment
	voided   map[uuid.UUID]bool
	events   []payment.Status // the status of each event written
}

var _ payment.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{payments: map[uuid.UUID]payment.Payment{}, voided: map[uuid.UUID]bool{}}
}

func (s *fakeStore) CreatePending(_ context.Context, p payment.Payment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.voided[p.OrderID] {
		return payment.ErrVoided
	}
	if _, ok := s.payments[p.OrderID]; !ok {
		s.payments[p.OrderID] = p
	}
	return nil
}

func (s *fakeStore) Void(_ context.Context, order uuid.UUID, _ time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.payments[order]; !ok {
		s.voided[order] = true
	}
	return s.voided[order], nil
}

func (s *fakeStore) Record(_ context.Context, from payment.Status, next payment.Payment) (payment.Payment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.payments[next.OrderID]
	if !ok || cur.ID != next.ID {
		return payment.Payment{}, payment.ErrNotFound
	}
	if cur.Status != from {
		return cur, nil
	}
	s.payments[next.OrderID] = next
	s.events = append(s.events, next.Status)
	return next, nil
}

func (s *fakeStore) ByOrder(_ context.Context, order uuid.UUID) (payment.Payment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.payments[order]; ok {
		return p, nil
	}
	return payment.Payment{}, payment.ErrNotFound
}

func (s *fakeStore) DeleteVoids(context.Context, time.Time) (int64, error) {
	return 0, errors.New("not used")
}

func (s *fakeStore) Pending(context.Context, time.Time, *page.Cursor, int) ([]payment.Payment, error) {
	return nil, errors.New("not used")
}

func (s *fakeStore) ListByOrder(context.Context, uuid.UUID, uuid.UUID, page.Request) ([]payment.Payment, error) {
	return nil, errors.New("not used")
}

// flakyProcessor is StripeTest behind a switch: while err is set every call fails
// with it; block makes calls wait for their context to end. It notes each call's
// deadline.
type flakyProcessor struct {
	mu               sync.Mutex
	err              error
	block            bool
	charges, refunds int
	deadlines        []time.Time
}

var _ payment.Processor = (*flakyProcessor)(nil)

func (p *flakyProcessor) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *flakyProcessor) call(ctx context.Context, count *int) error {
	p.mu.Lock()
	*count++
	deadline, _ := ctx.Deadline()
	p.deadlines = append(p.deadlines, deadline)
	err, block := p.err, p.block
	p.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (p *flakyProcessor) Charge(ctx context.Context, key string, c payment.ChargeRequest) (payment.Outcome, error) {
	if err := p.call(ctx, &p.charges); err != nil {
		return payment.Outcome{}, err
	}
	return payment.StripeTest{}.Charge(ctx, key, c)
}

func (p *flakyProcessor) Refund(ctx context.Context, key string, pay payment.Payment) error {
	if err := p.call(ctx, &p.refunds); err != nil {
		return err
	}
	return payment.StripeTest{}.Refund(ctx, key, pay)
}

func TestAProcessorOutageLeavesThePaymentPendingUntilARetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, proc := newFakeStore(), &flakyProcessor{}
	svc := payment.NewService(store, proc, time.Now, time.Second)
	c := visaCharge()

	proc.fail(errors.New("connection refused"))
	if _, err := svc.Charge(ctx, c); apperr.CodeOf(err) != apperr.Unavailable {
		t.Fatalf("charge while the processor is down: %v, want unavailable", err)
	}
	if p, _ := store.ByOrder(ctx, c.OrderID); p.Status != payment.StatusPending {
		t.Fatalf("after a failed processor call: status %q, want pending", p.Status)
	}
	if len(store.events) != 0 {
		t.Fatalf("after a failed processor call: events %v, want none", store.events)
	}
	// A look-up cannot learn the outcome either, and says why.
	if _, err := svc.Payment(ctx, c.OrderID); apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("look-up while the processor is down: %v", err)
	}

	proc.fail(nil)
	p, err := svc.Charge(ctx, c)
	if err != nil {
		t.Fatalf("retry: %v, want no error", err)
	}
	if p.Status != payment.StatusCaptured {
		t.Fatalf("retry: status %s, want %s", p.Status, payment.StatusCaptured)
	}
	if len(store.events) != 1 {
		t.Fatalf("retry: events %v, want one", store.events)
	}
	again, err := svc.Charge(ctx, c)
	if err != nil {
		t.Fatalf("repeat: %v, want no error", err)
	}
	if again.ID != p.ID {
		t.Errorf("repeat: payment %s, want the first %s", again.ID, p.ID)
	}
	if proc.charges != 3 {
		t.Errorf("repeat: %d processor calls, want 3 (two failed, one answered)", proc.charges)
	}
}

func TestASlowProcessorIsATimeout(t *testing.T) {
	t.Parallel()
	proc := &flakyProcessor{block: true}
	svc := payment.NewService(newFakeStore(), proc, time.Now, 20*time.Millisecond)
	if _, err := svc.Charge(context.Background(), visaCharge()); apperr.CodeOf(err) != apperr.Timeout {
		t.Errorf("charge with a processor that does not answer: %v, want timeout", err)
	}
}

func TestTheSameKeyWithAnotherRequestIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, proc := newFakeStore(), &flakyProcessor{}
	svc := payment.NewService(store, proc, time.Now, time.Second)
	c := visaCharge()
	if _, err := svc.Charge(ctx, c); err != nil {
		t.Fatal(err)
	}
	other := c
	other.Amount.Cents++
	_, err := svc.Charge(ctx, other)
	if !errors.Is(err, payment.ErrKeyReused) {
		t.Errorf("same key, other amount: %v, want ErrKeyReused", err)
	}
	if code := apperr.CodeOf(err); code != apperr.Invalid {
		t.Errorf("same key, other amount: code %s, want %s", code, apperr.Invalid)
	}
	if proc.charges != 1 || len(store.events) != 1 {
		t.Errorf("%d processor calls, events %v; want 1 and 1", proc.charges, store.events)
	}
}

func TestRefundSettlesAnInterruptedChargeFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, proc := newFakeStore(), &flakyProcessor{}
	svc := payment.NewService(store, proc, time.Now, time.Second)

	// A charge that died after its pending row: the refund learns it was captured,
	// then gives the money back.
	c := visaCharge()
	if err := store.CreatePending(ctx, payment.NewPending(uuid.New(), c, time.Now())); err != nil {
		t.Fatal(err)
	}
	p, err := svc.Refund(ctx, c.OrderID)
	if err != nil {
		t.Fatalf("refund of a pending charge: %v, want no error", err)
	}
	if p.Status != payment.StatusRefunded {
		t.Errorf("refund of a pending charge: status %s, want %s", p.Status, payment.StatusRefunded)
	}
	if proc.charges != 1 {
		t.Errorf("refund of a pending charge: %d processor charges, want 1", proc.charges)
	}
	if proc.refunds != 1 {
		t.Errorf("refund of a pending charge: %d processor refunds, want 1", proc.refunds)
	}
	if len(store.events) != 2 || store.events[0] != payment.StatusCaptured || store.events[1] != payment.StatusRefunded {
		t.Errorf("events %v, want captured then refunded", store.events)
	}

	// The refund cannot happen while the processor is down; the payment stays captured.
	c2 := visaCharge()
	if _, err := svc.Charge(ctx, c2); err != nil {
		t.Fatal(err)
	}
	proc.fail(errors.New("connection reset"))
	if _, err := svc.Refund(ctx, c2.OrderID); apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("refund while the processor is down: %v", err)
	}
	if got, _ := store.ByOrder(ctx, c2.OrderID); got.Status != payment.StatusCaptured {
		t.Errorf("after a failed refund: %s, want captured", got.Status)
	}

	if _, err := svc.Refund(ctx, uuid.New()); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("refund of an order never charged: %v, want ErrNotFound", err)
	}
}

// PROCESSOR_TIMEOUT bounds the processor's part of a request, not each call, so that a
// refund of a pending payment, which asks the processor twice (the charge's outcome,
// then the refund), still answers within the time its caller allows.
func TestARequestAsksTheProcessorWithinOneTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, proc := newFakeStore(), &flakyProcessor{}
	const timeout = time.Minute
	svc := payment.NewService(store, proc, time.Now, timeout)
	c := visaCharge()
	if err := store.CreatePending(ctx, payment.NewPending(uuid.New(), c, time.Now())); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if p, err := svc.Refund(ctx, c.OrderID); err != nil {
		t.Fatalf("refund of a pending payment: %v, want no error", err)
	} else if p.Status != payment.StatusRefunded {
		t.Fatalf("refund of a pending payment: status %s, want %s", p.Status, payment.StatusRefunded)
	}
	end := time.Now()
	if len(proc.deadlines) != 2 {
		t.Fatalf("processor call deadlines %v, want two", proc.deadlines)
	}
	if !proc.deadlines[0].Equal(proc.deadlines[1]) {
		t.Errorf("processor call deadlines %v and %v, want both the same", proc.deadlines[0], proc.deadlines[1])
	}
	if proc.deadlines[0].Before(start.Add(timeout)) || proc.deadlines[0].After(end.Add(timeout)) {
		t.Errorf("processor call deadline %v, want between %v and %v (%s after the refund started and ended)", proc.deadlines[0], start.Add(timeout), end.Add(timeout), timeout)
	}
}
