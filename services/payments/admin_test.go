package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
)

// adminPaymentsBody is GET /api/v1/admin/payments's answer.
type adminPaymentsBody struct {
	OrderID  string `json:"order_id"`
	Payments []struct {
		paymentBody
		Method     string          `json:"method"`
		CreatedAt  time.Time       `json:"created_at"`
		SettledAt  *time.Time      `json:"settled_at"`
		RefundedAt *time.Time      `json:"refunded_at"`
		Events     []outbox.Record `json:"events"`
	} `json:"payments"`
}

func TestAnAdminReadsAnyOrdersPaymentsWithTheirEvents(t *testing.T) {
	t.Parallel()
	s := startPayments(t)
	admin := s.tokenAs(t, uuid.NewString(), auth.RoleAdmin)
	get := func(token, query string) response {
		t.Helper()
		return call(t, http.MethodGet, s.url+"/api/v1/admin/payments"+query, "", programtest.Bearer(token)...)
	}
	read := func(order string) adminPaymentsBody {
		t.Helper()
		r := get(admin, "?order_id="+order)
		if r.Status != http.StatusOK {
			t.Fatalf("admin read of %s: status %d, want 200; body %s", order, r.Status, r.Body)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("admin read of %s: Cache-Control %q, want no-store", order, cc)
		}
		var b adminPaymentsBody
		r.JSON(t, &b)
		return b
	}

	// Captured, then refunded: one payment, two events about it.
	paid := newCharge("pm_card_visa")
	p := s.payment(t, s.charge(t, paid), http.StatusCreated)
	s.payment(t, s.saga(t, http.MethodPost, "/internal/charges/"+paid.OrderID+"/refund", ""), http.StatusOK)
	got := read(paid.OrderID)
	if got.OrderID != paid.OrderID {
		t.Errorf("payments of a paid order: order_id %s, want %s", got.OrderID, paid.OrderID)
	}
	if len(got.Payments) != 1 {
		t.Fatalf("payments of a paid order: %d payments %+v, want one", len(got.Payments), got.Payments)
	}
	pay := got.Payments[0]
	if pay.ID != p.ID {
		t.Errorf("payment id %s, want %s", pay.ID, p.ID)
	}
	if pay.UserID != paid.UserID {
		t.Errorf("payment user_id %s, want %s", pay.UserID, paid.UserID)
	}
	if pay.AmountCents != 2599 {
		t.Errorf("payment amount_cents %d, want 2599", pay.AmountCents)
	}
	if pay.Currency != "USD" {
		t.Errorf("payment currency %q, want USD", pay.Currency)
	}
	if pay.Method != "pm_card_visa" {
		t.Errorf("payment method %q, want pm_card_visa", pay.Method)
	}
	if pay.Status != "refunded" {
		t.Errorf("payment status %q, want refunded", pay.Status)
	}
	if pay.DeclineCode != "" {
		t.Errorf("payment decline_code %q, want none", pay.DeclineCode)
	}
	if pay.SettledAt == nil {
		t.Error("payment settled_at null, want a time")
	}
	if pay.RefundedAt == nil {
		t.Error("payment refunded_at null, want a time")
	}
	if pay.CreatedAt.IsZero() {
		t.Error("payment created_at zero, want a time")
	}
	var types []string
	for _, e := range pay.Events {
		types = append(types, e.Type)
		if e.Stream != "events.payments" {
			t.Errorf("event %s: stream %q, want events.payments", e.Type, e.Stream)
		}
		if e.Subject != p.ID {
			t.Errorf("event %s: subject %q, want the payment %s", e.Type, e.Subject, p.ID)
		}
		if e.ID == uuid.Nil {
			t.Errorf("event %s: nil id, want one", e.Type)
		}
		if e.Time.IsZero() {
			t.Errorf("event %s: zero time, want one", e.Type)
		}
	}
	if !slices.Equal(types, []string{"payment.captured", "payment.refunded"}) {
		t.Errorf("events %v; want payment.captured then payment.refunded", types)
	}

	// Declined: its code, no refund, one event.
	refused := newCharge("pm_card_chargeDeclinedInsufficientFunds")
	s.charge(t, refused)
	got = read(refused.OrderID)
	if len(got.Payments) != 1 {
		t.Fatalf("payments of a declined order: %d payments %+v, want one", len(got.Payments), got.Payments)
	}
	if st := got.Payments[0].Status; st != "declined" {
		t.Errorf("payment of a declined order: status %q, want declined", st)
	}
	if dc := got.Payments[0].DeclineCode; dc != "insufficient_funds" {
		t.Errorf("payment of a declined order: decline_code %q, want insufficient_funds", dc)
	}
	if ra := got.Payments[0].RefundedAt; ra != nil {
		t.Errorf("payment of a declined order: refunded_at %v, want null", *ra)
	}
	if evs := got.Payments[0].Events; len(evs) != 1 {
		t.Errorf("payment of a declined order: %d events %+v, want one", len(evs), evs)
	} else if evs[0].Type != "payment.declined" {
		t.Errorf("payment of a declined order: event %q, want payment.declined", evs[0].Type)
	}

	// Never charged: none, and still a list.
	r := get(admin, "?order_id="+uuid.NewString())
	if r.Status != http.StatusOK {
		t.Errorf("an order never charged: status %d, want 200; body %s", r.Status, r.Body)
	}
	if !strings.Contains(string(r.Body), `"payments":[]`) {
		t.Errorf("an order never charged: body %s, want an empty list \"payments\":[]", r.Body)
	}

	for _, q := range []string{"", "?order_id=nope"} {
		d := get(admin, q).problem(t, http.StatusUnprocessableEntity)
		if len(d.Errors) != 1 {
			t.Errorf("%q: %d field errors %+v, want one", q, len(d.Errors), d.Errors)
		} else if d.Errors[0].Field != "order_id" {
			t.Errorf("%q: field %q named, want order_id", q, d.Errors[0].Field)
		}
	}
	get(s.token(t, paid.UserID), "?order_id="+paid.OrderID).problem(t, http.StatusForbidden)
	call(t, http.MethodGet, s.url+"/api/v1/admin/payments?order_id="+paid.OrderID, "").problem(t, http.StatusUnauthorized)
}
