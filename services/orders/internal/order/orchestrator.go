package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Orchestrator drives sagas: it takes a saga's lease, runs its steps against
// inventory and payments one by one, and stores each step's change (with its event)
// before running the next, so a crash at any point leaves a saga that recovery
// resumes where it stopped. Every step is idempotent on the order id, so a step that
// ran but whose change was not stored runs again harmlessly.
type Orchestrator struct {
	store     Store
	inventory Inventory
	payments  Payments
	notifier  Notifier
	recorder  Recorder
	now       func() time.Time
	log       *slog.Logger
	cfg       OrchestratorConfig
}

// OrchestratorConfig tunes an Orchestrator.
type OrchestratorConfig struct {
	Policy Policy
	// Owner names this process in leases (for operators); default a random id.
	Owner string
	// LeaseTTL is how long a claimed saga stays claimed without a change being stored.
	// It must outlast the longest step (a client call with its retries, twice for a
	// charge whose answer was lost); each step is cut off at half of it. Default 45s:
	// a step then gets 22.5s, more than three 5s attempts at payments with their
	// back-off (docs/saga.md, "Timeouts").
	LeaseTTL time.Duration
	// RecoverBatch is how many sagas one recovery pass looks at; default 500.
	RecoverBatch int
	// RecoverParallel is how many sagas a recovery pass drives at once; default 8.
	RecoverParallel int
}

// Deps are an Orchestrator's collaborators. Notifier, Recorder and Now may be nil.
type Deps struct {
	Store     Store
	Inventory Inventory
	Payments  Payments
	Notifier  Notifier
	Recorder  Recorder
	// Now tells the time (nil is time.Now); tests move it forward to pass the
	// charge budget or the alarm delay without waiting.
	Now func() time.Time
	Log *slog.Logger
}

// NewOrchestrator makes an Orchestrator.
func NewOrchestrator(d Deps, cfg OrchestratorConfig) *Orchestrator {
	if cfg.Policy == (Policy{}) {
		cfg.Policy = DefaultPolicy
	}
	if cfg.Policy.MaxHardFailures <= 0 {
		cfg.Policy.MaxHardFailures = DefaultPolicy.MaxHardFailures
	}
	if cfg.Policy.AlarmAfter <= 0 {
		cfg.Policy.AlarmAfter = DefaultPolicy.AlarmAfter
	}
	if cfg.Owner == "" {
		cfg.Owner = uuid.NewString()
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 45 * time.Second
	}
	if cfg.RecoverBatch <= 0 {
		cfg.RecoverBatch = 500
	}
	if cfg.RecoverParallel <= 0 {
		cfg.RecoverParallel = 8
	}
	if d.Notifier == nil {
		d.Notifier = noNotifier{}
	}
	if d.Recorder == nil {
		d.Recorder = noRecorder{}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Orchestrator{store: d.Store, inventory: d.Inventory, payments: d.Payments, notifier: d.Notifier,
		recorder: d.Recorder, now: d.Now, log: d.Log, cfg: cfg}
}

// storeTimeout bounds a store write made after the caller's context ended: the step's
// change must be recorded even when the inline deadline cut the step short.
const storeTimeout = 5 * time.Second

// Drive runs the order's saga until it finishes, a step fails transiently (recovery
// tries again later), or ctx ends; it returns the order as it then is. A saga another
// worker holds, or one already finished, is left alone and its order returned. Errors
// are the store's (ErrNotFound for an unknown order).
func (o *Orchestrator) Drive(ctx context.Context, id uuid.UUID) (Order, error) {
	lease, ord, saga, err := o.store.ClaimSaga(ctx, id, o.cfg.Owner, o.cfg.LeaseTTL)
	switch {
	case errors.Is(err, ErrSagaBusy), errors.Is(err, ErrSagaDone):
		return o.store.Order(ctx, id)
	case err != nil:
		return Order{}, err
	}
	return o.Continue(ctx, lease, ord, saga)
}

// NewLease is the lease a new saga is created under (Store.CreateOrder), for its
// creator to drive it with Continue.
func (o *Orchestrator) NewLease(id uuid.UUID) Lease {
	return Lease{OrderID: id, Owner: o.cfg.Owner, TTL: o.cfg.LeaseTTL}
}

// Continue is Drive for a saga whose lease the caller already holds (ord and saga
// being its state); the lease is given back at the end.
func (o *Orchestrator) Continue(ctx context.Context, lease Lease, ord Order, saga Saga) (Order, error) {
	id := ord.ID
	defer func() {
		if saga.State == SagaDone {
			return // the change that finished it gave the lease back (Store.Apply)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		defer cancel()
		if err := o.store.ReleaseSaga(rctx, lease); err != nil {
			// The lease simply runs out.
			o.log.WarnContext(ctx, "saga lease not released", "order_id", id, "err", err)
		}
	}()
	// The compensation steps that failed in this pass: the others are still run.
	var tried []Step
	for ctx.Err() == nil {
		step := Plan(ord, saga, o.timestamp(), o.cfg.Policy, tried...)
		if step == StepNone {
			break
		}
		out := o.run(ctx, step, ord, saga)
		c := Advance(ord, saga, step, out, o.timestamp(), o.cfg.Policy)
		if err := o.apply(ctx, lease, c); err != nil {
			return ord, err
		}
		o.observe(ctx, saga, c)
		compensating := saga.State.Compensating()
		ord, saga = c.Order, c.Saga
		if out.Kind == OutcomeFailed {
			if !compensating {
				break // the dependency is down or slow: recovery tries again later
			}
			tried = append(tried, step)
		}
	}
	return ord, nil
}

// timestamp is now at the database's precision, so that what the saga returns equals
// what is read back later.
func (o *Orchestrator) timestamp() time.Time { return dbTime(o.now()) }

func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// apply stores c even if ctx has ended: what a step did must not be forgotten.
func (o *Orchestrator) apply(ctx context.Context, l Lease, c Change) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := o.store.Apply(sctx, l, c); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			o.log.WarnContext(ctx, "saga lease lost; another worker drives it now", "order_id", c.Order.ID, "step", c.Log.Step)
		}
		return fmt.Errorf("store saga step %s of order %s: %w", c.Log.Step, c.Order.ID, err)
	}
	return nil
}

