package payments_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/orders/internal/downstream"
	"github.com/bazaar-shop/bazaar/services/orders/internal/fakes"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/payments"
)

func TestChargeRefundLookup(t *testing.T) {
	t.Parallel()
	f := fakes.NewPayments(t)
	c, err := payments.New(downstream.Config{BaseURL: f.URL, Timeout: time.Second, BackoffInitial: time.Millisecond, Credentials: fakes.Credentials{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := func(m order.PaymentMethod) order.ChargeRequest {
		return order.ChargeRequest{OrderID: uuid.New(), UserID: uuid.New(), AmountCents: 500, Currency: "USD", PaymentMethod: m}
	}

	ok := req(order.PaymentVisa)
	p, err := c.Charge(ctx, ok)
	if err != nil || p.Status != order.PaymentCaptured || p.OrderID != ok.OrderID || p.ID == uuid.Nil {
		t.Fatalf("charge %+v, %v", p, err)
	}
	if again, err := c.Charge(ctx, ok); err != nil || again.ID != p.ID || f.Captures(ok.OrderID) != 1 {
		t.Errorf("repeat charge %+v, %v; captures %d", again, err, f.Captures(ok.OrderID))
	}
	if got, err := c.Lookup(ctx, ok.OrderID); err != nil || got.ID != p.ID || got.Status != order.PaymentCaptured {
		t.Errorf("lookup %+v, %v", got, err)
	}
	if got, err := c.Refund(ctx, ok.OrderID); err != nil || got.Status != order.PaymentRefunded {
		t.Errorf("refund %+v, %v", got, err)
	}
	if _, err := c.Lookup(ctx, uuid.New()); !errors.Is(err, apperr.E(apperr.NotFound, "")) {
		t.Errorf("lookup of nothing: %v", err)
	}
	if got, err := c.Refund(ctx, uuid.New()); err != nil || got.Status == order.PaymentRefunded {
		t.Errorf("refund of nothing %+v, %v", got, err)
	}

	for m, want := range map[order.PaymentMethod]error{order.PaymentDeclined: payments.ErrDeclined, order.PaymentInsufficientFunds: payments.ErrInsufficientFunds} {
		r := req(m)
		_, err := c.Charge(ctx, r)
		if !errors.Is(err, want) || apperr.CodeOf(err) != apperr.PaymentRequired || f.Calls("charge", r.OrderID) != 1 {
			t.Errorf("%s: %v after %d calls, want %v once", m, err, f.Calls("charge", r.OrderID), want)
		}
		if got, err := c.Lookup(ctx, r.OrderID); err != nil || got.Status != order.PaymentRefused || string(got.DeclineCode) != apperr.ReasonOf(want) {
			t.Errorf("%s: lookup %+v, %v", m, got, err)
		}
	}
	bad := req("pm_card_visa")
	bad.PaymentMethod = "pm_card_amex"
	if _, err := c.Charge(ctx, bad); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("unknown method: %v", err)
	}
}
