package payment_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
)

func isInvalid(err error) bool { return apperr.CodeOf(err) == apperr.Invalid }

func TestParseID(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	if got, err := payment.ParseID(id.String()); err != nil || got != id {
		t.Errorf("ParseID(%s) = %v, %v", id, got, err)
	}
	for _, s := range []string{"", "nope", "00000000-0000-0000-0000-000000000000", "urn:uuid:" + id.String(),
		"{" + id.String() + "}", strings.ReplaceAll(id.String(), "-", "")} {
		if _, err := payment.ParseID(s); !isInvalid(err) {
			t.Errorf("ParseID(%q) = %v, want an invalid error", s, err)
		}
	}
}

func TestParseCurrencyAmountAndMethod(t *testing.T) {
	t.Parallel()
	if c, err := payment.ParseCurrency("usd"); err != nil || c != "USD" {
		t.Errorf("ParseCurrency(usd) = %q, %v", c, err)
	}
	for _, s := range []string{"", "US", "USDD", "U5D", "€UR"} {
		if _, err := payment.ParseCurrency(s); !isInvalid(err) {
			t.Errorf("ParseCurrency(%q) = %v", s, err)
		}
	}
	for _, n := range []int64{1, 1999, payment.MaxAmountCents} {
		if got, err := payment.ParseAmount(n); err != nil || got != n {
			t.Errorf("ParseAmount(%d) = %d, %v", n, got, err)
		}
	}
	for _, n := range []int64{0, -1, payment.MaxAmountCents + 1} {
		if _, err := payment.ParseAmount(n); !isInvalid(err) {
			t.Errorf("ParseAmount(%d) = %v", n, err)
		}
	}
	for _, m := range []payment.Method{payment.MethodVisa, payment.MethodDeclined, payment.MethodInsufficientFunds} {
		if got, err := payment.ParseMethod(string(m)); err != nil || got != m {
			t.Errorf("ParseMethod(%s) = %q, %v", m, got, err)
		}
	}
	for _, s := range []string{"", "pm_card_mastercard", "PM_CARD_VISA", "pm_card_visa "} {
		if _, err := payment.ParseMethod(s); !isInvalid(err) {
			t.Errorf("ParseMethod(%q) = %v", s, err)
		}
	}
}

func TestParseKeyMustBeTheOrderID(t *testing.T) {
	t.Parallel()
	order := uuid.New()
	if k, err := payment.ParseKey(order.String(), order); err != nil || k != order.String() {
		t.Errorf("ParseKey(order) = %q, %v", k, err)
	}
	// Upper-case hex is the same UUID; the key is kept in its canonical form.
	if k, err := payment.ParseKey(strings.ToUpper(order.String()), order); err != nil || k != order.String() {
		t.Errorf("ParseKey(upper-case order) = %q, %v", k, err)
	}
	for _, k := range []string{"", uuid.NewString(), "some-key", strings.Repeat("x", 300)} {
		if _, err := payment.ParseKey(k, order); !isInvalid(err) {
			t.Errorf("ParseKey(%q) = %v, want an invalid error", k, err)
		}
	}
}

func visaCharge() payment.ChargeRequest {
	return payment.ChargeRequest{
		OrderID: uuid.New(), UserID: uuid.New(),
		Amount: payment.Money{Cents: 4200, Currency: "USD"}, Method: payment.MethodVisa,
	}
}

func TestFingerprintTellsRequestsApart(t *testing.T) {
	t.Parallel()
	c := visaCharge()
	if !bytes.Equal(c.Fingerprint(), c.Fingerprint()) || len(c.Fingerprint()) != 32 {
		t.Fatal("the fingerprint of one request changes")
	}
	variants := map[string]func(*payment.ChargeRequest){
		"order":    func(c *payment.ChargeRequest) { c.OrderID = uuid.New() },
		"user":     func(c *payment.ChargeRequest) { c.UserID = uuid.New() },
		"amount":   func(c *payment.ChargeRequest) { c.Amount.Cents++ },
		"currency": func(c *payment.ChargeRequest) { c.Amount.Currency = "EUR" },
		"method":   func(c *payment.ChargeRequest) { c.Method = payment.MethodDeclined },
	}
	for name, change := range variants {
		other := c
		change(&other)
		if bytes.Equal(c.Fingerprint(), other.Fingerprint()) {
			t.Errorf("another %s has the same fingerprint", name)
		}
	}
	p := payment.NewPending(uuid.New(), c, time.Now())
	if !p.Matches(c) || p.Request() != c || p.Status != payment.StatusPending || p.IdempotencyKey != c.OrderID.String() {
		t.Errorf("pending payment %+v", p)
	}
}

