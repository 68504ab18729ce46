package order

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// The create-order saga (docs/saga.md draws it):
//
//	pending --reserve--> reserved --charge--> paid --commit--> confirmed
//	   | out_of_stock       | declined, or the      | reservation_released
//	   v                    v charge budget spent    v (expired)
//	cancelled <---------- release stock <------- refund (when a charge was captured)
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
	// SagaCompensating undoes what was done (release, refund) before the order is
	// cancelled with the saga's Reason.
	SagaCompensating SagaState = "compensating"
	// SagaCompensationFailed is compensating whose steps have failed
	// MaxCompensationFailures times in a row: an operator should look (GET
	// /admin/sagas?state=compensation_failed). Recovery keeps retrying it, and a step
	// that then succeeds puts it back to compensating.
	SagaCompensationFailed SagaState = "compensation_failed"
	// SagaDone has finished: the order is confirmed or cancelled.
	SagaDone SagaState = "done"
)

// SagaStates lists every state, for the admin filter.
var SagaStates = []SagaState{SagaRunning, SagaCompensating, SagaCompensationFailed, SagaDone}

// ParseSagaState reads a saga state. It returns an apperr.Invalid error naming the
// states.
func ParseSagaState(s string) (SagaState, error) {
	for _, st := range SagaStates {
		if string(st) == s {
			return st, nil
		}
	}
	return "", apperr.E(apperr.Invalid, "must be one of running, compensating, compensation_failed, done")
}

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
	// ChargeUnknown: a charge was sent but its answer never came. It is resolved by
	// asking payments (GET /internal/charges/{order_id}), never by guessing.
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
	// ChargeSentAt is when the last charge whose answer was lost was sent.
	ChargeSentAt time.Time
	// Reserved means a reservation may exist and compensation must release it
	// (releasing one that does not exist is harmless).
	Reserved bool
	// Attempts counts the failed attempts of the next step so far.
	Attempts int
	// Failures counts compensation attempts that failed in a row.
	Failures   int
	LastError  string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time // zero until done
}

// NewSaga is the saga of a freshly created order.
func NewSaga(o Order) Saga {
	return Saga{OrderID: o.ID, State: SagaRunning, Charge: ChargeNone, CreatedAt: o.CreatedAt, UpdatedAt: o.CreatedAt}
}

// Next is the step the saga runs next for order o, StepNone when it has finished.
func (s Saga) Next(o Order) Step {
	switch s.State {
	case SagaRunning:
		switch o.Status {
		case StatusPending:
			return StepReserve
		case StatusReserved:
			return StepCharge
		case StatusPaid:
			return StepCommit
		}
	case SagaCompensating, SagaCompensationFailed:
		switch {
		case s.Reserved:
			return StepRelease
		case s.Charge == ChargeCaptured || s.Charge == ChargeUnknown:
			return StepRefund
		}
	}
	return StepNone
}

// Policy tunes the saga.
type Policy struct {
	// ChargeBudget is how long after its creation an order may still be charged
	// (CHARGE_BUDGET); a saga that has not charged by then compensates, and the order
	// is cancelled with ReasonTimeout.
	ChargeBudget time.Duration
	// ChargeSettle is how long after a charge whose answer was lost payments' "no such
	// charge" is believed: a slow request could still land before that. Until then a
	// compensation that must know whether money was taken waits.
	ChargeSettle time.Duration
	// MaxCompensationFailures is how many compensation attempts may fail in a row
	// before the saga is marked compensation_failed.
	MaxCompensationFailures int
}

// DefaultPolicy is the saga's policy unless configured otherwise.
var DefaultPolicy = Policy{ChargeBudget: 2 * time.Minute, ChargeSettle: 30 * time.Second, MaxCompensationFailures: 3}

// Plan is the step to run now: the next step, except that an order not yet charged
// whose charge budget has run out expires instead.
func Plan(o Order, s Saga, now time.Time, p Policy) Step {
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
	// Waiting marks a failed attempt that could not decide yet rather than one that
	// broke (a lost charge answer still settling): it does not count towards
	// compensation_failed.
	Waiting bool
}

