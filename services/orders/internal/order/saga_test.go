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
	if m.o.Status != status {
		m.t.Errorf("ended with status %s, want %s", m.o.Status, status)
	}
	if m.o.CancelReason != reason {
		m.t.Errorf("ended with cancel reason %q, want %q", m.o.CancelReason, reason)
	}
	if m.s.State != order.SagaDone {
		m.t.Errorf("ended with saga state %v, want %v", m.s.State, order.SagaDone)
	}
	if m.s.FinishedAt.IsZero() {
		m.t.Errorf("ended with the saga's finish time zero, want one; saga %+v", m.s)
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
	c := m.step(order.StepReserve, ok)
	if !c.StatusChanged {
		t.Error("after reserve: the status did not change, want it changed")
	}
	if m.o.Status != order.StatusReserved {
		t.Errorf("after reserve: status %s, want %s", m.o.Status, order.StatusReserved)
	}
	if !m.s.Reserved {
		t.Errorf("after reserve: saga not reserved, want reserved; saga %+v", m.s)
	}
	m.step(order.StepCharge, order.Outcome{Kind: order.OutcomeOK, Charge: order.ChargeCaptured})
	if m.o.Status != order.StatusPaid {
		t.Errorf("after charge: status %s, want %s", m.o.Status, order.StatusPaid)
	}
	if m.s.Charge != order.ChargeCaptured {
		t.Errorf("after charge: saga charge %v, want %v", m.s.Charge, order.ChargeCaptured)
	}
	m.step(order.StepCommit, ok)
	m.expectEnd(order.StatusConfirmed, order.ReasonNone)
	for i, l := range m.log {
		if l.Attempt != 1 {
			t.Errorf("log[%d] = %+v: attempt %d, want 1", i, l, l.Attempt)
		}
		if l.Outcome != order.OutcomeOK {
			t.Errorf("log[%d] = %+v: outcome %v, want %v", i, l, l.Outcome, order.OutcomeOK)
		}
	}
}