func TestSettleAndRefundFollowTheLifecycle(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pending := payment.NewPending(uuid.New(), visaCharge(), at)

	captured, err := pending.Settle(payment.Outcome{Status: payment.StatusCaptured, Reference: "ch_1"}, at)
	if err != nil || captured.Status != payment.StatusCaptured || captured.ProcessorRef != "ch_1" ||
		!captured.SettledAt.Equal(at) || captured.Declined() != nil {
		t.Errorf("captured = %+v, %v", captured, err)
	}
	refunded, err := captured.Refund(at.Add(time.Hour))
	if err != nil || refunded.Status != payment.StatusRefunded || !refunded.RefundedAt.Equal(at.Add(time.Hour)) {
		t.Errorf("refunded = %+v, %v", refunded, err)
	}

	declined, err := pending.Settle(payment.Outcome{Status: payment.StatusDeclined, DeclineCode: payment.DeclineInsufficientFunds}, at)
	if err != nil || declined.Status != payment.StatusDeclined || declined.DeclineCode != payment.DeclineInsufficientFunds {
		t.Errorf("declined = %+v, %v", declined, err)
	}
	if err := declined.Declined(); apperr.ReasonOf(err) != "insufficient_funds" || apperr.CodeOf(err) != apperr.PaymentRequired || !strings.Contains(err.Error(), "insufficient funds") {
		t.Errorf("declined.Declined() = %v", err)
	}

	bad := []struct {
		name string
		do   func() (payment.Payment, error)
	}{
		{"settle twice", func() (payment.Payment, error) {
			return captured.Settle(payment.Outcome{Status: payment.StatusDeclined, DeclineCode: payment.DeclinePaymentDeclined}, at)
		}},
		{"settle as refunded", func() (payment.Payment, error) {
			return pending.Settle(payment.Outcome{Status: payment.StatusRefunded}, at)
		}},
		{"decline without a code", func() (payment.Payment, error) {
			return pending.Settle(payment.Outcome{Status: payment.StatusDeclined}, at)
		}},
		{"refund a pending payment", func() (payment.Payment, error) { return pending.Refund(at) }},
		{"refund a declined payment", func() (payment.Payment, error) { return declined.Refund(at) }},
		{"refund twice", func() (payment.Payment, error) { return refunded.Refund(at) }},
	}
	for _, c := range bad {
		if _, err := c.do(); !errors.Is(err, payment.ErrBadTransition) {
			t.Errorf("%s: %v, want ErrBadTransition", c.name, err)
		}
	}
}

func TestStripeTestFollowsTheTestPaymentMethods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := map[payment.Method]payment.Outcome{
		payment.MethodVisa:              {Status: payment.StatusCaptured},
		payment.MethodDeclined:          {Status: payment.StatusDeclined, DeclineCode: payment.DeclinePaymentDeclined},
		payment.MethodInsufficientFunds: {Status: payment.StatusDeclined, DeclineCode: payment.DeclineInsufficientFunds},
	}
	for method, want := range cases {
		c := visaCharge()
		c.Method = method
		got, err := payment.StripeTest{}.Charge(ctx, "key-1", c)
		if err != nil || got.Status != want.Status || got.DeclineCode != want.DeclineCode || got.Reference != "ch_test_key-1" {
			t.Errorf("%s: %+v, %v; want %+v", method, got, err, want)
		}
		// The same key answers the same: a repeat charges nothing more.
		if again, _ := (payment.StripeTest{}).Charge(ctx, "key-1", c); again != got {
			t.Errorf("%s: repeat answered %+v, first %+v", method, again, got)
		}
	}
	unknown := visaCharge()
	unknown.Method = "pm_card_unknown"
	if _, err := (payment.StripeTest{}).Charge(ctx, "k", unknown); !isInvalid(err) {
		t.Errorf("unknown method: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := (payment.StripeTest{}).Charge(cancelled, "k", visaCharge()); !errors.Is(err, context.Canceled) {
		t.Errorf("charge with a cancelled context: %v", err)
	}

	p := payment.NewPending(uuid.New(), visaCharge(), time.Now())
	if err := (payment.StripeTest{}).Refund(ctx, "r", p); apperr.CodeOf(err) != apperr.Conflict {
		t.Errorf("refund of a pending payment: %v", err)
	}
	p.Status = payment.StatusCaptured
	if err := (payment.StripeTest{}).Refund(ctx, "r", p); err != nil {
		t.Errorf("refund of a captured payment: %v", err)
	}
	// A repeat of the refund's key answers the same: the Service repeats it when a
	// refund's outcome went unrecorded, or when refunds of one payment overlap.
	if err := (payment.StripeTest{}).Refund(ctx, "r", p); err != nil {
		t.Errorf("repeated refund of a captured payment: %v", err)
	}
}

func TestDeclinesAre402sWithTheirCodeAsReason(t *testing.T) {
	t.Parallel()
	for _, c := range []payment.DeclineCode{payment.DeclinePaymentDeclined, payment.DeclineInsufficientFunds} {
		if apperr.CodeOf(c.Err()) != apperr.PaymentRequired || apperr.ReasonOf(c.Err()) != string(c) || !c.Valid() {
			t.Errorf("%s: err %v", c, c.Err())
		}
	}
	if payment.DeclineCode("stolen").Valid() {
		t.Error("an unknown decline code is valid")
	}
}
