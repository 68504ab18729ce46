package payment

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/page"
)

// Store keeps payments and writes each status change's event in the same transaction
// as the change: payment.captured, payment.declined or payment.refunded. Implementations
// translate their own errors into the domain's: the ones named below, or an
// apperr.Unavailable error when the storage cannot be reached.
type Store interface {
	// CreatePending stores p, a pending payment, unless its order has a payment
	// already; then it changes nothing and returns nil. It returns ErrVoided when the
	// order was voided.
	CreatePending(ctx context.Context, p Payment) error
	// Void marks order as never to be charged, unless it has a payment; it reports
	// whether the order is now void. It and CreatePending exclude each other per order.
	Void(ctx context.Context, order uuid.UUID, at time.Time) (bool, error)
	// Record stores next, a payment the processor has just moved out of status from,
	// with the event of its new status, provided the stored payment is still in status
	// from; it returns next. When the stored payment has moved on already (a
	// concurrent request recorded the same processor outcome first), it stores nothing
	// and returns the payment as stored. It returns ErrNotFound when there is no such
	// payment. It holds nothing once it returns: it is one short transaction.
	Record(ctx context.Context, from Status, next Payment) (Payment, error)
	// DeleteVoids deletes the voids made before before and returns how many it
	// deleted; those orders can be charged again.
	DeleteVoids(ctx context.Context, before time.Time) (int64, error)
	// Pending returns the payments still pending that were created before before,
	// oldest first (created_at, then id), after the cursor when set, up to limit.
	Pending(ctx context.Context, before time.Time, after *page.Cursor, limit int) ([]Payment, error)
	// ByOrder returns the payment of order, or ErrNotFound.
	ByOrder(ctx context.Context, order uuid.UUID) (Payment, error)
	// ListByOrder returns user's settled payments (not pending ones) for order, oldest
	// first (created_at, then id), after pr.After when set, up to pr.Limit+1 of them
	// (one more than a page, so that page.Next can tell whether another follows).
	ListByOrder(ctx context.Context, user, order uuid.UUID, pr page.Request) ([]Payment, error)
}

// Service charges and refunds orders.
type Service struct {
	store     Store
	processor Processor
	now       func() time.Time
	timeout   time.Duration
}

// NewService makes the service; now tells the time (nil is time.Now; tests pass their
// own). The processor calls of one request may take up to timeout together; then the
// request fails with apperr.Timeout. Recording each outcome adds at most a second
// (recordTimeout), so a request answers within timeout plus its database work.
func NewService(store Store, processor Processor, now func() time.Time, timeout time.Duration) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, processor: processor, now: now, timeout: timeout}
}

// Charge charges an order once. A repeat of the same request answers the first
// outcome, without charging again, even when the repeats arrive together; a request
// with the order's key but other content is ErrKeyReused. A declined charge is not an
// error: the payment comes back with StatusDeclined (see Payment.Declined). When the
// processor cannot be reached the error is apperr.Unavailable (or Timeout) and the
// payment stays pending: repeating the request (or the sweep, SettlePending) finishes
// it. See the package doc.
func (s *Service) Charge(ctx context.Context, c ChargeRequest) (Payment, error) {
	if err := s.store.CreatePending(ctx, NewPending(newID(), c, s.stamp())); err != nil {
		return Payment{}, err
	}
	p, err := s.store.ByOrder(ctx, c.OrderID)
	if err != nil {
		return Payment{}, err
	}
	if !p.Matches(c) {
		return Payment{}, ErrKeyReused
	}
	return s.settle(ctx, p)
}

// Payment returns the payment of order, or ErrNotFound. A pending payment (a charge
// interrupted, or still in progress) is settled first by asking the processor again
// with the charge's key, so that the caller learns the real outcome. When the
// processor cannot be reached the error is apperr.Unavailable (or Timeout).
func (s *Service) Payment(ctx context.Context, order uuid.UUID) (Payment, error) {
	p, err := s.store.ByOrder(ctx, order)
	if err != nil {
		return Payment{}, err
	}
	return s.settle(ctx, p)
}

// OfOrder returns the payments of order, whoever's it is, as they are stored: at most
// one (a charge is idempotent on the order), none when the order was never charged.
// Unlike Payment it never asks the processor: a pending payment shows as pending. It
// is the operators' view.
func (s *Service) OfOrder(ctx context.Context, order uuid.UUID) ([]Payment, error) {
	p, err := s.store.ByOrder(ctx, order)
	switch {
	case errors.Is(err, ErrNotFound):
		return []Payment{}, nil
	case err != nil:
		return nil, err
	}
	return []Payment{p}, nil
}

// Refund gives back the money of order's captured payment, once: repeats, and refunds
// of a declined payment, change nothing and return the payment as it is. A pending
// payment is settled first (so money taken by an interrupted charge comes back too).
// It returns ErrNotFound when the order was never charged (and voids it: a later charge
// is ErrVoided), and apperr.Unavailable (or Timeout) when the processor cannot be
// reached.
func (s *Service) Refund(ctx context.Context, order uuid.UUID) (Payment, error) {
	// One processor budget for the whole refund: settling a pending payment and then
	// refunding it are two calls, and together they must still answer within the
	// time the caller allows (see NewService).
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	p, err := s.Payment(ctx, order)
	if errors.Is(err, ErrNotFound) {
		// Nothing charged (yet). Void the order, so that a charge still on its way —
		// sent before the saga gave up and compensated — cannot take money for an
		// order that is cancelled.
		voided, verr := s.store.Void(ctx, order, s.stamp())
		if verr != nil || voided {
			return Payment{}, cmp.Or(verr, err)
		}
		p, err = s.Payment(ctx, order) // a charge got in first: refund it like any other
	}
	if err != nil || p.Status != StatusCaptured {
		return p, err
	}
	// No transaction is open here: concurrent refunds may all reach the processor,
	// which refunds once per key, and Record keeps one of their outcomes.
	if err := s.processor.Refund(ctx, "refund_"+p.ID.String(), p); err != nil {
		return Payment{}, processorError(err, "refund")
	}
	next, err := p.Refund(s.stamp())
	if err != nil {
		return Payment{}, err
	}
	return s.record(ctx, StatusCaptured, next)
}