func TestSagaOutOfStockCancelsWithNothingToUndo(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	c := m.step(order.StepReserve, refused(order.ReasonOutOfStock))
	m.expectEnd(order.StatusCancelled, order.ReasonOutOfStock)
	if m.s.Reserved {
		t.Errorf("saga reserved, want nothing reserved; saga %+v", m.s)
	}
	if !c.StatusChanged {
		t.Error("the status did not change, want it changed")
	}
	if c.Log.Outcome != order.OutcomeRefused {
		t.Errorf("logged outcome %v, want %v", c.Log.Outcome, order.OutcomeRefused)
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
		if m.s.State != order.SagaCompensating {
			t.Fatalf("after decline: saga state %v, want %v", m.s.State, order.SagaCompensating)
		}
		if m.o.Status != order.StatusCancelling {
			t.Fatalf("after decline: status %s, want %s", m.o.Status, order.StatusCancelling)
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
	if m.s.Attempts != 0 {
		t.Errorf("attempts %d after a success, want 0", m.s.Attempts)
	}
	if m.log[1].Attempt != 2 {
		t.Errorf("second log %+v: attempt %d, want 2", m.log[1], m.log[1].Attempt)
	}
	m.step(order.StepCharge, failed)
	m.step(order.StepCharge, failed)
	if m.s.Attempts != 2 {
		t.Errorf("after two failed charges: attempts %d, want 2", m.s.Attempts)
	}
	if m.o.Status != order.StatusReserved {
		t.Errorf("after two failed charges: status %s, want %s", m.o.Status, order.StatusReserved)
	}
	if m.s.LastError != "down" {
		t.Errorf("after two failed charges: last error %q, want down", m.s.LastError)
	}
	m.now = t0.Add(policy.ChargeBudget + time.Second)
	m.step(order.StepExpire, ok)
	if m.s.State != order.SagaCompensating {
		t.Fatalf("after expiry: saga state %v, want %v", m.s.State, order.SagaCompensating)
	}
	if m.s.Reason != order.ReasonTimeout {
		t.Fatalf("after expiry: saga reason %q, want %s", m.s.Reason, order.ReasonTimeout)
	}
	if m.o.Status != order.StatusCancelling {
		t.Fatalf("after expiry: status %s, want %s", m.o.Status, order.StatusCancelling)
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
	if !m.s.Reserved {
		t.Errorf("expired while pending: saga not reserved, want reserved (to release what may exist); saga %+v", m.s)
	}
	if m.s.Charge != order.ChargeNone {
		t.Errorf("expired while pending: saga charge %v, want %v", m.s.Charge, order.ChargeNone)
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
	if m.o.Status != order.StatusCancelling {
		t.Errorf("after the refund: status %s, want %s", m.o.Status, order.StatusCancelling)
	}
	if m.s.Charge != order.ChargeRefunded {
		t.Errorf("after the refund: saga charge %v, want %v", m.s.Charge, order.ChargeRefunded)
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
	if m.s.Charge != order.ChargeUnknown {
		t.Fatalf("after a lost answer: saga charge %v, want %v", m.s.Charge, order.ChargeUnknown)
	}
	if !m.s.FailingSince.Equal(t0) {
		t.Fatalf("after a lost answer: failing since %v, want %v", m.s.FailingSince, t0)
	}
	m.now = t0.Add(time.Hour)
	m.step(order.StepExpire, ok)
	m.step(order.StepRelease, ok)
	// The unknown charge must be settled before the order is cancelled.
	m.step(order.StepRefund, failed)
	if m.s.State != order.SagaCompensating {
		t.Errorf("after a failed refund: saga state %v, want %v", m.s.State, order.SagaCompensating)
	}
	if m.o.Status != order.StatusCancelling {
		t.Errorf("after a failed refund: status %s, want %s", m.o.Status, order.StatusCancelling)
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
		if m.s.State != order.SagaCompensating {
			t.Fatalf("after %d failed releases: saga state %v, want %v", i, m.s.State, order.SagaCompensating)
		}
		if m.s.Attempts != i {
			t.Fatalf("after %d failed releases: attempts %d, want %d", i, m.s.Attempts, i)
		}
		if want := t0.Add(10 * time.Second); !m.s.FailingSince.Equal(want) {
			t.Fatalf("after %d failed releases: failing since %v, want the first failure's %v", i, m.s.FailingSince, want)
		}
	}
	// Failing for longer than AlarmAfter: an operator should look.
	m.now = m.s.FailingSince.Add(policy.AlarmAfter)
	m.step(order.StepRelease, failed)
	if m.s.State != order.SagaCompensationFailed {
		t.Fatalf("saga state %v, want %v", m.s.State, order.SagaCompensationFailed)
	}
	if m.o.Status != order.StatusCancelling {
		t.Fatalf("status %s, want %s", m.o.Status, order.StatusCancelling)
	}
	m.step(order.StepRelease, failed) // still retried
	m.step(order.StepRelease, ok)
	m.expectEnd(order.StatusCancelled, order.ReasonPaymentDeclined)
	if m.s.Failures != 0 {
		t.Errorf("after success: failures %d, want 0", m.s.Failures)
	}
	if !m.s.FailingSince.IsZero() {
		t.Errorf("after success: failing since %v, want zero", m.s.FailingSince)
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
		if m.s.State != want {
			t.Fatalf("after %d refused commits: saga state %v, want %v", i, m.s.State, want)
		}
		if m.s.Failures != i {
			t.Fatalf("after %d refused commits: failures %d, want %d", i, m.s.Failures, i)
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
	if m.o.Status != order.StatusCancelling {
		t.Fatalf("after a price change: status %s, want %s", m.o.Status, order.StatusCancelling)
	}
	if !m.s.Reserved {
		t.Fatalf("after a price change: saga not reserved, want reserved; saga %+v", m.s)
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
	if err != nil {
		t.Fatalf("StartCancel: %v, want no error", err)
	}
	if c.Saga.State != order.SagaCompensating {
		t.Fatalf("StartCancel: saga state %v, want %v", c.Saga.State, order.SagaCompensating)
	}
	if c.Saga.Reason != order.ReasonCustomerRequest {
		t.Fatalf("StartCancel: saga reason %q, want %s", c.Saga.Reason, order.ReasonCustomerRequest)
	}
	if c.Log.Step != order.StepCancel {
		t.Fatalf("StartCancel: logged step %q, want %q", c.Log.Step, order.StepCancel)
	}
	if c.Order.Status != order.StatusCancelling {
		t.Fatalf("StartCancel: status %s, want %s", c.Order.Status, order.StatusCancelling)
	}
	if !c.StatusChanged {
		t.Fatal("StartCancel: the status did not change, want it changed")
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
	for s, want := range map[order.Status]bool{
		order.StatusPaid: false, order.StatusCancelling: false, order.StatusConfirmed: true, order.StatusCancelled: true,
	} {
		if got := s.Terminal(); got != want {
			t.Errorf("%s.Terminal() = %v, want %v", s, got, want)
		}
	}
}
