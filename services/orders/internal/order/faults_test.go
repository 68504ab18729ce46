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
	if o.Status != order.StatusCancelled || o.CancelReason != order.ReasonTimeout {
		t.Fatalf("order %s/%s", o.Status, o.CancelReason)
	}
	if got := r.payment(t, o.ID); got != "refunded" || r.pay.Captures(o.ID) != 1 || r.inv.Stock(r.product) != 100 {
		t.Errorf("payment %q (captures %d), stock %d: the cancelled order kept the money or the stock; steps %v",
			got, r.pay.Captures(o.ID), r.inv.Stock(r.product), r.steps(t, o.ID))
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
	if o.Status != order.StatusReserved || r.pay.Captures(o.ID) != 1 {
		t.Fatalf("order %s, captures %d", o.Status, r.pay.Captures(o.ID))
	}
	r.clock.advance(policy.ChargeBudget + time.Second)
	r.pay.SetFailingAfterCharge(false)
	r.pay.SetFailing("lookup", false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status == order.StatusConfirmed {
		t.Fatalf("order confirmed after its charge budget")
	}
	if got := r.payment(t, o.ID); got != "refunded" || r.inv.Stock(r.product) != 100 {
		t.Errorf("order %s/%s with payment %q, stock %d: money kept for a cancelled order; steps %v",
			o.Status, o.CancelReason, got, r.inv.Stock(r.product), r.steps(t, o.ID))
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
	if o.Status != order.StatusCancelled || o.CancelReason != order.ReasonTimeout {
		t.Fatalf("order %s/%s", o.Status, o.CancelReason)
	}
	if r.inv.Stock(r.product) != 100 || r.inv.Reservation(o.ID) != "released" {
		t.Errorf("stock %d, reservation %q: a cancelled order holds stock", r.inv.Stock(r.product), r.inv.Reservation(o.ID))
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
	if o.Status != order.StatusCancelled || o.CancelReason != order.ReasonCustomerRequest || r.inv.Stock(r.product) != 100 {
		t.Errorf("order %s/%s, stock %d", o.Status, o.CancelReason, r.inv.Stock(r.product))
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
	if o = r.recoverUntilDone(t, o.ID); o.Status != order.StatusCancelled || r.payment(t, o.ID) != "refunded" {
		t.Errorf("order %s, payment %q", o.Status, r.payment(t, o.ID))
	}
}

func TestAnOrderIsNotChargedAtPricesOtherThanItsReservation(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.inv.SetFailing("reserve", true)
	o := r.create(t, order.PaymentVisa, r.product, 2) // quoted at 250
	if o.Status != order.StatusPending || o.TotalCents != 500 {
		t.Fatalf("order %s %d", o.Status, o.TotalCents)
	}
	// The price changes between the quote and the reservation.
	r.inv.SetPrice(r.product, 300)
	r.inv.SetFailing("reserve", false)
	o = r.recoverUntilDone(t, o.ID)
	if o.Status != order.StatusCancelled || o.CancelReason != order.CancelReason("price_changed") {
		t.Errorf("order %s/%s; want cancelled for price_changed", o.Status, o.CancelReason)
	}
	if r.pay.Calls("charge", o.ID) != 0 || r.inv.Stock(r.product) != 100 {
		t.Errorf("charges %d, stock %d", r.pay.Calls("charge", o.ID), r.inv.Stock(r.product))
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
