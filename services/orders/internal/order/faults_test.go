package order_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// These tests put the saga through the faults that used to lose money or stock: a
// process that died between a call and storing its answer, a service that failed
// after doing the work, one compensation blocked behind another, prices that moved.

// forget makes the saga forget what a step did, as a crash between the call and
// storing its answer would: the columns go back to what they were before the step.
func (r *rig) forget(t *testing.T, id uuid.UUID, set string) {
	t.Helper()
	if _, err := r.pool.Exec(context.Background(), `UPDATE sagas SET `+set+` WHERE order_id = $1`, id); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) payment(t *testing.T, id uuid.UUID) string {
	t.Helper()
	p, ok := r.pay.Payment(id)
	if !ok {
		return ""
	}
	return p.Status
}

func TestCompensationRefundsAChargeWhoseAnswerDiedWithTheProcess(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.pay.SetDown(true)
	o := r.create(t, order.PaymentVisa, r.product, 2)
	if o.Status != order.StatusReserved {
		t.Fatalf("order %s", o.Status)
	}
	// The process charged, payments took the money, and the process died before it
	// stored the answer: the saga has no charge on record.
	r.pay.SetDown(false)
	if _, err := r.payClient.Charge(context.Background(), order.ChargeRequest{OrderID: o.ID, UserID: r.user,
		AmountCents: o.TotalCents, Currency: o.Currency, PaymentMethod: order.PaymentVisa}); err != nil {
		t.Fatal(err)
	}
	r.forget(t, o.ID, `charge = 'none', attempts = 0`)
	// It stays down past the charge budget: recovery expires the order.
	r.clock.advance(policy.ChargeBudget + time.Second)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusCancelled)
	}
	if o.CancelReason != order.ReasonTimeout {
		t.Fatalf("order cancel reason %q, want %s", o.CancelReason, order.ReasonTimeout)
	}
	if got := r.payment(t, o.ID); got != "refunded" {
		t.Errorf("payment %q, want refunded: the cancelled order kept the money; steps %v", got, r.steps(t, o.ID))
	}
	if n := r.pay.Captures(o.ID); n != 1 {
		t.Errorf("%d captures, want 1; steps %v", n, r.steps(t, o.ID))
	}
	if n := r.inv.Stock(r.product); n != 100 {
		t.Errorf("stock %d, want 100: the cancelled order kept the stock; steps %v", n, r.steps(t, o.ID))
	}
}

func TestCompensationRefundsAChargeAnswered503AfterTheMoneyWasTaken(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	// Payments took the money, then answered 503 (its processor's answer or its commit
	// was lost): a 503 on a charge does not mean nothing happened. Payments cannot be
	// asked either, for now.
	r.pay.SetFailingAfterCharge(true)
	r.pay.SetFailing("lookup", true)
	o := r.create(t, order.PaymentVisa, r.product, 3)
	if o.Status != order.StatusReserved {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusReserved)
	}
	if n := r.pay.Captures(o.ID); n != 1 {
		t.Fatalf("%d captures, want 1", n)
	}
	r.clock.advance(policy.ChargeBudget + time.Second)
	r.pay.SetFailingAfterCharge(false)
	r.pay.SetFailing("lookup", false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status == order.StatusConfirmed {
		t.Fatalf("order confirmed after its charge budget")
	}
	if got := r.payment(t, o.ID); got != "refunded" {
		t.Errorf("order %s/%s with payment %q, want refunded: money kept for a cancelled order; steps %v",
			o.Status, o.CancelReason, got, r.steps(t, o.ID))
	}
	if n := r.inv.Stock(r.product); n != 100 {
		t.Errorf("order %s/%s: stock %d, want 100; steps %v", o.Status, o.CancelReason, n, r.steps(t, o.ID))
	}
}

func TestCompensationReleasesAReservationWhoseAnswerDiedWithTheProcess(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.inv.SetFailing("reserve", true)
	o := r.create(t, order.PaymentVisa, r.product, 4)
	if o.Status != order.StatusPending {
		t.Fatalf("order %s", o.Status)
	}
	// The process reserved and died before storing the answer.
	r.inv.SetFailing("reserve", false)
	if _, err := r.invClient.Reserve(context.Background(), o.ID, []order.WantedLine{{ProductID: r.product, Quantity: 4}}); err != nil {
		t.Fatal(err)
	}
	r.forget(t, o.ID, `reserved = false, attempts = 0`)
	r.clock.advance(policy.ChargeBudget + time.Second)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusCancelled)
	}
	if o.CancelReason != order.ReasonTimeout {
		t.Fatalf("order cancel reason %q, want %s", o.CancelReason, order.ReasonTimeout)
	}
	if n := r.inv.Stock(r.product); n != 100 {
		t.Errorf("stock %d, want 100: a cancelled order holds stock", n)
	}
	if res := r.inv.Reservation(o.ID); res != "released" {
		t.Errorf("reservation %q, want released: a cancelled order holds stock", res)
	}
	if r.pay.Calls("charge", o.ID) != 0 {
		t.Errorf("an order that was never reserved was charged")
	}
}

// StatusCancelling is the status an order shows while its compensation runs.
const statusCancelling = order.Status("cancelling")

