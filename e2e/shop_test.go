package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/invariants"
)

// The helpers of the catalogue, order and payment tests.

// settleTimeout bounds how long a test waits for every saga to end. Generous: after
// a crash, a saga the dead process held waits out its 30 s lease before recovery
// takes it over.
const settleTimeout = 3 * time.Minute

// shop is a running stack as the order tests reach it: through its gateway, its
// Mailpit, and (for the invariant checks) its databases.
type shop struct {
	base, mailpit string
	dbs           invariants.Databases
	ours          bool // the databases are reachable: a stack this run started
}

// sharedShop is the stack every test shares.
func sharedShop() shop {
	return shop{base: baseURL, mailpit: mailpitURL, dbs: sharedDBs, ours: sharedDBs.Orders != ""}
}

type productDoc struct {
	ID          string `json:"id"`
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Description string `json:"description"`
	PriceCents  int64  `json:"price_cents"`
	Currency    string `json:"currency"`
	Stock       int    `json:"stock"`
}

type orderLineDoc struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type orderDoc struct {
	ID           string         `json:"id"`
	UserID       string         `json:"user_id"`
	Status       string         `json:"status"`
	Items        []orderLineDoc `json:"items"`
	TotalCents   int64          `json:"total_cents"`
	Currency     string         `json:"currency"`
	CancelReason *string        `json:"cancel_reason"`
	CreatedAt    time.Time      `json:"created_at"`
	UpdatedAt    time.Time      `json:"updated_at"`
}

// reason is the cancel reason, "" for none.
func (o orderDoc) reason() string {
	if o.CancelReason == nil {
		return ""
	}
	return *o.CancelReason
}

func (o orderDoc) terminal() bool { return o.Status == "confirmed" || o.Status == "cancelled" }

// inProgress are the statuses of an order whose saga has not finished: the saga's
// steps, and cancelling while it is undone (docs/saga.md's state machine).
var inProgress = []string{"pending", "reserved", "paid", "cancelling"}

