package order

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
)

// The create-order saga (docs/saga.md draws it):
//
//	pending --reserve--> reserved --charge--> paid --commit--> confirmed
//	   | out_of_stock       | declined, or the      | reservation_released
//	   | price_changed      v charge budget spent    v (expired)
//	   v              cancelling: release stock and settle the money,
//	cancelled <------ each on its own, until both are done
//
// This file is the pure part: the saga's persisted state, which step comes next
// (Plan) and what a step's outcome changes (Advance). orchestrator.go runs the steps
// against inventory and payments and persists each change.

// SagaState is where a saga is as a whole.
type SagaState string

// The saga states.
const (
	// SagaRunning drives the order forward: reserve, charge, commit.
	SagaRunning SagaState = "running"
	// SagaStuck is running whose next step keeps failing: refused by a dependency
	// in a way a retry does not mend (a 400 or 401: a bug or a misconfiguration)
	// MaxHardFailures times in a row, or failing for longer than AlarmAfter. An
	// operator should look (GET /admin/sagas?state=stuck). Recovery keeps retrying
	// it, and a step that then succeeds puts it back to running.
	SagaStuck SagaState = "stuck"
	// SagaCompensating undoes what was done (release, refund) before the order is
	// cancelled with the saga's Reason.
	SagaCompensating SagaState = "compensating"
	// SagaCompensationFailed is compensating whose steps keep failing, by the same
	// rule as SagaStuck: an operator should look (GET
	// /admin/sagas?state=compensation_failed). Recovery keeps retrying it, and a step
	// that then succeeds puts it back to compensating.
	SagaCompensationFailed SagaState = "compensation_failed"
	// SagaDone has finished: the order is confirmed or cancelled.
	SagaDone SagaState = "done"
)

// SagaStates lists every state, for the admin filter.
var SagaStates = []SagaState{SagaRunning, SagaStuck, SagaCompensating, SagaCompensationFailed, SagaDone}

// ParseSagaState reads a saga state. It returns an apperr.Invalid error naming the
// states.
func ParseSagaState(s string) (SagaState, error) {
	for _, st := range SagaStates {
		if string(st) == s {
			return st, nil
		}
	}
	return "", apperr.E(apperr.Invalid, "must be one of running, stuck, compensating, compensation_failed, done")
}

// Running reports whether the saga is driving the order forward.
func (s SagaState) Running() bool { return s == SagaRunning || s == SagaStuck }

// Compensating reports whether the saga is undoing the order.
func (s SagaState) Compensating() bool {
	return s == SagaCompensating || s == SagaCompensationFailed
}

// Step names one step of the saga; the step log records each attempt of each.
type Step string

// The steps. Reserve, charge and commit go forward; release and refund compensate.
// Expire is local: the charge budget ran out, so the saga turns to compensation.
// Cancel is the customer's request to cancel a confirmed order, which starts a
// compensation too.
const (
	StepNone    Step = ""
	StepReserve Step = "reserve"
	StepCharge  Step = "charge"
	StepCommit  Step = "commit"
	StepRelease Step = "release"
	StepRefund  Step = "refund"
	StepExpire  Step = "expire"
	StepCancel  Step = "cancel"
)

// ChargeState is what the saga knows about the order's payment.
type ChargeState string

// The charge states.
const (
	// ChargeNone: no charge was made (or one that might have been was voided).
	ChargeNone ChargeState = "none"
	// ChargeUnknown: a charge may have been made but its answer never came (a
	// failed call, a 503 that came after the money was taken, a process that died
	// while charging). Going forward it is resolved by asking payments (GET
	// /internal/charges/{order_id}); a compensation settles it with a refund, which
	// gives back money that was taken and voids the order if none was.
	ChargeUnknown ChargeState = "unknown"
	// ChargeCaptured: the money was taken.
	ChargeCaptured ChargeState = "captured"
	// ChargeDeclined: the card was declined; no money was taken.
	ChargeDeclined ChargeState = "declined"
	// ChargeRefunded: the money was taken and given back.
	ChargeRefunded ChargeState = "refunded"
)

