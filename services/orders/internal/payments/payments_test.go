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
	if err != nil {
		t.Fatalf("charge: %v, want no error", err)
	}
	if p.Status != order.PaymentCaptured {
		t.Fatalf("charge: status %v, want %v", p.Status, order.PaymentCaptured)
	}
	if p.OrderID != ok.OrderID {
		t.Fatalf("charge: order %s, want %s", p.OrderID, ok.OrderID)
	}
	if p.ID == uuid.Nil {
		t.Fatal("charge: nil payment id, want one")
	}
	if again, err := c.Charge(ctx, ok); err != nil {
		t.Errorf("repeat charge: %v, want no error", err)
	} else if again.ID != p.ID {
		t.Errorf("repeat charge: payment %s, want the first %s", again.ID, p.ID)
	}
	if n := f.Captures(ok.OrderID); n != 1 {
		t.Errorf("%d captures after a repeat charge, want 1", n)
	}
	if got, err := c.Lookup(ctx, ok.OrderID); err != nil {
		t.Errorf("lookup: %v, want no error", err)
	} else {
		if got.ID != p.ID {
			t.Errorf("lookup: payment %s, want %s", got.ID, p.ID)
		}
		if got.Status != order.PaymentCaptured {
			t.Errorf("lookup: status %v, want %v", got.Status, order.PaymentCaptured)
		}
	}
	if got, err := c.Refund(ctx, ok.OrderID); err != nil {
		t.Errorf("refund: %v, want no error", err)
	} else if got.Status != order.PaymentRefunded {
		t.Errorf("refund: status %v, want %v", got.Status, order.PaymentRefunded)
	}
	if _, err := c.Lookup(ctx, uuid.New()); !errors.Is(err, apperr.E(apperr.NotFound, "")) {
		t.Errorf("lookup of nothing: %v", err)
	}
	if got, err := c.Refund(ctx, uuid.New()); err != nil {
		t.Errorf("refund of nothing: %v, want no error", err)
	} else if got.Status == order.PaymentRefunded {
		t.Errorf("refund of nothing: status %v, want anything but refunded", got.Status)
	}

	for m, want := range map[order.PaymentMethod]error{order.PaymentDeclined: payments.ErrDeclined, order.PaymentInsufficientFunds: payments.ErrInsufficientFunds} {
		r := req(m)
		_, err := c.Charge(ctx, r)
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", m, err, want)
		}
		if code := apperr.CodeOf(err); code != apperr.PaymentRequired {
			t.Errorf("%s: %v with code %s, want %s", m, err, code, apperr.PaymentRequired)
		}
		if n := f.Calls("charge", r.OrderID); n != 1 {
			t.Errorf("%s: %d charge calls, want 1", m, n)
		}
		if got, err := c.Lookup(ctx, r.OrderID); err != nil {
			t.Errorf("%s: lookup: %v, want no error", m, err)
		} else {
			if got.Status != order.PaymentRefused {
				t.Errorf("%s: lookup: status %v, want %v", m, got.Status, order.PaymentRefused)
			}
			if string(got.DeclineCode) != apperr.ReasonOf(want) {
				t.Errorf("%s: lookup: decline code %q, want %q", m, got.DeclineCode, apperr.ReasonOf(want))
			}
		}
	}
	bad := req("pm_card_visa")
	bad.PaymentMethod = "pm_card_amex"
	if _, err := c.Charge(ctx, bad); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("unknown method: %v", err)
	}
}