type paymentDoc struct {
	ID          string `json:"id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Status      string `json:"status"`
}

// item is one line of an order request.
type item struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

type orderRequest struct {
	Items         []item `json:"items"`
	PaymentMethod string `json:"payment_method,omitempty"`
}

// The Stripe test payment methods (docs/contract.md).
const (
	visa              = "pm_card_visa"
	declined          = "pm_card_chargeDeclined"
	insufficientFunds = "pm_card_chargeDeclinedInsufficientFunds"
)

// customer is a user a test orders as: its own (newCustomer) or one lent from the
// pool (shopper).
type customer struct {
	ID, Email, Token string
}

// newCustomer registers and logs in a user no other test uses, for a test that needs
// a customer with no history (one that counts the customer's orders, say). Each costs
// two of the gateway's sign-ins (see accounts_test.go); shopper costs none once the
// pool has one to lend.
func (sh shop) newCustomer(t *testing.T) customer {
	t.Helper()
	email := newEmail(t)
	u := sh.register(t, email, "correct horse battery", "Shopper "+randomHex(2))
	return customer{ID: u.ID, Email: email, Token: sh.login(t, email, "correct horse battery")}
}

func (sh shop) register(t *testing.T, email, password, name string) userDoc {
	t.Helper()
	var u userDoc
	decode(t, do(t, request{Base: sh.base, Method: "POST", Path: "/api/v1/auth/register",
		Body: map[string]string{"email": email, "password": password, "name": name}}), http.StatusCreated, &u)
	return u
}

func (sh shop) login(t *testing.T, email, password string) string {
	t.Helper()
	return sh.tokens(t, email, password).AccessToken
}

// tokens logs in and returns the whole answer.
func (sh shop) tokens(t *testing.T, email, password string) tokensDoc {
	t.Helper()
	var tok tokensDoc
	decode(t, do(t, request{Base: sh.base, Method: "POST", Path: "/api/v1/auth/login",
		Body: map[string]string{"email": email, "password": password}}), http.StatusOK, &tok)
	return tok
}

// adminToken is the seeded admin's access token, from one log-in per stack and run.
func (sh shop) adminToken(t *testing.T) string {
	t.Helper()
	return sh.accounts().admin.accessToken(t, sh)
}

// createProduct adds a product of the test's own, as the seeded admin: the only way
// to know exactly what stock it has while other tests order from the catalogue.
func (sh shop) createProduct(t *testing.T, stock int, priceCents int64) productDoc {
	t.Helper()
	sku := "E2E-" + strings.ToUpper(randomHex(6))
	var p productDoc
	decode(t, do(t, request{Base: sh.base, Method: "POST", Path: "/api/v1/products", Token: sh.adminToken(t),
		Body: map[string]any{"sku": sku, "name": "Test item " + sku, "description": "made by " + t.Name(),
			"price_cents": priceCents, "currency": "USD", "stock": stock}}), http.StatusCreated, &p)
	if p.ID == "" || p.SKU != sku || p.Stock != stock || p.PriceCents != priceCents || p.Currency != "USD" {
		t.Fatalf("created %+v; want sku %s, stock %d, %d USD", p, sku, stock, priceCents)
	}
	return p
}

// order is a POST /api/v1/orders request; key is the Idempotency-Key ("" for none).
func (sh shop) order(tok string, body any, key string) request {
	r := request{Base: sh.base, Method: "POST", Path: "/api/v1/orders", Token: tok, Body: body}
	if key != "" {
		r.Header = map[string]string{"Idempotency-Key": key}
	}
	return r
}

// placeOrder places an order and checks the answer: 201 with a finished order or 202
// with one in progress, its Location, its lines as asked.
func (sh shop) placeOrder(t *testing.T, c customer, pm string, items ...item) (orderDoc, response) {
	t.Helper()
	r := do(t, sh.order(c.Token, orderRequest{Items: items, PaymentMethod: pm}, ""))
	o := checkPlaced(t, r, c)
	if len(o.Items) != len(items) {
		t.Fatalf("order %s has %d lines; %d were ordered", o.ID, len(o.Items), len(items))
	}
	for i, it := range items {
		if o.Items[i].ProductID != it.ProductID || o.Items[i].Quantity != it.Quantity {
			t.Errorf("order line %d = %+v; want %+v", i, o.Items[i], it)
		}
	}
	return o, r
}

// checkPlaced checks a POST /orders answer as docs/contract.md has it and returns its order.
func checkPlaced(t *testing.T, r response, c customer) orderDoc {
	t.Helper()
	var o orderDoc
	switch r.StatusCode {
	case http.StatusCreated, http.StatusAccepted:
	default:
		t.Fatalf("POST /api/v1/orders → %d; want 201 or 202; body %s", r.StatusCode, r.Body)
	}
	if err := json.Unmarshal(r.Body, &o); err != nil {
		t.Fatalf("order %s: %v", r.Body, err)
	}
	if r.StatusCode == http.StatusCreated && !o.terminal() {
		t.Errorf("201 with status %q; want confirmed or cancelled", o.Status)
	}
	if r.StatusCode == http.StatusAccepted && !slices.Contains(inProgress, o.Status) {
		t.Errorf("202 with status %q; want one in progress %v", o.Status, inProgress)
	}
	if loc := r.Header.Get("Location"); loc != "/api/v1/orders/"+o.ID {
		t.Errorf("Location = %q; want /api/v1/orders/%s", loc, o.ID)
	}
	if o.UserID != c.ID {
		t.Errorf("order user_id %s; want the customer %s", o.UserID, c.ID)
	}
	// A cancelling order may already carry the reason it is being undone for.
	if o.Status != "cancelling" && (o.Status == "cancelled") != (o.CancelReason != nil) {
		t.Errorf("status %s with cancel_reason %v: a reason exactly when cancelled", o.Status, o.CancelReason)
	}
	return o
}

func (sh shop) getOrder(t *testing.T, tok, id string) orderDoc {
	t.Helper()
	var o orderDoc
	decode(t, do(t, request{Base: sh.base, Method: "GET", Path: "/api/v1/orders/" + id, Token: tok}), http.StatusOK, &o)
	return o
}

// waitOrder polls the order until its saga has finished (confirmed or cancelled).
func (sh shop) waitOrder(t *testing.T, tok, id string) orderDoc {
	t.Helper()
	var o orderDoc
	for deadline := time.Now().Add(settleTimeout); ; time.Sleep(200 * time.Millisecond) {
		r, err := send(t.Context(), request{Base: sh.base, Method: "GET", Path: "/api/v1/orders/" + id, Token: tok})
		if err == nil && r.StatusCode == http.StatusOK && json.Unmarshal(r.Body, &o) == nil && o.terminal() {
			return o
		}
		// Errors are expected while a program is down or restarting: keep polling.
		if time.Now().After(deadline) {
			t.Fatalf("order %s did not finish within %s; last seen %+v (%v)", id, settleTimeout, o, err)
		}
	}
}

// listOrders is every order of the customer (at most 100).
func (sh shop) listOrders(t *testing.T, tok string) []orderDoc {
	t.Helper()
	var page struct {
		Items      []orderDoc `json:"items"`
		NextCursor *string    `json:"next_cursor"`
	}
	decode(t, do(t, request{Base: sh.base, Method: "GET", Path: "/api/v1/orders?limit=100", Token: tok}), http.StatusOK, &page)
	if page.NextCursor != nil {
		t.Fatalf("more than 100 orders")
	}
	return page.Items
}

// payments is the customer's payments of an order.
func (sh shop) payments(t *testing.T, tok, orderID string) []paymentDoc {
	t.Helper()
	var page struct {
		Items []paymentDoc `json:"items"`
	}
	decode(t, do(t, request{Base: sh.base, Method: "GET", Path: "/api/v1/payments?order_id=" + url.QueryEscape(orderID), Token: tok}),
		http.StatusOK, &page)
	return page.Items
}

// product reads a product through the gateway, with its X-Cache header.
func (sh shop) product(t *testing.T, id string) (productDoc, response) {
	t.Helper()
	var p productDoc
	r := do(t, request{Base: sh.base, Method: "GET", Path: "/api/v1/products/" + id})
	decode(t, r, http.StatusOK, &p)
	return p, r
}

// waitStock polls the product through the gateway until its stock is want: the
// gateway's cache of it is dropped by inventory's stock events, which arrive a moment
// after the change.
func (sh shop) waitStock(t *testing.T, id string, want int) {
	t.Helper()
	var p productDoc
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		p, _ = sh.product(t, id)
		if p.Stock == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("product %s has stock %d through the gateway; want %d", id, p.Stock, want)
		}
	}
}

// mailWithSubject polls Mailpit until a message to addr whose subject contains part
// arrives, and returns it.
func (sh shop) mailWithSubject(t *testing.T, addr, part string) mailpitMessage {
	t.Helper()
	var seen []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(sh.mailpit + "/api/v1/search?query=" + url.QueryEscape(`to:"`+addr+`"`))
		if err != nil {
			continue
		}
		var page struct {
			Messages []mailpitMessage `json:"messages"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			continue
		}
		seen = seen[:0]
		for _, m := range page.Messages {
			if strings.Contains(m.Subject, part) {
				return m
			}
			seen = append(seen, m.Subject)
		}
	}
	t.Fatalf("no e-mail to %s with %q in its subject arrived; subjects seen: %q", addr, part, seen)
	return mailpitMessage{}
}