// ParseChargeState reads a stored charge state.
func ParseChargeState(s string) (ChargeState, error) {
	switch c := ChargeState(s); c {
	case ChargeNone, ChargeUnknown, ChargeCaptured, ChargeDeclined, ChargeRefunded:
		return c, nil
	}
	return "", fmt.Errorf("unknown charge state %q", s)
}

// Saga is the persisted state of one order's saga. The next step is not stored: it
// follows from the order's status and these fields (Saga.Next), so the two cannot
// disagree.
type Saga struct {
	OrderID uuid.UUID
	State   SagaState
	// Reason is the cancel reason the order will get once compensation finishes.
	Reason CancelReason
	Charge ChargeState
	// Reserved means a reservation may exist and compensation must release it
	// (releasing one that does not exist is harmless).
	Reserved bool
	// Attempts counts the failed attempts of the next step so far.
	Attempts int
	// Failures counts the hard failures in a row (Outcome.Hard): answers a retry
	// does not mend.
	Failures int
	// FailingSince is when the current run of failed attempts began; zero while the
	// saga is making progress.
	FailingSince time.Time
	LastError    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	FinishedAt   time.Time // zero until done
}

// NewSaga is the saga of a freshly created order.
func NewSaga(o Order) Saga {
	return Saga{OrderID: o.ID, State: SagaRunning, Charge: ChargeNone, CreatedAt: o.CreatedAt, UpdatedAt: o.CreatedAt}
}

// Next is the step the saga runs next for order o, StepNone when it has finished.
func (s Saga) Next(o Order) Step {
	if s.State.Compensating() {
		if undo := s.Undo(); len(undo) > 0 {
			return undo[0]
		}
		return StepNone
	}
	if s.State.Running() {
		switch o.Status {
		case StatusPending:
			return StepReserve
		case StatusReserved:
			return StepCharge
		case StatusPaid:
			return StepCommit
		}
	}
	return StepNone
}

// Undo lists the compensation steps still to run: release while stock may be held,
// refund while money may be taken. They are independent of each other: each is
// retried on its own, so that a customer's money does not wait for inventory, nor
// stock for payments.
func (s Saga) Undo() []Step {
	var steps []Step
	if s.Reserved {
		steps = append(steps, StepRelease)
	}
	if s.Charge == ChargeCaptured || s.Charge == ChargeUnknown {
		steps = append(steps, StepRefund)
	}
	return steps
}

// Policy tunes the saga.
type Policy struct {
	// ChargeBudget is how long after its creation an order may still be charged
	// (CHARGE_BUDGET); a saga that has not charged by then compensates, and the order
	// is cancelled with ReasonTimeout.
	ChargeBudget time.Duration
	// AlarmAfter is how long a step may keep failing before the saga is marked stuck
	// or compensation_failed (SAGA_ALARM_AFTER): long enough that a dependency's
	// restart or a network blip does not call an operator.
	AlarmAfter time.Duration
	// MaxHardFailures is how many hard failures in a row (a dependency refusing the
	// call itself: 400, 401, 403) mark the saga at once: waiting will not mend them.
	MaxHardFailures int
}

// DefaultPolicy is the saga's policy unless configured otherwise.
var DefaultPolicy = Policy{ChargeBudget: 2 * time.Minute, AlarmAfter: 5 * time.Minute, MaxHardFailures: 3}

// Plan is the step to run now: the next step, except that an order not yet charged
// whose charge budget has run out expires instead, and that a compensation skips the
// steps that already failed in this pass (tried) to run the others.
func Plan(o Order, s Saga, now time.Time, p Policy, tried ...Step) Step {
	if s.State.Compensating() {
		for _, step := range s.Undo() {
			if !slices.Contains(tried, step) {
				return step
			}
		}
		return StepNone
	}
	step := s.Next(o)
	if (step == StepReserve || step == StepCharge) && now.Sub(o.CreatedAt) > p.ChargeBudget {
		return StepExpire
	}
	return step
}

