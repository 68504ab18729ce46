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
	if got, err := payment.ParseID(id.String()); err != nil {
		t.Errorf("ParseID(%s): %v, want no error", id, err)
	} else if got != id {
		t.Errorf("ParseID(%s) = %v, want %v", id, got, id)
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
	if c, err := payment.ParseCurrency("usd"); err != nil {
		t.Errorf("ParseCurrency(usd): %v, want no error", err)
	} else if c != "USD" {
		t.Errorf("ParseCurrency(usd) = %q, want USD", c)
	}
	for _, s := range []string{"", "US", "USDD", "U5D", "€UR"} {
		if _, err := payment.ParseCurrency(s); !isInvalid(err) {
			t.Errorf("ParseCurrency(%q) = %v", s, err)
		}
	}
	for _, n := range []int64{1, 1999, payment.MaxAmountCents} {
		if got, err := payment.ParseAmount(n); err != nil {
			t.Errorf("ParseAmount(%d): %v, want no error", n, err)
		} else if got != n {
			t.Errorf("ParseAmount(%d) = %d, want %d", n, got, n)
		}
	}
	for _, n := range []int64{0, -1, payment.MaxAmountCents + 1} {
		if _, err := payment.ParseAmount(n); !isInvalid(err) {
			t.Errorf("ParseAmount(%d) = %v", n, err)
		}
	}
	for _, m := range []payment.Method{payment.MethodVisa, payment.MethodDeclined, payment.MethodInsufficientFunds} {
		if got, err := payment.ParseMethod(string(m)); err != nil {
			t.Errorf("ParseMethod(%s): %v, want no error", m, err)
		} else if got != m {
			t.Errorf("ParseMethod(%s) = %q, want %q", m, got, m)
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
	if k, err := payment.ParseKey(order.String(), order); err != nil {
		t.Errorf("ParseKey(order): %v, want no error", err)
	} else if k != order.String() {
		t.Errorf("ParseKey(order) = %q, want %q", k, order)
	}
	// Upper-case hex is the same UUID; the key is kept in its canonical form.
	if k, err := payment.ParseKey(strings.ToUpper(order.String()), order); err != nil {
		t.Errorf("ParseKey(upper-case order): %v, want no error", err)
	} else if k != order.String() {
		t.Errorf("ParseKey(upper-case order) = %q, want %q", k, order)
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
	if a, b := c.Fingerprint(), c.Fingerprint(); !bytes.Equal(a, b) {
		t.Fatalf("the fingerprint of one request changes: %x, then %x", a, b)
	}
	if n := len(c.Fingerprint()); n != 32 {
		t.Fatalf("a fingerprint of %d bytes, want 32", n)
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
	if !p.Matches(c) {
		t.Errorf("pending payment %+v does not match its request %+v", p, c)
	}
	if got := p.Request(); got != c {
		t.Errorf("pending payment's request %+v, want %+v", got, c)
	}
	if p.Status != payment.StatusPending {
		t.Errorf("pending payment's status %s, want %s", p.Status, payment.StatusPending)
	}
	if p.IdempotencyKey != c.OrderID.String() {
		t.Errorf("pending payment's idempotency key %q, want the order id %s", p.IdempotencyKey, c.OrderID)
	}
}

func TestSettleAndRefundFollowTheLifecycle(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pending := payment.NewPending(uuid.New(), visaCharge(), at)

	captured, err := pending.Settle(payment.Outcome{Status: payment.StatusCaptured, Reference: "ch_1"}, at)
	if err != nil {
		t.Fatalf("settle as captured: %v, want no error", err)
	}
	if captured.Status != payment.StatusCaptured {
		t.Errorf("captured: status %s, want %s", captured.Status, payment.StatusCaptured)
	}
	if captured.ProcessorRef != "ch_1" {
		t.Errorf("captured: processor ref %q, want ch_1", captured.ProcessorRef)
	}
	if !captured.SettledAt.Equal(at) {
		t.Errorf("captured: settled at %v, want %v", captured.SettledAt, at)
	}
	if err := captured.Declined(); err != nil {
		t.Errorf("captured.Declined() = %v, want nil", err)
	}
	refunded, err := captured.Refund(at.Add(time.Hour))
	if err != nil {
		t.Fatalf("refund of the captured payment: %v, want no error", err)
	}
	if refunded.Status != payment.StatusRefunded {
		t.Errorf("refunded: status %s, want %s", refunded.Status, payment.StatusRefunded)
	}
	if !refunded.RefundedAt.Equal(at.Add(time.Hour)) {
		t.Errorf("refunded: refunded at %v, want %v", refunded.RefundedAt, at.Add(time.Hour))
	}

	declined, err := pending.Settle(payment.Outcome{Status: payment.StatusDeclined, DeclineCode: payment.DeclineInsufficientFunds}, at)
	if err != nil {
		t.Fatalf("settle as declined: %v, want no error", err)
	}
	if declined.Status != payment.StatusDeclined {
		t.Errorf("declined: status %s, want %s", declined.Status, payment.StatusDeclined)
	}
	if declined.DeclineCode != payment.DeclineInsufficientFunds {
		t.Errorf("declined: decline code %s, want %s", declined.DeclineCode, payment.DeclineInsufficientFunds)
	}
	err = declined.Declined()
	if r := apperr.ReasonOf(err); r != "insufficient_funds" {
		t.Errorf("declined.Declined() = %v: reason %q, want insufficient_funds", err, r)
	}
	if code := apperr.CodeOf(err); code != apperr.PaymentRequired {
		t.Errorf("declined.Declined() = %v: code %s, want %s", err, code, apperr.PaymentRequired)
	}
	if err == nil || !strings.Contains(err.Error(), "insufficient funds") {
		t.Errorf("declined.Declined() = %v, want it to say insufficient funds", err)
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
		if err != nil {
			t.Fatalf("%s: %v, want no error", method, err)
		}
		if got.Status != want.Status {
			t.Errorf("%s: status %s, want %s", method, got.Status, want.Status)
		}
		if got.DeclineCode != want.DeclineCode {
			t.Errorf("%s: decline code %q, want %q", method, got.DeclineCode, want.DeclineCode)
		}
		if got.Reference != "ch_test_key-1" {
			t.Errorf("%s: reference %q, want ch_test_key-1", method, got.Reference)
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
		if code := apperr.CodeOf(c.Err()); code != apperr.PaymentRequired {
			t.Errorf("%s: err %v with code %s, want %s", c, c.Err(), code, apperr.PaymentRequired)
		}
		if r := apperr.ReasonOf(c.Err()); r != string(c) {
			t.Errorf("%s: err %v with reason %q, want %q", c, c.Err(), r, c)
		}
		if !c.Valid() {
			t.Errorf("%s: not valid, want valid", c)
		}
	}
	if payment.DeclineCode("stolen").Valid() {
		t.Error("an unknown decline code is valid")
	}
}
