package notification_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

var (
	at      = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	orderID = uuid.MustParse("00000000-0000-4000-8000-00001a2b3c4d")
	payID   = uuid.MustParse("9f8e7d6c-0000-4000-8000-000000000002")
	prodA   = uuid.MustParse("00000000-0000-4000-8000-0000aaaaaaaa")
	prodB   = uuid.MustParse("00000000-0000-4000-8000-0000bbbbbbbb")
)

func recipient(t *testing.T, name string) notification.Recipient {
	t.Helper()
	r, err := notification.NewRecipient(uuid.New(), "ann@example.com", name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func usd(cents int64) notification.Money { return notification.Money{Cents: cents, Currency: "USD"} }

func TestMoneyString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		m    notification.Money
		want string
	}{
		{usd(0), "$0.00"},
		{usd(5), "$0.05"},
		{usd(1999), "$19.99"},
		{usd(123456789), "$1,234,567.89"},
		{usd(-250), "-$2.50"},
		{notification.Money{Cents: 100000, Currency: "EUR"}, "€1,000.00"},
		{notification.Money{Cents: 500, Currency: "JPY"}, "¥500"},
		{notification.Money{Cents: 1234, Currency: "KWD"}, "1.234 KWD"},
		{notification.Money{Cents: 1250, Currency: "CHF"}, "12.50 CHF"},
		{notification.Money{Cents: 99, Currency: "GBP"}, "£0.99"},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestNewMoney(t *testing.T) {
	t.Parallel()
	if m, err := notification.NewMoney(1999, "usd"); err != nil {
		t.Errorf("NewMoney(1999, usd): %v, want no error", err)
	} else if m != usd(1999) {
		t.Errorf("NewMoney(1999, usd) = %+v, want %+v", m, usd(1999))
	}
	for _, bad := range []struct {
		cents    int64
		currency string
	}{{-1, "USD"}, {1, ""}, {1, "US"}, {1, "U$D"}, {1, "DOLLARS"}} {
		if _, err := notification.NewMoney(bad.cents, bad.currency); err == nil {
			t.Errorf("NewMoney(%d, %q) accepted", bad.cents, bad.currency)
		}
	}
}

func TestNewRecipient(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	r, err := notification.NewRecipient(id, "ann@example.com", "  Ann\r\nBcc: evil@example.com \x00 ")
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "Ann Bcc: evil@example.com" {
		t.Errorf("recipient name %q, want %q: control characters must go", r.Name, "Ann Bcc: evil@example.com")
	}
	if r.Email != "ann@example.com" {
		t.Errorf("recipient e-mail %q, want ann@example.com", r.Email)
	}
	if r.UserID != id {
		t.Errorf("recipient user %s, want %s", r.UserID, id)
	}
	for _, bad := range []struct {
		id    uuid.UUID
		email string
	}{{uuid.Nil, "ann@example.com"}, {id, ""}, {id, "not an address"}, {id, "Ann <ann@example.com>"}, {id, "a@example.com, b@example.com"}} {
		if _, err := notification.NewRecipient(bad.id, bad.email, "Ann"); err == nil {
			t.Errorf("NewRecipient(%v, %q) accepted", bad.id, bad.email)
		}
	}
}

func TestNewIsQueuedWithItsSubject(t *testing.T) {
	t.Parallel()
	r := recipient(t, "Ann")
	ev := uuid.New()
	for _, tc := range []struct {
		kind notification.Kind
		d    notification.Details
		want string
	}{
		{notification.KindWelcome, notification.Details{}, "Welcome to Bazaar, Ann"},
		{notification.KindOrderConfirmed, notification.Details{OrderID: orderID, Total: usd(2598)}, "Your order 1A2B3C4D is confirmed"},
		{notification.KindOrderCancelled, notification.Details{OrderID: orderID, Total: usd(2598), Reason: notification.ReasonOutOfStock}, "Your order 1A2B3C4D was cancelled"},
		{notification.KindPaymentRefunded, notification.Details{OrderID: orderID, PaymentID: payID, Refunded: usd(1250)}, "Your refund of $12.50 is on its way"},
		{notification.KindDailySalesReport, notification.Details{Sales: salesReport()}, "Bazaar daily sales for 2026-11-25"},
	} {
		n := notification.New(ev, tc.kind, r, tc.d, at)
		if n.Subject != tc.want {
			t.Errorf("New(%s): subject %q, want %q", tc.kind, n.Subject, tc.want)
		}
		if n.Status != notification.StatusQueued {
			t.Errorf("New(%s): status %q, want %q", tc.kind, n.Status, notification.StatusQueued)
		}
		if n.Kind != tc.kind {
			t.Errorf("New(%s): kind %q, want %q", tc.kind, n.Kind, tc.kind)
		}
		if n.EventID != ev {
			t.Errorf("New(%s): event %s, want %s", tc.kind, n.EventID, ev)
		}
		if n.UserID != r.UserID {
			t.Errorf("New(%s): user %s, want %s", tc.kind, n.UserID, r.UserID)
		}
		if n.Recipient != r.Email {
			t.Errorf("New(%s): recipient %q, want %q", tc.kind, n.Recipient, r.Email)
		}
		if n.Details.Name != "Ann" {
			t.Errorf("New(%s): name %q, want Ann", tc.kind, n.Details.Name)
		}
		if n.ID == uuid.Nil {
			t.Errorf("New(%s): nil id, want one", tc.kind)
		}
		if want := at.Truncate(time.Microsecond); !n.CreatedAt.Equal(want) {
			t.Errorf("New(%s): created at %v, want %v", tc.kind, n.CreatedAt, want)
		}
		if !n.SentAt.IsZero() {
			t.Errorf("New(%s): sent at %v, want zero", tc.kind, n.SentAt)
		}
	}
	if n := notification.New(ev, notification.KindWelcome, recipient(t, ""), notification.Details{}, at); n.Subject != "Welcome to Bazaar" {
		t.Errorf("welcome without a name: subject %q", n.Subject)
	}
}

func TestCancelReasonWords(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, r := range []notification.CancelReason{notification.ReasonOutOfStock, notification.ReasonPaymentDeclined,
		notification.ReasonInsufficientFunds, notification.ReasonCustomerRequest, notification.ReasonTimeout} {
		w := r.Words()
		if w == "" {
			t.Errorf("%s.Words() empty, want words", r)
		}
		if strings.Contains(w, "_") {
			t.Errorf("%s.Words() = %q, want words, not the code", r, w)
		}
		if seen[w] {
			t.Errorf("%s.Words() = %q, the same as another reason's; want distinct words", r, w)
		}
		seen[w] = true
	}
	w := notification.CancelReason("meteor_strike").Words()
	if w == "" {
		t.Error("an unknown reason is worded empty; want a neutral sentence")
	}
	if strings.Contains(w, "meteor") {
		t.Errorf("an unknown reason is worded %q; want a neutral sentence, not the code", w)
	}
}
