package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/page"
)

// Service is what the API does with orders: create one (pricing it with inventory
// and running its saga inline under a deadline), read them, cancel one, and show
// sagas to operators.
type Service struct {
	store     Store
	inventory Inventory
	saga      *Orchestrator
	notifier  Notifier
	now       func() time.Time
	log       *slog.Logger
	inline    time.Duration
}

// NewService makes a Service that runs sagas with saga, inline for at most inline
// (SAGA_INLINE_TIMEOUT) per request; the rest is left to recovery.
func NewService(d Deps, saga *Orchestrator, inline time.Duration) *Service {
	if d.Notifier == nil {
		d.Notifier = noNotifier{}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Service{store: d.Store, inventory: d.Inventory, saga: saga, notifier: d.Notifier, now: d.Now, log: d.Log, inline: inline}
}

// Create makes order id for the user from n, priced by inventory, and runs its saga
// for up to the inline deadline; it returns the order as it then stands: confirmed or
// cancelled when the saga finished, else still in progress (recovery finishes it).
// When order id exists already (an Idempotency-Key repeated) it is returned as it
// stands instead, after checking it is the user's.
//
// Errors: apperr.Invalid with field errors when inventory refuses the lines (an
// unknown product: items[i].product_id; mixed currencies), apperr.Unavailable or
// apperr.Timeout when inventory cannot price them, the store's errors. Nothing is
// stored when it fails, except that a store error may hide a commit that happened
// (MaybeStored reports it).
func (s *Service) Create(ctx context.Context, userID, id uuid.UUID, n NewOrder) (Order, error) {
	if existing, err := s.store.Order(ctx, id); err == nil {
		return s.repeated(existing, userID, n)
	} else if apperr.CodeOf(err) != apperr.NotFound {
		return Order{}, err
	}
	q, err := s.inventory.Quote(ctx, n.Lines)
	if err != nil {
		return Order{}, err
	}
	if err := checkQuote(n, q); err != nil {
		return Order{}, apperr.Wrap(err, apperr.BadGateway, "the inventory service priced a different basket")
	}
	now := s.timestamp()
	o := Order{
		ID: id, UserID: userID, Status: StatusPending, Lines: q.Lines, TotalCents: q.TotalCents, Currency: q.Currency,
		PaymentMethod: n.PaymentMethod, CreatedAt: now, UpdatedAt: now,
	}
	// The saga is created held, so that no recovery pass takes it before this
	// request drives it.
	sg := NewSaga(o)
	o, lease, created, err := s.store.CreateOrder(ctx, o, sg, s.saga.NewLease(id))
	if err != nil {
		// A failed transaction may still have committed (its answer lost on the way).
		return Order{}, maybeStored{err}
	}
	if !created {
		return s.repeated(o, userID, n)
	}
	s.log.InfoContext(ctx, "order created", "order_id", o.ID, "user_id", userID, "total_cents", o.TotalCents)
	s.notifier.Notify(context.WithoutCancel(ctx), StatusChange{OrderID: o.ID, Status: o.Status})
	return s.inlined(ctx, o, func(ctx context.Context) (Order, error) { return s.saga.Continue(ctx, lease, o, sg) })
}

// inlined runs drive (the saga) under the inline deadline and returns the order as
// it then stands; a saga it could not finish (or could not even start: a database
// hiccup) is left to recovery, so that is not an error.
func (s *Service) inlined(ctx context.Context, o Order, drive func(context.Context) (Order, error)) (Order, error) {
	dctx, cancel := context.WithTimeout(ctx, s.inline)
	defer cancel()
	driven, err := drive(dctx)
	if err != nil {
		s.log.WarnContext(ctx, "saga not driven inline; recovery will", "order_id", o.ID, "err", err)
		return o, nil
	}
	return driven, nil
}

// maybeStored marks an error after which the order may exist all the same.
type maybeStored struct{ error }

func (e maybeStored) Unwrap() error { return e.error }

// MaybeStored reports whether Create failed in a way that may have stored the order:
// the transaction that creates it failed, and its outcome is unknown. An
// Idempotency-Key must then stay bound to its request, so that a retry with another
// body is refused and a retry with the same one finds the order, if it exists.
func MaybeStored(err error) bool {
	var m maybeStored
	return errors.As(err, &m)
}

// ErrKeyReused means an Idempotency-Key names an order made from another request.
var ErrKeyReused = &apperr.Error{Code: apperr.Invalid, Message: "this Idempotency-Key was used with a different request",
	Fields: []apperr.FieldError{{Field: "Idempotency-Key", Message: "was used with a different request body; use a new key for a new order"}}}

// repeated answers a create whose order exists already (its id comes from the same
// user and Idempotency-Key): the order, when the request is the one that made it.
// The order itself is the check, not only the stored key: a key forgotten after its
// retention, or released after an unknown commit, still cannot fetch an order that
// another request made.
func (s *Service) repeated(o Order, userID uuid.UUID, n NewOrder) (Order, error) {
	o, err := s.owned(o, userID)
	if err != nil {
		return Order{}, err
	}
	if o.Request().Fingerprint() != n.Fingerprint() {
		return Order{}, ErrKeyReused
	}
	return o, nil
}

func (s *Service) owned(o Order, userID uuid.UUID) (Order, error) {
	if o.UserID != userID {
		return Order{}, ErrNotFound
	}
	return o, nil
}

// checkQuote makes sure inventory priced exactly the lines asked for, in their order.
func checkQuote(n NewOrder, q Quote) error {
	if len(q.Lines) != len(n.Lines) {
		return fmt.Errorf("quote has %d lines, %d asked for", len(q.Lines), len(n.Lines))
	}
	var total int64
	for i, l := range q.Lines {
		if l.ProductID != n.Lines[i].ProductID || l.Quantity != n.Lines[i].Quantity || l.UnitPriceCents < 0 {
			return fmt.Errorf("quote line %d is %v, %v asked for", i, l, n.Lines[i])
		}
		total += l.Amount()
	}
	if total != q.TotalCents || q.Currency == "" {
		return fmt.Errorf("quote total %d %q, lines sum to %d", q.TotalCents, q.Currency, total)
	}
	return nil
}

// Get returns the user's order: ErrNotFound when there is none or it is someone
// else's.
func (s *Service) Get(ctx context.Context, userID, id uuid.UUID) (Order, error) {
	o, err := s.store.Order(ctx, id)
	if err != nil {
		return Order{}, err
	}
	return s.owned(o, userID)
}

// List returns a page of the user's orders, newest first (created_at, then id), with
// one order more than p.Limit when another page follows (for page.Next).
func (s *Service) List(ctx context.Context, userID uuid.UUID, p page.Request) ([]Order, error) {
	return s.store.OrdersByUser(ctx, userID, p)
}

// Cancel cancels the user's confirmed order: a compensation saga refunds the payment
// and restocks the products, then the order is cancelled with ReasonCustomerRequest.
// The order is cancelling from then on; the saga runs inline under the deadline, and
// if it cannot finish, the order is returned still cancelling and recovery finishes it.
//
// Errors: ErrNotFound (none, or not the user's), ErrNotCancellable (not confirmed: a
// cancellation under way or done included), the store's.
func (s *Service) Cancel(ctx context.Context, userID, id uuid.UUID) (Order, error) {
	o, err := s.Get(ctx, userID, id)
	if err != nil {
		return Order{}, err
	}
	if o.Status != StatusConfirmed {
		return Order{}, ErrNotCancellable
	}
	// StartCancel decides again with the rows locked: this read may be stale.
	c, err := s.store.UpdateSaga(ctx, id, func(o Order, sg Saga) (Change, error) {
		return StartCancel(o, sg, s.timestamp())
	})
	switch {
	case errors.Is(err, ErrSagaBusy):
		// A confirmed order's saga is held by a worker only while a cancellation is
		// being driven.
		return Order{}, ErrNotCancellable
	case err != nil:
		return Order{}, err
	}
	s.log.InfoContext(ctx, "order cancellation requested", "order_id", id)
	s.notifier.Notify(context.WithoutCancel(ctx), StatusChange{OrderID: id, Status: c.Order.Status})
	return s.inlined(ctx, c.Order, func(ctx context.Context) (Order, error) { return s.saga.Drive(ctx, id) })
}

// timestamp is now at the database's precision, so that what a call returns equals
// what is read back later.
func (s *Service) timestamp() time.Time { return dbTime(s.now()) }

// Sagas lists sagas for operators: those in state, or every unfinished one when
// state is "", oldest first (created_at, then order id), with their step logs; one
// saga more than p.Limit when another page follows (for page.Next).
func (s *Service) Sagas(ctx context.Context, state SagaState, p page.Request) ([]SagaView, error) {
	var states []SagaState
	if state != "" {
		states = []SagaState{state}
	}
	return s.store.Sagas(ctx, states, p)
}

// Saga is the order's saga for operators, with the order and every entry of its step
// log, oldest first (Sagas shows only the latest ones). It returns ErrNotFound for an
// unknown order, whoever's it is.
func (s *Service) Saga(ctx context.Context, id uuid.UUID) (SagaView, error) {
	return s.store.Saga(ctx, id)
}
