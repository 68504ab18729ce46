package order_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

var policy = order.Policy{ChargeBudget: 2 * time.Minute, AlarmAfter: 5 * time.Minute, MaxHardFailures: 3}

// machine runs the pure state machine step by step, as the orchestrator would.
type machine struct {
	t      *testing.T
	o      order.Order
	s      order.Saga
	now    time.Time
	events []orderevents.Type
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
	want := orderevents.TypeConfirmed
	if status == order.StatusCancelled {
		want = orderevents.TypeCancelled
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
		if m.s.State != order.SagaCompensating || m.o.Status != order.StatusCancelling {
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
	if m.s.State != order.SagaCompensating || m.s.Reason != order.ReasonTimeout || m.o.Status != order.StatusCancelling {
		t.Fatalf("after expiry: %s %+v", m.o.Status, m.s)
	}
	m.step(order.StepRelease, ok)
	// A failed charge may have taken the money: the refund settles it (and voids
	// the order at payments when nothing was taken).
	m.step(order.StepRefund, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeNone})
	m.expectEnd(order.StatusCancelled, order.ReasonTimeout)
}

func TestSagaExpiringUndoesWhatADeadProcessMayHaveDone(t *testing.T) {
	t.Parallel()
	// Pending: a reservation may exist that no answer recorded.
	m := newMachine(t)
	m.now = t0.Add(policy.ChargeBudget + time.Second)
	m.step(order.StepExpire, ok)
	if !m.s.Reserved || m.s.Charge != order.ChargeNone {
		t.Errorf("expired while pending: %+v", m.s)
	}
	m.step(order.StepRelease, ok)
	m.expectEnd(order.StatusCancelled, order.ReasonTimeout)
	// Reserved: a charge may have been made that no answer recorded.
	m = newMachine(t)
	m.step(order.StepReserve, ok)
	m.now = t0.Add(policy.ChargeBudget + time.Second)
	m.step(order.StepExpire, ok)
	if m.s.Charge != order.ChargeUnknown {
		t.Errorf("expired while reserved: %+v", m.s)
	}
	if got := m.s.Undo(); len(got) != 2 {
		t.Errorf("to undo %v, want release and refund", got)
	}
}

func TestSagaCompensationsRunEachOnTheirOwn(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.step(order.StepReserve, ok)
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeCaptured})
	m.step(order.StepCommit, refused(order.ReasonTimeout))
	// Release fails: the refund is still planned in the same pass.
	m.step(order.StepRelease, failed)
	if got := order.Plan(m.o, m.s, m.now, policy, order.StepRelease); got != order.StepRefund {
		t.Fatalf("after a failed release the pass plans %q, want refund", got)
	}
	c := order.Advance(m.o, m.s, order.StepRefund, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeRefunded}, m.now, policy)
	m.o, m.s = c.Order, c.Saga
	if m.o.Status != order.StatusCancelling || m.s.Charge != order.ChargeRefunded {
		t.Errorf("after the refund: %s %+v", m.o.Status, m.s)
	}
	if got := order.Plan(m.o, m.s, m.now, policy, order.StepRelease); got != order.StepNone {
		t.Errorf("the pass plans %q after trying both", got)
	}
	m.step(order.StepRelease, ok)
	m.expectEnd(order.StatusCancelled, order.ReasonTimeout)
}