// OutcomeKind classifies what a step's attempt came to.
type OutcomeKind string

// The outcome kinds, as the step log records them.
const (
	// OutcomeOK: the step did what it set out to.
	OutcomeOK OutcomeKind = "ok"
	// OutcomeRefused: a business answer ended the step for good (out of stock,
	// declined, reservation expired); the saga compensates.
	OutcomeRefused OutcomeKind = "refused"
	// OutcomeFailed: a transient failure (a dependency down or slow); the step is
	// tried again later.
	OutcomeFailed OutcomeKind = "failed"
)

// Outcome is the result of one attempt at a step.
type Outcome struct {
	Kind OutcomeKind
	// Reason is the cancel reason a refusal leads to.
	Reason CancelReason
	// Charge is the charge state learnt by a charge or refund step ("" when the
	// attempt learnt nothing about it).
	Charge ChargeState
	// Err is the failure or refusal, for the step log.
	Err error
	// Hard marks a failure a retry does not mend by itself: the dependency refused
	// the call (400, 401, 403), so someone must fix a bug or a setting.
	Hard bool
	// Reserved marks a refused reserve that reserved all the same (the reservation's
	// prices are not the quote's), so that compensation releases it.
	Reserved bool
}

// StepLog is one attempt of one step, as the saga's step log keeps it.
type StepLog struct {
	Step    Step
	Attempt int
	Outcome OutcomeKind
	Error   string
	At      time.Time
}

// Change is what one step did: the saga and order after it, the step log entry, and
// the event to write with them (if any). The store applies it in one transaction.
type Change struct {
	Order Order
	Saga  Saga
	Log   StepLog
	// Event is one of orderevents' types. The saga declares none of its own, so the
	// two cannot drift apart.
	Event orderevents.Type
	// StatusChanged reports whether the order's status moved (to be published).
	StatusChanged bool
}

// Advance is the saga's state machine: what running step for order o and saga s, with
// outcome out at time now, changes.
func Advance(o Order, s Saga, step Step, out Outcome, now time.Time, p Policy) Change {
	c := Change{Order: o, Saga: s}
	c.Log = StepLog{Step: step, Attempt: s.Attempts + 1, Outcome: out.Kind, At: now}
	if out.Err != nil {
		c.Log.Error = out.Err.Error()
	}
	ns := &c.Saga
	ns.UpdatedAt = now
	if out.Charge != "" {
		ns.Charge = out.Charge
	}
	if out.Kind == OutcomeFailed {
		c.failed(step, out, now, p)
		return c
	}
	// The step is over (done or refused): the next one starts afresh, and a saga
	// marked for an operator is back on track.
	ns.Attempts, ns.Failures, ns.FailingSince, ns.LastError = 0, 0, time.Time{}, ""
	switch ns.State {
	case SagaStuck:
		ns.State = SagaRunning
	case SagaCompensationFailed:
		ns.State = SagaCompensating
	}
	switch step {
	case StepReserve:
		if out.Kind == OutcomeOK {
			ns.Reserved = true
			c.setStatus(StatusReserved, now)
		} else {
			// A refused reservation reserved nothing (all lines or none), unless it
			// says otherwise.
			ns.Reserved = out.Reserved
			c.compensate(out.Reason, now)
		}
	case StepCharge:
		if out.Kind == OutcomeOK {
			c.setStatus(StatusPaid, now)
		} else {
			c.compensate(out.Reason, now)
		}
	case StepCommit:
		if out.Kind == OutcomeOK {
			c.setStatus(StatusConfirmed, now)
			ns.State, ns.FinishedAt = SagaDone, now
			c.Event = orderevents.TypeConfirmed
		} else {
			c.compensate(out.Reason, now)
		}
	case StepExpire:
		// A process may have died during the last step, before it could store the
		// answer: whatever that step may have done is undone too. Both undo steps
		// are idempotent and harmless when there is nothing to undo.
		switch o.Status {
		case StatusPending:
			ns.Reserved = true
		case StatusReserved:
			if ns.Charge == ChargeNone {
				ns.Charge = ChargeUnknown
			}
		}
		c.compensate(ReasonTimeout, now)
	case StepRelease:
		ns.Reserved = false
	case StepRefund:
		if ns.Charge == ChargeUnknown || ns.Charge == ChargeCaptured {
			// Refund answered without learning more: nothing is taken any more.
			ns.Charge = ChargeNone
		}
	}
	if ns.State.Compensating() && len(ns.Undo()) == 0 {
		// Nothing (more) to undo: the order is cancelled in this same change.
		c.setStatus(StatusCancelled, now)
		c.Order.CancelReason = ns.Reason
		ns.State, ns.FinishedAt = SagaDone, now
		c.Event = orderevents.TypeCancelled
	}
	return c
}

