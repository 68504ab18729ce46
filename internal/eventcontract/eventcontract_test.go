package eventcontract_test

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/eventcontract"
	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
	"github.com/bazaar-shop/bazaar/services/payments/paymentevents"
	"github.com/bazaar-shop/bazaar/services/users/userevents"
)

// payload is an event type's payload struct, and the fields its contract says are
// null in it.
type payload struct {
	new      func() any
	nullable []string
}

// payloads are every event type of every contract, by stream.
var payloads = map[string]map[string]payload{
	userevents.Stream: {
		string(userevents.TypeRegistered): {new: func() any { return new(userevents.Registered) }},
	},
	inventoryevents.Stream: {
		string(inventoryevents.TypeProductCreated): {new: func() any { return new(inventoryevents.ProductCreated) }},
		string(inventoryevents.TypeProductUpdated): {new: func() any { return new(inventoryevents.ProductUpdated) }},
		string(inventoryevents.TypeStockReserved):  {new: func() any { return new(inventoryevents.StockReserved) }},
		string(inventoryevents.TypeStockReleased):  {new: func() any { return new(inventoryevents.StockReleased) }},
	},
	paymentevents.Stream: {
		string(paymentevents.TypeCaptured): {new: func() any { return new(paymentevents.Captured) }, nullable: []string{"DeclineCode"}},
		string(paymentevents.TypeDeclined): {new: func() any { return new(paymentevents.Declined) }},
		string(paymentevents.TypeRefunded): {new: func() any { return new(paymentevents.Refunded) }},
	},
	orderevents.Stream: {
		string(orderevents.TypeCreated):    {new: func() any { return new(orderevents.Created) }},
		string(orderevents.TypeConfirmed):  {new: func() any { return new(orderevents.Confirmed) }},
		string(orderevents.TypeCancelled):  {new: func() any { return new(orderevents.Cancelled) }},
		string(orderevents.TypeDailySales): {new: func() any { return new(orderevents.DailySales) }},
	},
}

func TestEveryExampleIsItsPayloadTypeWithEveryFieldSetAndEncodesBackUnchanged(t *testing.T) {
	for _, c := range eventcontract.Contracts {
		types, ok := payloads[c.Stream]
		if !ok {
			t.Errorf("%s: no payload types listed in this test", c.Stream)
			continue
		}
		examples := eventcontract.ExamplesOn(t, c.Stream)
		for typ := range examples {
			if _, ok := types[typ]; !ok {
				t.Errorf("%s/testdata/%s.json: no such event type on %s", c.Dir, typ, c.Stream)
			}
		}
		for typ, p := range types {
			raw, ok := examples[typ]
			if !ok {
				t.Errorf("%s: no example of %s (testdata/%s.json)", c.Dir, typ, typ)
				continue
			}
			eventcontract.CheckPayload(t, typ, raw, p.new(), p.nullable...)
		}
	}
}

func TestEveryStreamHasOneContractPackageNamedAfterItsService(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range eventcontract.Contracts {
		if seen[c.Stream] {
			t.Errorf("%s has two contract packages", c.Stream)
		}
		seen[c.Stream] = true
		service := strings.TrimPrefix(c.Stream, "events.")
		if want := filepath.Join("services", service); !strings.HasPrefix(c.Dir, want+"/") {
			t.Errorf("%s's contract is in %s, not under %s", c.Stream, c.Dir, want)
		}
	}
	if want := []string{"events.inventory", "events.orders", "events.payments", "events.users"}; !slices.Equal(slices.Sorted(maps.Keys(seen)), want) {
		t.Errorf("streams with a contract: %v, want %v", seen, want)
	}
}

// A check that cannot fail proves nothing: each way an example can be wrong is caught.
func TestCheckPayloadRejectsUnknownMissingAndUnsetFields(t *testing.T) {
	for name, raw := range map[string]string{
		"an unknown field": `{"user_id":"0a000000-0000-4000-8000-000000000001","email":"a@example.com","name":"A","extra":1}`,
		"a missing field":  `{"user_id":"0a000000-0000-4000-8000-000000000001","email":"a@example.com"}`,
		"a zero field":     `{"user_id":"00000000-0000-0000-0000-000000000000","email":"a@example.com","name":"A"}`,
		"a retyped field":  `{"user_id":"0a000000-0000-4000-8000-000000000001","email":"a@example.com","name":7}`,
	} {
		ft := &fakeT{TB: t}
		eventcontract.CheckPayload(ft, name, []byte(raw), new(userevents.Registered))
		if !ft.failed {
			t.Errorf("%s passed CheckPayload", name)
		}
	}
	ft := &fakeT{TB: t}
	eventcontract.SameJSON(ft, "reordered", []byte(`{"a":1,"b":[1,2]}`), []byte(`{"b":[1,2],"a":1}`))
	eventcontract.CheckPayload(ft, "nested unset", []byte(`{"order_id":"0b000000-0000-4000-8000-0000000000a1","items":[]}`), new(inventoryevents.StockReserved))
	if !ft.failed || ft.errors != 1 {
		t.Errorf("SameJSON on reordered keys and CheckPayload on empty items: %d errors, want 1 (the empty items)", ft.errors)
	}
}

// fakeT records failures instead of failing the test.
type fakeT struct {
	testing.TB
	failed bool
	errors int
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true; f.errors++ }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true; f.errors++ }