// observe publishes, logs and counts what a stored change did.
func (o *Orchestrator) observe(ctx context.Context, before Saga, c Change) {
	attrs := []any{"order_id", c.Order.ID, "step", c.Log.Step, "attempt", c.Log.Attempt, "outcome", c.Log.Outcome}
	if c.Log.Error != "" {
		attrs = append(attrs, "err", c.Log.Error)
	}
	if c.Log.Outcome == OutcomeFailed {
		o.log.WarnContext(ctx, "saga step failed; will retry", attrs...)
	} else {
		o.log.InfoContext(ctx, "saga step", attrs...)
	}
	if c.StatusChanged {
		o.notifier.Notify(context.WithoutCancel(ctx), StatusChange{OrderID: c.Order.ID, Status: c.Order.Status, CancelReason: c.Order.CancelReason})
	}
	if before.State != c.Saga.State && (c.Saga.State == SagaCompensationFailed || c.Saga.State == SagaStuck) {
		o.log.ErrorContext(ctx, "saga step keeps failing; an operator should look", "order_id", c.Order.ID,
			"state", c.Saga.State, "step", c.Log.Step, "attempts", c.Saga.Attempts, "failing_since", c.Saga.FailingSince,
			"err", c.Log.Error)
		o.recorder.Alarmed(c.Saga.State)
	}
	if before.State != SagaDone && c.Saga.State == SagaDone {
		o.recorder.SagaEnded(c.Order.Status, c.Order.CancelReason, c.Saga.FinishedAt.Sub(c.Order.CreatedAt))
		o.log.InfoContext(ctx, "saga finished", "order_id", c.Order.ID, "status", c.Order.Status, "cancel_reason", c.Order.CancelReason)
	}
}

// run makes one attempt at step. It never takes longer than half the lease, so the
// change is stored while the lease is still ours.
func (o *Orchestrator) run(ctx context.Context, step Step, ord Order, s Saga) Outcome {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.LeaseTTL/2)
	defer cancel()
	switch step {
	case StepReserve:
		return o.reserve(ctx, ord)
	case StepCharge:
		return o.charge(ctx, ord, s)
	case StepCommit:
		// Commit refused means the reservation is gone (expired and released): the
		// money is given back and the order cancelled as timed out.
		return classify(o.inventory.Commit(ctx, ord.ID), ReasonTimeout)
	case StepRelease:
		return classify(o.inventory.Release(ctx, ord.ID), ReasonNone)
	case StepRefund:
		return o.refund(ctx, ord)
	case StepExpire:
		return Outcome{Kind: OutcomeOK, Err: fmt.Errorf("not charged within the charge budget of %s", o.cfg.Policy.ChargeBudget)}
	}
	return Outcome{Kind: OutcomeFailed, Err: fmt.Errorf("no such step %q", step)}
}

