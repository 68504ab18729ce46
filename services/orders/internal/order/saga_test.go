package order_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

var policy = order.Policy{ChargeBudget: 2 * time.Minute, ChargeSettle: 30 * time.Second, MaxCompensationFailures: 3}

// machine runs the pure state machine step by step, as the orchestrator would.
type machine struct {
	t      *testing.T
	o      order.Order
	s      order.Saga
	now    time.Time
	events []order.EventType
	log    []order.StepLog
}

func newMachine(t *testing.T) *machine {
	o := order.Order{ID: uuid.New(), UserID: uuid.New(), Status: order.StatusPending, TotalCents: 500, Currency: "USD",
		PaymentMethod: order.PaymentVisa, CreatedAt: t0, UpdatedAt: t0,
		Lines: []order.Line{{ProductID: uuid.New(), Quantity: 1, UnitPriceCents: 500}}}
	return &machine{t: t, o: o, s: order.NewSaga(o), now: t0}
}

// step checks that the planned step is want, then applies out.
func (m *machine) step(want order.Step, out order.Outcome) order.Change {
	m.t.Helper()
	if got := order.Plan(m.o, m.s, m.now, policy); got != want {
		m.t.Fatalf("planned %q, want %q (status %s, saga %+v)", got, want, m.o.Status, m.s)
	}
	c := order.Advance(m.o, m.s, want, out, m.now, policy)
	m.o, m.s = c.Order, c.Saga
	if c.Event != "" {
		m.events = append(m.events, c.Event)
	}
	m.log = append(m.log, c.Log)
	return c
}

func (m *machine) expectEnd(status order.Status, reason order.CancelReason) {
	m.t.Helper()
	if m.o.Status != status || m.o.CancelReason != reason || m.s.State != order.SagaDone || m.s.FinishedAt.IsZero() {
		m.t.Errorf("ended %s/%q with saga %+v; want %s/%q and done", m.o.Status, m.o.CancelReason, m.s, status, reason)
	}
	if got := order.Plan(m.o, m.s, m.now, policy); got != order.StepNone {
		m.t.Errorf("a finished saga plans %q", got)
	}
	want := order.EventConfirmed
	if status == order.StatusCancelled {
		want = order.EventCancelled
	}
	if len(m.events) != 1 || m.events[0] != want {
		m.t.Errorf("events %v, want [%s]", m.events, want)
	}
}

var (
	ok      = order.Outcome{Kind: order.OutcomeOK}
	failed  = order.Outcome{Kind: order.OutcomeFailed, Err: errors.New("down")}
	refused = func(r order.CancelReason) order.Outcome {
		return order.Outcome{Kind: order.OutcomeRefused, Reason: r, Err: errors.New(string(r))}
	}
)

func TestSagaHappyPath(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	if c := m.step(order.StepReserve, ok); !c.StatusChanged || m.o.Status != order.StatusReserved || !m.s.Reserved {
		t.Errorf("after reserve: %s %+v", m.o.Status, m.s)
	}
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeCaptured})
	if m.o.Status != order.StatusPaid || m.s.Charge != order.ChargeCaptured {
		t.Errorf("after charge: %s %+v", m.o.Status, m.s)
	}
	m.step(order.StepCommit, ok)
	m.expectEnd(order.StatusConfirmed, order.ReasonNone)
	for i, l := range m.log {
		if l.Attempt != 1 || l.Outcome != order.OutcomeOK {
			t.Errorf("log[%d] = %+v", i, l)
		}
	}
}

func TestSagaOutOfStockCancelsWithNothingToUndo(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	c := m.step(order.StepReserve, refused(order.ReasonOutOfStock))
	m.expectEnd(order.StatusCancelled, order.ReasonOutOfStock)
	if m.s.Reserved || !c.StatusChanged || c.Log.Outcome != order.OutcomeRefused {
		t.Errorf("saga %+v, change %+v", m.s, c)
	}
}

func TestSagaDeclinedReleasesThenCancelsWithTheReason(t *testing.T) {
	t.Parallel()
	for _, reason := range []order.CancelReason{order.ReasonPaymentDeclined, order.ReasonInsufficientFunds} {
		m := newMachine(t)
		m.step(order.StepReserve, ok)
		out := refused(reason)
		out.Charge = order.ChargeDeclined
		m.step(order.StepCharge, out)
		if m.s.State != order.SagaCompensating || m.o.Status != order.StatusReserved {
			t.Fatalf("after decline: %s %+v", m.o.Status, m.s)
		}
		m.step(order.StepRelease, ok) // no refund: nothing was captured
		m.expectEnd(order.StatusCancelled, reason)
	}
}

