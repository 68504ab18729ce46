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
		if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("admin read of %s: %d %v %s", order, r.Status, r.Header, r.Body)
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
	if got.OrderID != paid.OrderID || len(got.Payments) != 1 {
		t.Fatalf("payments of a paid order: %+v; want one", got)
	}
	pay := got.Payments[0]
	if pay.ID != p.ID || pay.UserID != paid.UserID || pay.AmountCents != 2599 || pay.Currency != "USD" || pay.Method != "pm_card_visa" ||
		pay.Status != "refunded" || pay.DeclineCode != "" || pay.SettledAt == nil || pay.RefundedAt == nil || pay.CreatedAt.IsZero() {
		t.Errorf("payment %+v; want the user's refunded visa payment of 2599 USD", pay)
	}
	var types []string
	for _, e := range pay.Events {
		types = append(types, e.Type)
		if e.Stream != "events.payments" || e.Subject != p.ID || e.ID == uuid.Nil || e.Time.IsZero() {
			t.Errorf("event %+v; want one on events.payments about the payment", e)
		}
	}
	if !slices.Equal(types, []string{"payment.captured", "payment.refunded"}) {
		t.Errorf("events %v; want payment.captured then payment.refunded", types)
	}

	// Declined: its code, no refund, one event.
	refused := newCharge("pm_card_chargeDeclinedInsufficientFunds")
	s.charge(t, refused)
	got = read(refused.OrderID)
	if len(got.Payments) != 1 || got.Payments[0].Status != "declined" || got.Payments[0].DeclineCode != "insufficient_funds" ||
		got.Payments[0].RefundedAt != nil || len(got.Payments[0].Events) != 1 || got.Payments[0].Events[0].Type != "payment.declined" {
		t.Errorf("payments of a declined order: %+v", got)
	}

	// Never charged: none, and still a list.
	r := get(admin, "?order_id="+uuid.NewString())
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"payments":[]`) {
		t.Errorf("an order never charged: %d %s; want an empty list", r.Status, r.Body)
	}

	for _, q := range []string{"", "?order_id=nope"} {
		d := get(admin, q).problem(t, http.StatusUnprocessableEntity)
		if len(d.Errors) != 1 || d.Errors[0].Field != "order_id" {
			t.Errorf("%q: %+v; want order_id named", q, d)
		}
	}
	get(s.token(t, paid.UserID), "?order_id="+paid.OrderID).problem(t, http.StatusForbidden)
	call(t, http.MethodGet, s.url+"/api/v1/admin/payments?order_id="+paid.OrderID, "").problem(t, http.StatusUnauthorized)
}