// reserve reserves the order's stock and checks that the reservation's prices are
// the ones the order was quoted at: the quoted total is what is charged, so a price
// that changed in between cancels the order (and releases what was reserved) rather
// than charging what the reservation does not say.
func (o *Orchestrator) reserve(ctx context.Context, ord Order) Outcome {
	lines, err := o.inventory.Reserve(ctx, ord.ID, ord.Request().Lines)
	if err != nil {
		return classify(err, ReasonOutOfStock)
	}
	if err := samePrices(ord.Lines, lines); err != nil {
		return Outcome{Kind: OutcomeRefused, Reason: ReasonPriceChanged, Reserved: true, Err: err}
	}
	return Outcome{Kind: OutcomeOK}
}

// samePrices reports how the reserved lines differ from the order's, if they do.
func samePrices(ordered, reserved []Line) error {
	if len(reserved) != len(ordered) {
		return fmt.Errorf("the reservation has %d lines, the order %d", len(reserved), len(ordered))
	}
	for _, want := range ordered {
		i := slices.IndexFunc(reserved, func(l Line) bool { return l.ProductID == want.ProductID })
		if i < 0 || reserved[i] != want {
			return fmt.Errorf("product %s was quoted as %d × %d cents, reserved as %v", want.ProductID, want.Quantity, want.UnitPriceCents, reserved)
		}
	}
	return nil
}

// charge takes the payment. When an earlier charge's answer was lost, payments is
// asked what became of it first: a second charge would be idempotent too, but asking
// is how the saga learns an unknown outcome.
func (o *Orchestrator) charge(ctx context.Context, ord Order, s Saga) Outcome {
	if s.Charge == ChargeUnknown {
		if out, known := o.lookupCharge(ctx, ord.ID); known {
			return out
		}
	}
	p, err := o.payments.Charge(ctx, ChargeRequest{
		OrderID: ord.ID, UserID: ord.UserID, AmountCents: ord.TotalCents, Currency: ord.Currency, PaymentMethod: ord.PaymentMethod,
	})
	switch {
	case err == nil:
		return chargeOutcome(p)
	case refused(err):
		reason := declineReason(apperr.ReasonOf(err))
		if apperr.CodeOf(err) == apperr.PaymentRequired {
			return Outcome{Kind: OutcomeRefused, Reason: reason, Charge: ChargeDeclined, Err: err}
		}
		// Refused for another reason (a request payments finds invalid, an order it
		// voided): whether a charge exists is then unknown, and compensation settles it.
		return Outcome{Kind: OutcomeRefused, Reason: ReasonPaymentDeclined, Charge: ChargeUnknown, Err: err}
	}
	// The charge may have been made, whatever the failure: payments can answer 503
	// after the processor took the money. Ask at once; payments keeps its answer if
	// the charge's went missing on the way back.
	if out, known := o.lookupCharge(ctx, ord.ID); known {
		return out
	}
	return Outcome{Kind: OutcomeFailed, Charge: ChargeUnknown, Err: err, Hard: hard(err)}
}

// lookupCharge asks payments for the order's charge. known is false when payments
// has none (the charge is to be made) or could not say.
func (o *Orchestrator) lookupCharge(ctx context.Context, orderID uuid.UUID) (Outcome, bool) {
	p, err := o.payments.Lookup(ctx, orderID)
	if err != nil {
		return Outcome{}, false
	}
	return chargeOutcome(p), true
}

func chargeOutcome(p Payment) Outcome {
	switch p.Status {
	case PaymentCaptured:
		return Outcome{Kind: OutcomeOK, Charge: ChargeCaptured}
	case PaymentRefused:
		reason := declineReason(p.DeclineCode)
		return Outcome{Kind: OutcomeRefused, Reason: reason, Charge: ChargeDeclined, Err: fmt.Errorf("declined: %s", reason)}
	case PaymentRefunded:
		// Refunded before it was confirmed (an operator's hand): it cannot confirm.
		return Outcome{Kind: OutcomeRefused, Reason: ReasonTimeout, Charge: ChargeRefunded, Err: errors.New("the payment was refunded")}
	}
	return Outcome{Kind: OutcomeFailed, Charge: ChargeUnknown, Err: fmt.Errorf("payments answered an unknown payment status %q", p.Status)}
}