func TestARefundDoesNotWaitForInventory(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	o := r.create(t, order.PaymentVisa, r.product, 5)
	if o.Status != order.StatusConfirmed {
		t.Fatalf("order %s", o.Status)
	}
	r.inv.SetDown(true)
	c, err := r.svc.Cancel(context.Background(), r.user, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Inventory is down, payments is not: the money comes back now, and the order
	// says it is being cancelled.
	if got := r.payment(t, o.ID); got != "refunded" {
		t.Errorf("payment %q while inventory is down; steps %v", got, r.steps(t, o.ID))
	}
	if c.Status != statusCancelling || r.order(t, o.ID).Status != statusCancelling {
		t.Errorf("cancel answered %s, stored %s; want %s", c.Status, r.order(t, o.ID).Status, statusCancelling)
	}
	r.inv.SetDown(false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled {
		t.Errorf("order status %s, want %s", o.Status, order.StatusCancelled)
	}
	if o.CancelReason != order.ReasonCustomerRequest {
		t.Errorf("order cancel reason %q, want %s", o.CancelReason, order.ReasonCustomerRequest)
	}
	if n := r.inv.Stock(r.product); n != 100 {
		t.Errorf("stock %d, want 100", n)
	}
	if r.pay.Calls("refund", o.ID) != 1 {
		t.Errorf("refunded %d times, want once", r.pay.Calls("refund", o.ID))
	}
}

func TestAnOrderWhoseStockIsBackDoesNotShowConfirmed(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	o := r.create(t, order.PaymentVisa, r.product, 5)
	r.pay.SetDown(true)
	if _, err := r.svc.Cancel(context.Background(), r.user, o.ID); err != nil {
		t.Fatal(err)
	}
	if r.inv.Reservation(o.ID) != "released" {
		t.Fatalf("reservation %q", r.inv.Reservation(o.ID))
	}
	if got := r.order(t, o.ID).Status; got != statusCancelling {
		t.Errorf("stock is back on sale while the order shows %s; want %s", got, statusCancelling)
	}
	r.pay.SetDown(false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled {
		t.Errorf("order status %s, want %s", o.Status, order.StatusCancelled)
	}
	if got := r.payment(t, o.ID); got != "refunded" {
		t.Errorf("payment %q, want refunded", got)
	}
}

func TestAnOrderIsNotChargedAtPricesOtherThanItsReservation(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.inv.SetFailing("reserve", true)
	o := r.create(t, order.PaymentVisa, r.product, 2) // quoted at 250
	if o.Status != order.StatusPending {
		t.Fatalf("order status %s, want %s", o.Status, order.StatusPending)
	}
	if o.TotalCents != 500 {
		t.Fatalf("order total %d cents, want 500", o.TotalCents)
	}
	// The price changes between the quote and the reservation.
	r.inv.SetPrice(r.product, 300)
	r.inv.SetFailing("reserve", false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled || o.CancelReason != order.CancelReason("price_changed") {
		t.Errorf("order %s/%s; want cancelled for price_changed", o.Status, o.CancelReason)
	}
	if n := r.pay.Calls("charge", o.ID); n != 0 {
		t.Errorf("%d charge calls, want 0", n)
	}
	if n := r.inv.Stock(r.product); n != 100 {
		t.Errorf("stock %d, want 100", n)
	}
}

func TestABriefOutageDoesNotMarkACompensationFailed(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.inv.SetFailing("release", true)
	o := r.create(t, order.PaymentDeclined, r.product, 1)
	// Many passes, but a short time: a blip, not something for an operator.
	for range 2 * policy.MaxHardFailures {
		if _, err := r.saga.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.sagaState(t, o.ID); st != order.SagaCompensating {
		t.Errorf("saga %s after a brief outage; want compensating", st)
	}
}

func TestASagaThatKeepsFailingIsMarkedStuckAndListed(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	// A dependency refuses the orders service's calls (a misconfiguration): retrying
	// does not help, and nothing would ever cancel the order.
	r.inv.SetAnswer("commit", http.StatusUnauthorized)
	o := r.create(t, order.PaymentVisa, r.product, 1)
	if o.Status != order.StatusPaid {
		t.Fatalf("order %s", o.Status)
	}
	for range policy.MaxHardFailures {
		if _, err := r.saga.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	stuck := order.SagaState("stuck")
	if st := r.sagaState(t, o.ID); st != stuck {
		t.Fatalf("saga %s; want %s", st, stuck)
	}
	views, err := r.svc.Sagas(context.Background(), stuck, page.Request{Limit: 10})
	if err != nil {
		t.Fatalf("stuck sagas: %v", err)
	}
	if len(views) != 1 {
		t.Fatalf("%d stuck sagas, want 1: %+v", len(views), views)
	}
	if got := views[0].Saga.OrderID; got != o.ID {
		t.Errorf("stuck saga of order %s, want %s", got, o.ID)
	}
	if views[0].Saga.LastError == "" {
		t.Error("stuck saga has no last error")
	}
	r.inv.SetAnswer("commit", 0)
	if o = r.recoverUntilDone(t, o.ID); o.Status != order.StatusConfirmed {
		t.Errorf("order %s once the dependency works", o.Status)
	}
}