// SweepBatch is how many pending payments the sweep reads at a time.
const SweepBatch = 100

// SettlePending settles every payment pending for longer than age — one whose charge
// was interrupted (its process died, or the processor failed) and that nobody asked
// about since — by asking the processor again with its key and recording the outcome
// and its event, as a look-up would. Payments younger than age are left to the
// request charging them. It goes oldest first and returns how many it settled. It
// stops at the first payment the processor or the database cannot settle for being
// unreachable (the next sweep tries again; nothing is lost meanwhile), and carries on
// past any other failure, which it reports, with how many failed, when it is done.
// Running it concurrently with anything, itself included, is safe.
func (s *Service) SettlePending(ctx context.Context, age time.Duration) (int, error) {
	before := s.stamp().Add(-age)
	var after *page.Cursor
	settled, failed := 0, 0
	var first error
	for {
		batch, err := s.store.Pending(ctx, before, after, SweepBatch)
		if err != nil {
			return settled, err
		}
		for _, p := range batch {
			// By order, not the batch's copy: it may have been settled meanwhile.
			got, err := s.Payment(ctx, p.OrderID)
			switch code := apperr.CodeOf(err); {
			case err == nil:
				if got.Status != StatusPending {
					settled++
				}
			case code == apperr.Unavailable || code == apperr.Timeout || ctx.Err() != nil:
				return settled, fmt.Errorf("settle payment %s: %w", p.ID, err)
			default:
				failed++
				first = cmp.Or(first, fmt.Errorf("settle payment %s: %w", p.ID, err))
			}
		}
		if len(batch) < SweepBatch {
			break
		}
		last := batch[len(batch)-1]
		after = &page.Cursor{Time: last.CreatedAt, ID: last.ID}
	}
	if first != nil {
		return settled, fmt.Errorf("%d pending payments not settled, the first: %w", failed, first)
	}
	return settled, nil
}

// ForgetVoids deletes the voids older than retention and returns how many it deleted.
// A void stops a charge request that was still on its way when the saga gave up and
// refunded: such a request arrives within seconds or minutes, never days later, so a
// void older than a generous retention protects nothing and only takes space.
func (s *Service) ForgetVoids(ctx context.Context, retention time.Duration) (int64, error) {
	return s.store.DeleteVoids(ctx, s.stamp().Add(-retention))
}

// List returns user's payments for order, a page at a time (see Store.ListByOrder);
// another user's order has none.
func (s *Service) List(ctx context.Context, user, order uuid.UUID, pr page.Request) ([]Payment, error) {
	return s.store.ListByOrder(ctx, user, order, pr)
}

// settle asks the processor for the outcome of a pending payment and records it; any
// other payment is returned as it is. No transaction is open during the processor
// call, so concurrent settles of one payment (identical charges, a look-up, a refund,
// the sweep) may all ask: the processor answers each the same, as the key is the
// payment's, and Record stores one outcome and one event.
func (s *Service) settle(ctx context.Context, p Payment) (Payment, error) {
	if p.Status != StatusPending {
		return p, nil
	}
	pctx, cancel := context.WithTimeout(ctx, s.timeout)
	o, err := s.processor.Charge(pctx, p.ID.String(), p.Request())
	cancel()
	if err != nil {
		return Payment{}, processorError(err, "charge")
	}
	next, err := p.Settle(o, s.stamp())
	if err != nil {
		return Payment{}, err
	}
	return s.record(ctx, StatusPending, next)
}

// recordTimeout bounds recording an outcome the processor has given: one short
// transaction, normally milliseconds. Kept small so that a request still answers
// within what its caller allows (see NewService); an outcome not recorded in time is
// recorded by the next request or the sweep.
const recordTimeout = time.Second

// record stores an outcome the processor has given (see Store.Record). The processor
// has acted by now, so the caller hanging up must not stop the outcome from being
// written: it would stay pending until the next request or the sweep asked again.
func (s *Service) record(ctx context.Context, from Status, next Payment) (Payment, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return s.store.Record(ctx, from, next)
}

// processorError names the processor as the failing dependency, so the answer is a
// 503 (or 504) the saga retries, never a database error or a bare 500.
func processorError(err error, op string) error {
	var ae *apperr.Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return apperr.Wrap(fmt.Errorf("processor %s: %w", op, err), apperr.Timeout, "the payment processor did not answer in time")
	}
	return apperr.Wrap(fmt.Errorf("processor %s: %w", op, err), apperr.Unavailable, "the payment processor is unavailable")
}

// stamp is the current time as Postgres keeps it (microseconds, UTC), so that a
// returned payment equals the stored one.
func (s *Service) stamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// newID is a time-ordered UUID (v7), which keeps index inserts local.
func newID() uuid.UUID {
	// NewV7 fails only when crypto/rand does, which since Go 1.24 crashes instead.
	return uuid.Must(uuid.NewV7())
}