// refund settles the order's money: it gives back a captured charge, and when no
// charge is known it makes sure none will be taken. Payments' refund does both: it
// settles an interrupted charge with the processor first and refunds it, and for an
// order with no charge it voids the order, so a charge request still on its way is
// refused. So no waiting and no guessing: one idempotent call.
func (o *Orchestrator) refund(ctx context.Context, ord Order) Outcome {
	p, err := o.payments.Refund(ctx, ord.ID)
	switch {
	case err != nil:
		return Outcome{Kind: OutcomeFailed, Err: err, Hard: hard(err)}
	case p.Status == PaymentRefunded:
		return Outcome{Kind: OutcomeOK, Charge: ChargeRefunded}
	case p.Status == PaymentCaptured:
		// The money is still taken: the order must not be cancelled yet.
		return Outcome{Kind: OutcomeFailed, Err: errors.New("payments answered the refund with the payment still captured")}
	case p.Status == PaymentRefused:
		return Outcome{Kind: OutcomeOK, Charge: ChargeDeclined}
	}
	// Never charged, and now never to be: nothing to give back.
	return Outcome{Kind: OutcomeOK, Charge: ChargeNone}
}

// Recover makes one pass over the unfinished sagas nobody holds and drives each as far
// as it goes, several at once. It returns how many it drove; only a failure to list
// them is an error (each saga's own failure is logged and left for the next pass).
func (o *Orchestrator) Recover(ctx context.Context) (int, error) {
	ids, err := o.store.SagasToRecover(ctx, o.cfg.RecoverBatch)
	if err != nil {
		return 0, err
	}
	sem := make(chan struct{}, o.cfg.RecoverParallel)
	var wg sync.WaitGroup
	for _, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := o.Drive(ctx, id); err != nil {
				o.log.WarnContext(ctx, "saga recovery failed; next pass retries", "order_id", id, "err", err)
			}
		}()
	}
	wg.Wait()
	return len(ids), ctx.Err()
}

// RecoverEvery runs a recovery pass at once and then every period until ctx ends.
// It runs in the process, not as a queued task: finishing sagas must not depend on
// Redis, whose outage may be what left them unfinished. Leases keep passes of several
// replicas from driving one saga twice.
func (o *Orchestrator) RecoverEvery(ctx context.Context, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		n, err := o.Recover(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			o.log.WarnContext(ctx, "saga recovery pass failed; the next one retries", "err", err)
		case n > 0:
			o.log.InfoContext(ctx, "saga recovery pass", "sagas", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// classify turns a client's answer into an outcome: nil is ok, a business answer is
// a refusal with reason, anything else a failure to retry.
func classify(err error, reason CancelReason) Outcome {
	switch {
	case err == nil:
		return Outcome{Kind: OutcomeOK}
	case refused(err):
		return Outcome{Kind: OutcomeRefused, Reason: reason, Err: err}
	}
	return Outcome{Kind: OutcomeFailed, Err: err, Hard: hard(err)}
}

// hard reports whether a failure is the dependency refusing the call itself (400,
// 401, 403, 405, 413, 415): a bug or a misconfiguration, which retrying does not mend.
// Time-outs, 5xx and an open breaker are not: they mend when the dependency does.
func hard(err error) bool {
	switch apperr.CodeOf(err) {
	case apperr.Malformed, apperr.Unauthorized, apperr.Forbidden, apperr.NotAllowed, apperr.TooLarge,
		apperr.UnsupportedMediaType:
		return true
	}
	return false
}

// refused reports whether err is a business answer that will not change on a retry:
// out of stock, declined, invalid, not found. Other client errors (a 400 or 401 from a
// bug or a misconfiguration) are failures to retry, never a reason to cancel.
func refused(err error) bool {
	switch apperr.CodeOf(err) {
	case apperr.Conflict, apperr.PaymentRequired, apperr.Invalid, apperr.NotFound:
		return true
	}
	return false
}

func declineReason(code string) CancelReason {
	if CancelReason(code) == ReasonInsufficientFunds {
		return ReasonInsufficientFunds
	}
	return ReasonPaymentDeclined
}

type noNotifier struct{}

func (noNotifier) Notify(context.Context, StatusChange) {}

type noRecorder struct{}

func (noRecorder) SagaEnded(Status, CancelReason, time.Duration) {}
func (noRecorder) Alarmed(SagaState)                             {}