// failed records a failed attempt at step: it is retried later, and a run of
// failures that a retry does not seem to mend marks the saga for an operator.
func (c *Change) failed(step Step, out Outcome, now time.Time, p Policy) {
	ns := &c.Saga
	ns.Attempts++
	ns.LastError = c.Log.Error
	if ns.FailingSince.IsZero() {
		ns.FailingSince = now
	}
	if out.Hard {
		ns.Failures++
	}
	switch step {
	case StepReserve:
		// The reservation may have been made before the answer was lost.
		ns.Reserved = true
	case StepCharge:
		// Whatever the failure, the charge may have been made: a 503 can come after
		// the money was taken.
		if ns.Charge == ChargeNone {
			ns.Charge = ChargeUnknown
		}
	}
	if ns.Failures >= p.MaxHardFailures || now.Sub(ns.FailingSince) >= p.AlarmAfter {
		switch ns.State {
		case SagaRunning:
			ns.State = SagaStuck
		case SagaCompensating:
			ns.State = SagaCompensationFailed
		}
	}
}

func (c *Change) setStatus(st Status, now time.Time) {
	c.Order.Status, c.Order.UpdatedAt = st, now
	c.StatusChanged = true
}

// compensate turns the saga to undoing the order, which says so (cancelling) until
// it is cancelled.
func (c *Change) compensate(reason CancelReason, now time.Time) {
	if reason == ReasonNone {
		reason = ReasonTimeout
	}
	c.Saga.State, c.Saga.Reason = SagaCompensating, reason
	c.setStatus(StatusCancelling, now)
}

// StartCancel turns the saga of a confirmed order into a compensation that refunds
// the payment and restocks the products, ending with the order cancelled at the
// customer's request; the order is cancelling meanwhile. It returns
// ErrNotCancellable for an order that is not confirmed (a cancellation under way
// included).
func StartCancel(o Order, s Saga, now time.Time) (Change, error) {
	if o.Status != StatusConfirmed || s.State != SagaDone {
		return Change{}, ErrNotCancellable
	}
	c := Change{Order: o, Saga: s}
	// A confirmed order has a committed reservation and a captured charge; both are
	// undone, and both undo steps are idempotent.
	ns := &c.Saga
	ns.Reserved, ns.Charge = true, ChargeCaptured
	ns.Attempts, ns.Failures, ns.FailingSince, ns.LastError = 0, 0, time.Time{}, ""
	ns.UpdatedAt, ns.FinishedAt = now, time.Time{}
	c.compensate(ReasonCustomerRequest, now)
	c.Log = StepLog{Step: StepCancel, Attempt: 1, Outcome: OutcomeOK, At: now}
	return c, nil
}

// SagaView is a saga as operators see it: with its order's status, its next step and
// its step log.
type SagaView struct {
	Saga   Saga
	Order  Order
	Next   Step
	Steps  []StepLog
	Leased bool // a worker holds it right now
}