// EventType names an order event written to the outbox with a change.
type EventType string

// The order events (docs/events.md).
const (
	EventCreated   EventType = "order.created"
	EventConfirmed EventType = "order.confirmed"
	EventCancelled EventType = "order.cancelled"
)

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
	Event EventType
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
		ns.Attempts++
		ns.LastError = c.Log.Error
		switch step {
		case StepReserve:
			// The reservation may have been made before the answer was lost.
			ns.Reserved = true
		case StepCharge:
			if ns.Charge == ChargeUnknown && out.Charge == ChargeUnknown {
				ns.ChargeSentAt = now
			}
		}
		if ns.State.Compensating() && !out.Waiting {
			ns.Failures++
			if ns.Failures >= p.MaxCompensationFailures {
				ns.State = SagaCompensationFailed
			}
		}
		return c
	}
	// The step is over (done or refused): the next one starts afresh.
	ns.Attempts, ns.LastError = 0, ""
	switch step {
	case StepReserve:
		if out.Kind == OutcomeOK {
			ns.Reserved = true
			c.setStatus(StatusReserved, now)
		} else {
			// A refused reservation reserved nothing (all lines or none).
			ns.Reserved = false
			c.compensate(out.Reason)
		}
	case StepCharge:
		if out.Kind == OutcomeOK {
			c.setStatus(StatusPaid, now)
		} else {
			c.compensate(out.Reason)
		}
	case StepCommit:
		if out.Kind == OutcomeOK {
			c.setStatus(StatusConfirmed, now)
			ns.State, ns.FinishedAt = SagaDone, now
			c.Event = EventConfirmed
		} else {
			c.compensate(out.Reason)
		}
	case StepExpire:
		c.compensate(ReasonTimeout)
	case StepRelease:
		ns.Reserved = false
		c.compensated()
	case StepRefund:
		c.compensated()
	}
	if ns.State.Compensating() && ns.Next(c.Order) == StepNone {
		// Nothing (more) to undo: the order is cancelled in this same change.
		c.setStatus(StatusCancelled, now)
		c.Order.CancelReason = ns.Reason
		ns.State, ns.FinishedAt = SagaDone, now
		c.Event = EventCancelled
	}
	return c
}

func (c *Change) setStatus(st Status, now time.Time) {
	c.Order.Status, c.Order.UpdatedAt = st, now
	c.StatusChanged = true
}

func (c *Change) compensate(reason CancelReason) {
	if reason == ReasonNone {
		reason = ReasonTimeout
	}
	c.Saga.State, c.Saga.Reason, c.Saga.Failures = SagaCompensating, reason, 0
}

// compensated notes a compensation step that succeeded: a saga marked failed is
// back on track.
func (c *Change) compensated() {
	c.Saga.State, c.Saga.Failures = SagaCompensating, 0
}

// StartCancel turns the saga of a confirmed order into a compensation that refunds
// the payment and restocks the products, ending with the order cancelled at the
// customer's request. A cancellation already under way is returned as it is. It
// returns ErrNotCancellable for an order that is not confirmed.
func StartCancel(o Order, s Saga, now time.Time) (Saga, StepLog, error) {
	if s.State.Compensating() && s.Reason == ReasonCustomerRequest {
		return s, StepLog{}, nil
	}
	if o.Status != StatusConfirmed || s.State != SagaDone {
		return s, StepLog{}, ErrNotCancellable
	}
	// A confirmed order has a committed reservation and a captured charge; both are
	// undone, and both undo steps are idempotent.
	s.State, s.Reason = SagaCompensating, ReasonCustomerRequest
	s.Reserved, s.Charge = true, ChargeCaptured
	s.Attempts, s.Failures, s.LastError = 0, 0, ""
	s.UpdatedAt, s.FinishedAt = now, time.Time{}
	return s, StepLog{Step: StepCancel, Attempt: 1, Outcome: OutcomeOK, Error: "", At: now}, nil
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
