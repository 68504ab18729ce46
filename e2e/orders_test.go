package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestBrowsingTheCatalogueIsPagedAndCached(t *testing.T) {
	setup(t)
	sh := sharedShop()

	// The seeded catalogue, a page at a time.
	type page struct {
		Items      []productDoc `json:"items"`
		NextCursor *string      `json:"next_cursor"`
	}
	var first, second page
	decode(t, do(t, request{Method: "GET", Path: "/api/v1/products?limit=5"}), http.StatusOK, &first)
	if len(first.Items) != 5 || first.NextCursor == nil {
		t.Fatalf("first page: %d items, next_cursor %v; want 5 and a cursor", len(first.Items), first.NextCursor)
	}
	decode(t, do(t, request{Method: "GET", Path: "/api/v1/products?limit=5&cursor=" + *first.NextCursor}), http.StatusOK, &second)
	for _, p := range second.Items {
		if slices.ContainsFunc(first.Items, func(q productDoc) bool { return q.ID == p.ID }) {
			t.Errorf("product %s is on both pages", p.ID)
		}
	}
	var all page
	decode(t, do(t, request{Method: "GET", Path: "/api/v1/products?limit=100"}), http.StatusOK, &all)
	if len(all.Items) < 20 {
		t.Errorf("%d products; want the seeded catalogue of at least 20", len(all.Items))
	}
	for _, p := range all.Items {
		if p.ID == "" {
			t.Errorf("product %+v lacks an id", p)
		}
		if p.SKU == "" {
			t.Errorf("product %+v lacks a SKU", p)
		}
		if p.Name == "" {
			t.Errorf("product %+v lacks a name", p)
		}
		if p.PriceCents <= 0 {
			t.Errorf("product %+v: price %d; want above 0", p, p.PriceCents)
		}
		if len(p.Currency) != 3 {
			t.Errorf("product %+v: currency %q; want a 3-letter code", p, p.Currency)
		}
		if p.Stock < 0 {
			t.Errorf("product %+v: stock %d; want 0 or more", p, p.Stock)
		}
	}
	problem(t, do(t, request{Method: "GET", Path: "/api/v1/products?limit=0"}), http.StatusUnprocessableEntity)

	// One product: read from inventory once, then from the gateway's cache. The
	// product.created event may reach the gateway just after the first read and drop
	// what it cached, so a HIT is waited for rather than expected on the second read.
	made := sh.createProduct(t, 7, 1999)
	got, miss := sh.product(t, made.ID)
	if x := miss.Header.Get("X-Cache"); x != "MISS" {
		t.Errorf("first read: X-Cache %q; want MISS", x)
	}
	if got != made {
		t.Errorf("read %+v; want what was created, %+v", got, made)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, r := sh.product(t, made.ID)
		if r.Header.Get("X-Cache") == "HIT" {
			if !bytes.Equal(r.Body, miss.Body) {
				t.Errorf("a cached read answered %s; the first read %s", r.Body, miss.Body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no read was a cache HIT in 10s (last X-Cache %q)", r.Header.Get("X-Cache"))
		}
	}
	problem(t, do(t, request{Method: "GET", Path: "/api/v1/products/" + uuid.NewString()}), http.StatusNotFound)
	problem(t, do(t, request{Method: "GET", Path: "/api/v1/products/not-an-id"}), http.StatusNotFound)

	// Writing the catalogue is the admin's.
	c := sh.shopper(t)
	body := map[string]any{"sku": "E2E-NOPE-" + randomHex(3), "name": "Nope", "price_cents": 100, "currency": "USD", "stock": 1}
	problem(t, do(t, request{Method: "POST", Path: "/api/v1/products", Body: body}), http.StatusUnauthorized)
	problem(t, do(t, request{Method: "POST", Path: "/api/v1/products", Body: body, Token: c.Token}), http.StatusForbidden)
	problem(t, do(t, request{Method: "POST", Path: "/api/v1/products", Token: sh.adminToken(t),
		Body: map[string]any{"sku": made.SKU, "name": "Again", "price_cents": 100, "currency": "USD", "stock": 1}}), http.StatusConflict)
}

func TestAnOrderIsConfirmedEmailedAndCancelledByItsCustomer(t *testing.T) {
	setup(t)
	sh := sharedShop()
	p := sh.createProduct(t, 10, 1250)
	c := sh.newCustomer(t)

	o, r := sh.placeOrder(t, c, visa, item{p.ID, 2})
	if r.StatusCode != http.StatusCreated || o.Status != "confirmed" {
		t.Fatalf("POST /orders → %d %s; want 201 confirmed: %s", r.StatusCode, o.Status, r.Body)
	}
	// Prices come from inventory, never from the client.
	if o.Items[0].UnitPriceCents != 1250 || o.TotalCents != 2500 || o.Currency != "USD" {
		t.Errorf("order %+v; want 2 × 1250 = 2500 USD", o)
	}
	got := sh.getOrder(t, c.Token, o.ID)
	if got.Status != "confirmed" {
		t.Errorf("GET the order: status %s; want confirmed as answered", got.Status)
	}
	if got.TotalCents != o.TotalCents {
		t.Errorf("GET the order: total %d; want %d as answered", got.TotalCents, o.TotalCents)
	}
	if list := sh.listOrders(t, c.Token); len(list) != 1 || list[0].ID != o.ID {
		t.Errorf("the customer's orders: %+v; want just %s", list, o.ID)
	}
	pays := sh.payments(t, c.Token, o.ID)
	if len(pays) != 1 || pays[0].Status != "captured" || pays[0].AmountCents != 2500 || pays[0].Currency != "USD" {
		t.Errorf("payments of the order: %+v; want one captured 2500 USD", pays)
	}
	sh.waitStock(t, p.ID, 8)
	sh.mailWithSubject(t, c.Email, "order "+shortID(o.ID)+" is confirmed")

	// The customer changes their mind: refund, restock, e-mail. Cancelled at once (200),
	// or, when the refund and the restock cannot both finish within the inline deadline
	// (a busy machine), cancelling (202) and cancelled in the background.
	var cancelled orderDoc
	r = do(t, request{Method: "POST", Path: "/api/v1/orders/" + o.ID + "/cancel", Token: c.Token})
	if r.StatusCode == http.StatusAccepted {
		decode(t, r, http.StatusAccepted, &cancelled)
		if cancelled.Status != "cancelling" {
			t.Errorf("cancel → 202 %s; want cancelling", cancelled.Status)
		}
		cancelled = sh.waitOrder(t, c.Token, o.ID)
	} else {
		decode(t, r, http.StatusOK, &cancelled)
	}
	if cancelled.Status != "cancelled" || cancelled.reason() != "customer_request" {
		t.Errorf("cancel → %s (%s); want cancelled (customer_request)", cancelled.Status, cancelled.reason())
	}
	pays = sh.payments(t, c.Token, o.ID)
	if len(pays) != 1 || pays[0].Status != "refunded" || pays[0].AmountCents != 2500 {
		t.Errorf("payments after the cancellation: %+v; want the one payment refunded", pays)
	}
	sh.waitStock(t, p.ID, 10)
	sh.mailWithSubject(t, c.Email, "order "+shortID(o.ID)+" was cancelled")
	sh.mailWithSubject(t, c.Email, "refund")

	sh.checkInvariants(t, p.ID)
}

func TestDeclinedCardsCancelTheOrderAndGiveTheStockBack(t *testing.T) {
	setup(t)
	sh := sharedShop()
	p := sh.createProduct(t, 5, 800)
	c := sh.shopper(t)

	for _, tc := range []struct{ method, reason string }{
		{declined, "payment_declined"},
		{insufficientFunds, "insufficient_funds"},
	} {
		o, r := sh.placeOrder(t, c, tc.method, item{p.ID, 3})
		if r.StatusCode != http.StatusCreated || o.Status != "cancelled" || o.reason() != tc.reason {
			t.Errorf("%s: %d %s (%s); want 201 cancelled (%s)", tc.method, r.StatusCode, o.Status, o.reason(), tc.reason)
		}
		for _, pay := range sh.payments(t, c.Token, o.ID) {
			if pay.Status == "captured" {
				t.Errorf("%s: a captured payment %+v for a cancelled order", tc.method, pay)
			}
		}
		// Only a confirmed order can be cancelled.
		problem(t, do(t, request{Method: "POST", Path: "/api/v1/orders/" + o.ID + "/cancel", Token: c.Token}), http.StatusConflict)
		sh.waitStock(t, p.ID, 5)
	}
	sh.checkInvariants(t, p.ID)
}

func TestTwentyConcurrentOrdersForFiveInStockSellFive(t *testing.T) {
	setup(t)
	sh := sharedShop()
	p := sh.createProduct(t, 5, 999)
	c := sh.shopper(t)

	out := concurrently(t.Context(), 20, func(int) request {
		return sh.order(c.Token, orderRequest{Items: []item{{p.ID, 1}}, PaymentMethod: visa}, "")
	})
	var orders []orderDoc
	for _, o := range out {
		if o.err != nil {
			t.Fatal(o.err)
		}
		placed := checkPlaced(t, o.resp, c)
		if !placed.terminal() { // a busy machine can push a saga past the inline deadline
			placed = sh.waitOrder(t, c.Token, placed.ID)
		}
		orders = append(orders, placed)
	}
	confirmed, outOfStock := 0, 0
	for _, o := range orders {
		switch {
		case o.Status == "confirmed":
			confirmed++
			pays := sh.payments(t, c.Token, o.ID)
			if len(pays) != 1 || pays[0].Status != "captured" || pays[0].AmountCents != 999 {
				t.Errorf("confirmed order %s has payments %+v; want one captured 999", o.ID, pays)
			}
		case o.Status == "cancelled" && o.reason() == "out_of_stock":
			outOfStock++
			if pays := sh.payments(t, c.Token, o.ID); len(pays) != 0 {
				t.Errorf("order %s, out of stock, has payments %+v; want none", o.ID, pays)
			}
		default:
			t.Errorf("order %s ended %s (%s); want confirmed or out_of_stock", o.ID, o.Status, o.reason())
		}
	}
	if confirmed != 5 || outOfStock != 15 {
		t.Errorf("%d confirmed, %d out of stock; want 5 and 15 (answers %s)", confirmed, outOfStock, describeStatuses(out))
	}
	sh.waitStock(t, p.ID, 0)
	sh.checkInvariants(t, p.ID)
}

func TestTheSameIdempotencyKeyTenTimesAtOnceMakesOneOrder(t *testing.T) {
	setup(t)
	sh := sharedShop()
	p := sh.createProduct(t, 20, 450)
	c := sh.newCustomer(t)
	key := "e2e-" + uuid.NewString()
	body := orderRequest{Items: []item{{p.ID, 3}}, PaymentMethod: visa}

	out := concurrently(t.Context(), 10, func(int) request { return sh.order(c.Token, body, key) })
	for i, o := range out {
		if o.err != nil {
			t.Fatal(o.err)
		}
		checkPlaced(t, o.resp, c)
		if o.resp.StatusCode != out[0].resp.StatusCode {
			t.Errorf("answer %d: %d; want the same as the first: %d", i, o.resp.StatusCode, out[0].resp.StatusCode)
		}
		if !bytes.Equal(o.resp.Body, out[0].resp.Body) {
			t.Errorf("answer %d: %s; want the same as the first: %s", i, o.resp.Body, out[0].resp.Body)
		}
		if got, want := o.resp.Header.Get("Location"), out[0].resp.Header.Get("Location"); got != want {
			t.Errorf("answer %d: Location %q; want the same as the first: %q", i, got, want)
		}
	}
	var o orderDoc
	if err := json.Unmarshal(out[0].resp.Body, &o); err != nil {
		t.Fatal(err)
	}
	if !o.terminal() {
		o = sh.waitOrder(t, c.Token, o.ID)
	}
	if o.Status != "confirmed" {
		t.Errorf("the order is %s (%s); want confirmed", o.Status, o.reason())
	}
	if list := sh.listOrders(t, c.Token); len(list) != 1 {
		t.Errorf("the customer has %d orders; want 1", len(list))
	}
	if pays := sh.payments(t, c.Token, o.ID); len(pays) != 1 || pays[0].Status != "captured" || pays[0].AmountCents != 1350 {
		t.Errorf("payments: %+v; want one captured 1350", pays)
	}
	sh.waitStock(t, p.ID, 17)

	// An eleventh time, later: the same answer again. With another body: 422.
	again := do(t, sh.order(c.Token, body, key))
	var replayed orderDoc
	decode(t, again, out[0].resp.StatusCode, &replayed)
	if replayed.ID != o.ID {
		t.Errorf("a later repeat answered order %s; want %s", replayed.ID, o.ID)
	}
	pr := problem(t, do(t, sh.order(c.Token, orderRequest{Items: []item{{p.ID, 4}}, PaymentMethod: visa}, key)), http.StatusUnprocessableEntity)
	if !slices.Contains(pr.fields(), "Idempotency-Key") {
		t.Errorf("the 422 names %v; want Idempotency-Key", pr.fields())
	}
	// Another customer's key of the same name is theirs.
	other := sh.shopper(t)
	var theirs orderDoc
	r := do(t, sh.order(other.Token, body, key))
	if r.StatusCode != http.StatusCreated && r.StatusCode != http.StatusAccepted {
		t.Fatalf("another customer with the same key: %d %s", r.StatusCode, r.Body)
	}
	_ = json.Unmarshal(r.Body, &theirs)
	if theirs.ID == o.ID {
		t.Error("another customer's request with the same key replayed the first customer's order")
	}
	sh.checkInvariants(t, p.ID)
}

func TestBadOrdersAreClearProblemsAndWriteNothing(t *testing.T) {
	setup(t)
	sh := sharedShop()
	p := sh.createProduct(t, 5, 300)
	c := sh.newCustomer(t)
	line := func(q int) item { return item{p.ID, q} }
	many := make([]item, 51)
	for i := range many {
		many[i] = item{uuid.NewString(), 1}
	}

	for _, tc := range []struct {
		name   string
		body   any
		status int
		fields []string
	}{
		{"unknown product", orderRequest{Items: []item{{uuid.NewString(), 1}}, PaymentMethod: visa}, http.StatusUnprocessableEntity, []string{"items[0].product_id"}},
		{"malformed product id", orderRequest{Items: []item{{"not-an-id", 1}}, PaymentMethod: visa}, http.StatusUnprocessableEntity, []string{"items[0].product_id"}},
		{"quantity 0", orderRequest{Items: []item{line(0)}, PaymentMethod: visa}, http.StatusUnprocessableEntity, []string{"items[0].quantity"}},
		{"quantity 101", orderRequest{Items: []item{line(101)}, PaymentMethod: visa}, http.StatusUnprocessableEntity, []string{"items[0].quantity"}},
		{"51 lines", orderRequest{Items: many, PaymentMethod: visa}, http.StatusUnprocessableEntity, []string{"items"}},
		{"no lines", orderRequest{Items: []item{}, PaymentMethod: visa}, http.StatusUnprocessableEntity, []string{"items"}},
		{"missing payment method", orderRequest{Items: []item{line(1)}}, http.StatusUnprocessableEntity, []string{"payment_method"}},
		{"unknown payment method", orderRequest{Items: []item{line(1)}, PaymentMethod: "pm_card_mastercard"}, http.StatusUnprocessableEntity, []string{"payment_method"}},
		{"malformed JSON", `{"items":[{"product_id":"` + p.ID + `","quantity":1}],"payment_method":`, http.StatusBadRequest, nil},
		{"unknown field", map[string]any{"items": []item{line(1)}, "payment_method": visa, "total_cents": 1}, http.StatusBadRequest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := problem(t, do(t, sh.order(c.Token, tc.body, "")), tc.status)
			for _, f := range tc.fields {
				if !slices.Contains(pr.fields(), f) {
					t.Errorf("the problem names %v; want %q among them", pr.fields(), f)
				}
			}
			if tc.status == http.StatusUnprocessableEntity && len(pr.Errors) == 0 {
				t.Error("a 422 without field errors")
			}
			if pr.Detail == "" && len(pr.Errors) == 0 {
				t.Error("the problem says nothing about what is wrong")
			}
		})
	}
	problem(t, do(t, sh.order("", orderRequest{Items: []item{line(1)}, PaymentMethod: visa}, "")), http.StatusUnauthorized)
	if list := sh.listOrders(t, c.Token); len(list) != 0 {
		t.Errorf("bad requests left %d orders: %+v", len(list), list)
	}

	// Someone else's order is not found, whatever one does with it.
	owner := sh.shopper(t)
	theirs, _ := sh.placeOrder(t, owner, visa, line(1))
	for _, r := range []request{
		{Method: "GET", Path: "/api/v1/orders/" + theirs.ID, Token: c.Token},
		{Method: "POST", Path: "/api/v1/orders/" + theirs.ID + "/cancel", Token: c.Token},
		{Method: "GET", Path: "/api/v1/orders/" + theirs.ID + "/events", Token: c.Token},
		{Method: "GET", Path: "/api/v1/orders/" + uuid.NewString(), Token: c.Token},
		{Method: "GET", Path: "/api/v1/orders/not-an-id", Token: c.Token},
	} {
		pr := problem(t, do(t, r), http.StatusNotFound)
		if strings.Contains(pr.Detail, owner.ID) {
			t.Errorf("%s %s: the 404 names the owner: %q", r.Method, r.Path, pr.Detail)
		}
	}
	for _, pay := range sh.payments(t, c.Token, theirs.ID) {
		t.Errorf("another customer sees the payment %+v", pay)
	}
	if got := sh.getOrder(t, owner.Token, theirs.ID); got.ID != theirs.ID {
		t.Errorf("the owner reads %+v", got)
	}
	// Nothing written: the stock is what the owner's one order left.
	want := 5
	if theirs := sh.waitOrder(t, owner.Token, theirs.ID); theirs.Status == "confirmed" {
		want = 4
	}
	sh.waitStock(t, p.ID, want)
	sh.checkInvariants(t, p.ID)
}