func TestSagaRetriesTransientFailuresThenExpiresAfterTheChargeBudget(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.step(order.StepReserve, failed)
	m.step(order.StepReserve, ok)
	if m.s.Attempts != 0 || m.log[1].Attempt != 2 {
		t.Errorf("attempts %d, second log %+v", m.s.Attempts, m.log[1])
	}
	m.step(order.StepCharge, failed)
	m.step(order.StepCharge, failed)
	if m.s.Attempts != 2 || m.o.Status != order.StatusReserved || m.s.LastError != "down" {
		t.Errorf("after two failed charges: %s %+v", m.o.Status, m.s)
	}
	m.now = t0.Add(policy.ChargeBudget + time.Second)
	m.step(order.StepExpire, ok)
	if m.s.State != order.SagaCompensating || m.s.Reason != order.ReasonTimeout {
		t.Fatalf("after expiry: %+v", m.s)
	}
	m.step(order.StepRelease, ok)
	m.expectEnd(order.StatusCancelled, order.ReasonTimeout)
}

func TestSagaLostChargeAnswerIsRefundedWhenCompensating(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.step(order.StepReserve, ok)
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeFailed, Charge: order.ChargeUnknown, Err: errors.New("timeout")})
	if m.s.Charge != order.ChargeUnknown || !m.s.ChargeSentAt.Equal(t0) {
		t.Fatalf("after a lost answer: %+v", m.s)
	}
	m.now = t0.Add(time.Hour)
	m.step(order.StepExpire, ok)
	m.step(order.StepRelease, ok)
	// The unknown charge must be settled before the order is cancelled.
	m.step(order.StepRefund, order.Outcome{Kind: order.OutcomeFailed, Waiting: true, Err: errors.New("settling")})
	if m.s.Failures != 0 || m.s.State != order.SagaCompensating {
		t.Errorf("waiting counted as a failure: %+v", m.s)
	}
	m.step(order.StepRefund, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeRefunded})
	m.expectEnd(order.StatusCancelled, order.ReasonTimeout)
}

func TestSagaExpiredReservationAtCommitRefunds(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.step(order.StepReserve, ok)
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeCaptured})
	// The commit is not bound by the charge budget: the money is taken.
	m.now = t0.Add(time.Hour)
	m.step(order.StepCommit, refused(order.ReasonTimeout))
	m.step(order.StepRelease, ok)
	m.step(order.StepRefund, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeRefunded})
	m.expectEnd(order.StatusCancelled, order.ReasonTimeout)
}

func TestSagaCompensationThatKeepsFailingIsMarkedAndRecovers(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.step(order.StepReserve, ok)
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeRefused, Reason: order.ReasonPaymentDeclined, Charge: order.ChargeDeclined})
	for i := 1; i <= 3; i++ {
		m.step(order.StepRelease, failed)
		want := order.SagaCompensating
		if i == 3 {
			want = order.SagaCompensationFailed
		}
		if m.s.State != want || m.s.Failures != i {
			t.Fatalf("after %d failed releases: %+v", i, m.s)
		}
	}
	m.step(order.StepRelease, failed) // still retried
	if m.s.State != order.SagaCompensationFailed || m.o.Status != order.StatusReserved {
		t.Fatalf("status %s, saga %+v", m.o.Status, m.s)
	}
	m.step(order.StepRelease, ok)
	m.expectEnd(order.StatusCancelled, order.ReasonPaymentDeclined)
	if m.s.Failures != 0 {
		t.Errorf("failures %d after success", m.s.Failures)
	}
}

func TestCustomerCancelCompensatesAConfirmedOrder(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	if _, _, err := order.StartCancel(m.o, m.s, t0); !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("cancel of a pending order: %v", err)
	}
	m.step(order.StepReserve, ok)
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeCaptured})
	m.step(order.StepCommit, ok)
	s, log, err := order.StartCancel(m.o, m.s, t0)
	if err != nil || s.State != order.SagaCompensating || s.Reason != order.ReasonCustomerRequest || log.Step != order.StepCancel {
		t.Fatalf("StartCancel = %+v, %+v, %v", s, log, err)
	}
	if again, _, err := order.StartCancel(m.o, s, t0); err != nil || again != s {
		t.Errorf("a second cancel changed the saga: %+v, %v", again, err)
	}
	m.s, m.events = s, nil
	m.step(order.StepRelease, ok)
	if m.o.Status != order.StatusConfirmed {
		t.Errorf("status %s before the refund", m.o.Status)
	}
	m.step(order.StepRefund, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeRefunded})
	m.expectEnd(order.StatusCancelled, order.ReasonCustomerRequest)
	cancelled := m.o
	cancelled.Status = order.StatusCancelled
	if _, _, err := order.StartCancel(cancelled, m.s, t0); !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("cancel of a cancelled order: %v", err)
	}
}

func TestStatusRankOrdersTheSaga(t *testing.T) {
	t.Parallel()
	seq := []order.Status{order.StatusPending, order.StatusReserved, order.StatusPaid, order.StatusConfirmed, order.StatusCancelled}
	for i := 1; i < len(seq); i++ {
		if seq[i].Rank() <= seq[i-1].Rank() {
			t.Errorf("%s does not rank above %s", seq[i], seq[i-1])
		}
	}
	if order.StatusPaid.Terminal() || !order.StatusConfirmed.Terminal() || !order.StatusCancelled.Terminal() {
		t.Error("Terminal is wrong")
	}
}