// checkInvariants waits until every order of the products (all orders, with none
// named) is settled and asserts the saga invariants of docs/contract.md on the databases. It
// says so and checks nothing on a stack that is not this run's.
func (sh shop) checkInvariants(t *testing.T, products ...string) {
	t.Helper()
	if !sh.ours {
		t.Log("invariants not checked: the stack's databases are not this run's (E2E_BASE_URL)")
		return
	}
	var opts []invariants.Option
	if len(products) > 0 {
		opts = append(opts, invariants.OnlyProducts(products...))
	}
	invariants.WaitSettled(t, sh.dbs, settleTimeout, opts...)
	invariants.Check(t, sh.dbs, opts...)
}

// shortID is how e-mails name an order: the last 8 characters of its id, upper case
// (the random tail of a UUIDv7; its head is a timestamp that orders share).
func shortID(id string) string { return strings.ToUpper(id[len(id)-8:]) }

// outcome is one request sent from a goroutine.
type outcome struct {
	resp response
	err  error
	took time.Duration
	at   time.Time // when it was sent
}

// concurrently sends n requests at once (made by req) and returns their outcomes in
// order.
func concurrently(ctx context.Context, n int, req func(i int) request) []outcome {
	out := make([]outcome, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start // all at once, as far as the scheduler allows
			out[i].at = time.Now()
			out[i].resp, out[i].err = send(ctx, req(i))
			out[i].took = time.Since(out[i].at)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// describeStatuses counts outcomes by HTTP status (or error), for messages.
func describeStatuses(out []outcome) string {
	counts := map[string]int{}
	for _, o := range out {
		if o.err != nil {
			counts["error"]++
		} else {
			counts[fmt.Sprint(o.resp.StatusCode)]++
		}
	}
	return fmt.Sprint(counts)
}
