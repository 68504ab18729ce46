package order_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// fields lists the field names of an Invalid error, failing unless err is one.
func fields(t *testing.T, err error) []string {
	t.Helper()
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Code != apperr.Invalid {
		t.Fatalf("err = %v, want an Invalid apperr", err)
	}
	var names []string
	for _, f := range ae.Fields {
		names = append(names, f.Field)
	}
	return names
}

func TestParseNewOrderAcceptsAValidRequest(t *testing.T) {
	t.Parallel()
	a, b := uuid.New(), uuid.New()
	n, err := order.ParseNewOrder(order.RawNewOrder{
		Lines:         []order.RawLine{{ProductID: a.String(), Quantity: 1}, {ProductID: b.String(), Quantity: 100}},
		PaymentMethod: "pm_card_visa",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []order.WantedLine{{ProductID: a, Quantity: 1}, {ProductID: b, Quantity: 100}}
	if !slices.Equal(n.Lines, want) {
		t.Errorf("parsed lines %+v, want %+v", n.Lines, want)
	}
	if n.PaymentMethod != order.PaymentVisa {
		t.Errorf("parsed payment method %q, want %q", n.PaymentMethod, order.PaymentVisa)
	}
	for _, m := range []string{"pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds"} {
		if _, err := order.ParseNewOrder(order.RawNewOrder{Lines: []order.RawLine{{ProductID: a.String(), Quantity: 1}}, PaymentMethod: m}); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
}

func TestParseNewOrderReportsEveryBadField(t *testing.T) {
	t.Parallel()
	p := uuid.NewString()
	line := func(id string, q int) order.RawLine { return order.RawLine{ProductID: id, Quantity: q} }
	many := func(n int) []order.RawLine {
		lines := make([]order.RawLine, n)
		for i := range lines {
			lines[i] = line(uuid.NewString(), 1)
		}
		return lines
	}
	cases := []struct {
		name   string
		raw    order.RawNewOrder
		fields []string
	}{
		{"no lines", order.RawNewOrder{PaymentMethod: "pm_card_visa"}, []string{"items"}},
		{"51 lines", order.RawNewOrder{Lines: many(51), PaymentMethod: "pm_card_visa"}, []string{"items"}},
		{"quantity 0", order.RawNewOrder{Lines: []order.RawLine{line(p, 0)}, PaymentMethod: "pm_card_visa"}, []string{"items[0].quantity"}},
		{"quantity 101", order.RawNewOrder{Lines: []order.RawLine{line(p, 101)}, PaymentMethod: "pm_card_visa"}, []string{"items[0].quantity"}},
		{"negative quantity", order.RawNewOrder{Lines: []order.RawLine{line(p, -1)}, PaymentMethod: "pm_card_visa"}, []string{"items[0].quantity"}},
		{"malformed product id", order.RawNewOrder{Lines: []order.RawLine{line(p, 1), line("nope", 1)}, PaymentMethod: "pm_card_visa"}, []string{"items[1].product_id"}},
		{"braced product id", order.RawNewOrder{Lines: []order.RawLine{line("{"+p+"}", 1)}, PaymentMethod: "pm_card_visa"}, []string{"items[0].product_id"}},
		{"nil product id", order.RawNewOrder{Lines: []order.RawLine{line(uuid.Nil.String(), 1)}, PaymentMethod: "pm_card_visa"}, []string{"items[0].product_id"}},
		{"missing product id", order.RawNewOrder{Lines: []order.RawLine{line("", 1)}, PaymentMethod: "pm_card_visa"}, []string{"items[0].product_id"}},
		{"duplicate product", order.RawNewOrder{Lines: []order.RawLine{line(p, 1), line(p, 2)}, PaymentMethod: "pm_card_visa"}, []string{"items[1].product_id"}},
		{"missing payment method", order.RawNewOrder{Lines: []order.RawLine{line(p, 1)}}, []string{"payment_method"}},
		{"unknown payment method", order.RawNewOrder{Lines: []order.RawLine{line(p, 1)}, PaymentMethod: "pm_card_amex"}, []string{"payment_method"}},
		{"everything wrong", order.RawNewOrder{Lines: []order.RawLine{line("x", 0)}, PaymentMethod: "cash"},
			[]string{"items[0].product_id", "items[0].quantity", "payment_method"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := order.ParseNewOrder(c.raw)
			if got := fields(t, err); !slices.Equal(got, c.fields) {
				t.Errorf("fields %v, want %v (%v)", got, c.fields, err)
			}
		})
	}
}

func TestFingerprintIgnoresLineOrderButNotContent(t *testing.T) {
	t.Parallel()
	a, b := uuid.New(), uuid.New()
	n1 := order.NewOrder{Lines: []order.WantedLine{{a, 1}, {b, 2}}, PaymentMethod: order.PaymentVisa}
	n2 := order.NewOrder{Lines: []order.WantedLine{{b, 2}, {a, 1}}, PaymentMethod: order.PaymentVisa}
	n3 := order.NewOrder{Lines: []order.WantedLine{{a, 1}, {b, 3}}, PaymentMethod: order.PaymentVisa}
	n4 := order.NewOrder{Lines: []order.WantedLine{{a, 1}, {b, 2}}, PaymentMethod: order.PaymentDeclined}
	if n1.Fingerprint() != n2.Fingerprint() {
		t.Error("line order changed the fingerprint")
	}
	if n1.Fingerprint() == n3.Fingerprint() {
		t.Error("requests with different quantities share a fingerprint, want different ones")
	}
	if n1.Fingerprint() == n4.Fingerprint() {
		t.Error("requests with different payment methods share a fingerprint, want different ones")
	}
}

func TestIdempotentIDIsPerUserAndKey(t *testing.T) {
	t.Parallel()
	ann, bob := uuid.New(), uuid.New()
	if order.IdempotentID(ann, "k1") != order.IdempotentID(ann, "k1") {
		t.Error("same user and key gave different ids")
	}
	ids := map[uuid.UUID]string{}
	for _, c := range []struct {
		u uuid.UUID
		k string
	}{{ann, "k1"}, {ann, "k2"}, {bob, "k1"}} {
		id := order.IdempotentID(c.u, c.k)
		if prev, dup := ids[id]; dup {
			t.Errorf("%v/%s and %s share id %s", c.u, c.k, prev, id)
		}
		ids[id] = fmt.Sprint(c.u, c.k)
	}
}

func TestStatusAndStateParsing(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"pending", "reserved", "paid", "confirmed", "cancelling", "cancelled"} {
		if st, err := order.ParseStatus(s); err != nil {
			t.Errorf("ParseStatus(%q): %v, want no error", s, err)
		} else if string(st) != s {
			t.Errorf("ParseStatus(%q) = %q, want %q", s, st, s)
		}
	}
	if _, err := order.ParseStatus("shipped"); err == nil {
		t.Error("ParseStatus accepted shipped")
	}
	for _, s := range []string{"running", "stuck", "compensating", "compensation_failed", "done"} {
		if st, err := order.ParseSagaState(s); err != nil {
			t.Errorf("ParseSagaState(%q): %v, want no error", s, err)
		} else if string(st) != s {
			t.Errorf("ParseSagaState(%q) = %q, want %q", s, st, s)
		}
	}
	_, err := order.ParseSagaState("paused")
	if code := apperr.CodeOf(err); code != apperr.Invalid {
		t.Errorf("ParseSagaState(paused) = %v: code %s, want %s", err, code, apperr.Invalid)
	}
	if err == nil || !strings.Contains(err.Error(), "compensation_failed") {
		t.Errorf("ParseSagaState(paused) = %v, want it to name the states, compensation_failed among them", err)
	}
}