func TestSagaLostChargeAnswerIsRefundedWhenCompensating(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.step(order.StepReserve, ok)
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeFailed, Charge: order.ChargeUnknown, Err: errors.New("timeout")})
	if m.s.Charge != order.ChargeUnknown || !m.s.FailingSince.Equal(t0) {
		t.Fatalf("after a lost answer: %+v", m.s)
	}
	m.now = t0.Add(time.Hour)
	m.step(order.StepExpire, ok)
	m.step(order.StepRelease, ok)
	// The unknown charge must be settled before the order is cancelled.
	m.step(order.StepRefund, failed)
	if m.s.State != order.SagaCompensating || m.o.Status != order.StatusCancelling {
		t.Errorf("after a failed refund: %s %+v", m.o.Status, m.s)
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
	// Transient failures for a while: a blip, however many attempts.
	for i := 1; i <= 10; i++ {
		m.now = m.now.Add(10 * time.Second)
		m.step(order.StepRelease, failed)
		if m.s.State != order.SagaCompensating || m.s.Attempts != i || !m.s.FailingSince.Equal(t0.Add(10*time.Second)) {
			t.Fatalf("after %d failed releases: %+v", i, m.s)
		}
	}
	// Failing for longer than AlarmAfter: an operator should look.
	m.now = m.s.FailingSince.Add(policy.AlarmAfter)
	m.step(order.StepRelease, failed)
	if m.s.State != order.SagaCompensationFailed || m.o.Status != order.StatusCancelling {
		t.Fatalf("status %s, saga %+v", m.o.Status, m.s)
	}
	m.step(order.StepRelease, failed) // still retried
	m.step(order.StepRelease, ok)
	m.expectEnd(order.StatusCancelled, order.ReasonPaymentDeclined)
	if m.s.Failures != 0 || !m.s.FailingSince.IsZero() {
		t.Errorf("after success %+v", m.s)
	}
}

func TestSagaRefusedCallsMarkItStuckAtOnce(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.step(order.StepReserve, ok)
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeCaptured})
	hard := order.Outcome{Kind: order.OutcomeFailed, Err: errors.New("401"), Hard: true}
	for i := 1; i <= policy.MaxHardFailures; i++ {
		m.step(order.StepCommit, hard)
		want := order.SagaRunning
		if i == policy.MaxHardFailures {
			want = order.SagaStuck
		}
		if m.s.State != want || m.s.Failures != i {
			t.Fatalf("after %d refused commits: %+v", i, m.s)
		}
	}
	// Stuck still plans its step, and success puts it back on its way.
	m.step(order.StepCommit, ok)
	m.expectEnd(order.StatusConfirmed, order.ReasonNone)
}

func TestSagaPriceChangedReleasesWhatItReserved(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	out := refused(order.ReasonPriceChanged)
	out.Reserved = true
	m.step(order.StepReserve, out)
	if m.o.Status != order.StatusCancelling || !m.s.Reserved {
		t.Fatalf("after a price change: %s %+v", m.o.Status, m.s)
	}
	m.step(order.StepRelease, ok)
	m.expectEnd(order.StatusCancelled, order.ReasonPriceChanged)
}

func TestCustomerCancelCompensatesAConfirmedOrder(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	if _, err := order.StartCancel(m.o, m.s, t0); !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("cancel of a pending order: %v", err)
	}
	m.step(order.StepReserve, ok)
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeCaptured})
	m.step(order.StepCommit, ok)
	c, err := order.StartCancel(m.o, m.s, t0)
	if err != nil || c.Saga.State != order.SagaCompensating || c.Saga.Reason != order.ReasonCustomerRequest ||
		c.Log.Step != order.StepCancel || c.Order.Status != order.StatusCancelling || !c.StatusChanged {
		t.Fatalf("StartCancel = %+v, %v", c, err)
	}
	if _, err := order.StartCancel(c.Order, c.Saga, t0); !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("a second cancel: %v", err)
	}
	m.o, m.s, m.events = c.Order, c.Saga, nil
	m.step(order.StepRelease, ok)
	if m.o.Status != order.StatusCancelling {
		t.Errorf("status %s before the refund", m.o.Status)
	}
	m.step(order.StepRefund, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeRefunded})
	m.expectEnd(order.StatusCancelled, order.ReasonCustomerRequest)
	cancelled := m.o
	cancelled.Status = order.StatusCancelled
	if _, err := order.StartCancel(cancelled, m.s, t0); !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("cancel of a cancelled order: %v", err)
	}
}

func TestStatusRankOrdersTheSaga(t *testing.T) {
	t.Parallel()
	seq := []order.Status{order.StatusPending, order.StatusReserved, order.StatusPaid, order.StatusConfirmed, order.StatusCancelling, order.StatusCancelled}
	for i := 1; i < len(seq); i++ {
		if seq[i].Rank() <= seq[i-1].Rank() {
			t.Errorf("%s does not rank above %s", seq[i], seq[i-1])
		}
	}
	if order.StatusPaid.Terminal() || order.StatusCancelling.Terminal() || !order.StatusConfirmed.Terminal() || !order.StatusCancelled.Terminal() {
		t.Error("Terminal is wrong")
	}
}
