package loadgen

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeGateway plays the public API closely enough for a load run: accounts with
// one-use refresh tokens, a paged catalogue, orders whose outcome follows the payment
// method, idempotent creation with replays, pending orders that finish as they are
// read or streamed, cancellation, status streams, and a 429 now and then.
type fakeGateway struct {
	t *testing.T

	// Set before the first request:
	limitEvery   int  // every n-th POST /orders answers 429 (Retry-After: 0); 0: never
	pendingEvery int  // every n-th new order is answered 202 pending; 0: never
	noReplay     bool // idempotency broken: a repeated key makes a new order
	expiresIn    int  // seconds the access tokens last (default 900)
	hold         chan struct{}
	arrived      chan struct{} // with hold: told of each POST /orders, which waits
	// shoppersIn, with waitShoppers: POST /orders waits until that many shoppers (not
	// the admin) have logged in, closing it. A run stops signing its accounts in once
	// its orders are done, so a short one may otherwise end before all have.
	waitShoppers int
	shoppersIn   chan struct{}

	mu       sync.Mutex
	shoppers int               // shoppers' log-ins so far
	users    map[string]string // e-mail → password
	access   map[string]string // access token → e-mail
	refresh  map[string]string // refresh token → e-mail
	products []product
	orders   map[string]*fakeOrder
	keys     map[string]fakeAnswer // e-mail + key → the first answer
	requests map[string]int        // "METHOD pattern" → count
	posts    int
	created  int
}

type fakeOrder struct {
	ID, Owner, Status, Reason string
	final, finalReason        string // where a pending order ends
}

type fakeAnswer struct {
	status int
	body   []byte
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{t: t, users: map[string]string{}, access: map[string]string{}, refresh: map[string]string{},
		orders: map[string]*fakeOrder{}, keys: map[string]fakeAnswer{}, requests: map[string]int{}, expiresIn: 900,
		shoppersIn: make(chan struct{})}
	g.users[DefaultAdminEmail] = DefaultAdminPassword
	for i := range 7 {
		g.products = append(g.products, product{ID: fmt.Sprintf("0196f000-0000-7000-8000-%012d", i), PriceCents: 100 + int64(i),
			Currency: "USD", Stock: 1000})
	}
	return g
}

func (g *fakeGateway) start() *httptest.Server {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			g.mu.Lock()
			g.requests[pattern]++
			g.mu.Unlock()
			h(w, r)
		})
	}
	handle("POST /api/v1/auth/register", g.register)
	handle("POST /api/v1/auth/login", g.login)
	handle("POST /api/v1/auth/refresh", g.refreshTokens)
	handle("GET /api/v1/products", g.listProducts)
	handle("GET /api/v1/products/{id}", g.getProduct)
	handle("PATCH /api/v1/products/{id}", g.patchProduct)
	handle("POST /api/v1/orders", g.createOrder)
	handle("GET /api/v1/orders/{id}", g.getOrder)
	handle("POST /api/v1/orders/{id}/cancel", g.cancelOrder)
	handle("GET /api/v1/orders/{id}/events", g.orderEvents)
	srv := httptest.NewServer(mux)
	g.t.Cleanup(srv.Close)
	return srv
}

func (g *fakeGateway) count(pattern string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.requests[pattern]
}

func randomToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"urn:bazaar:problem:x","title":%q,"status":%d}`, http.StatusText(status), status)
}

func (g *fakeGateway) body(r *http.Request, v any) bool {
	if r.Header.Get("Content-Type") != "application/json" {
		g.t.Errorf("%s %s without the JSON content type", r.Method, r.URL.Path)
	}
	return json.NewDecoder(r.Body).Decode(v) == nil
}

func (g *fakeGateway) register(w http.ResponseWriter, r *http.Request) {
	var b struct{ Email, Password, Name string }
	if !g.body(r, &b) || b.Name == "" || len(b.Password) < 8 {
		writeProblem(w, http.StatusUnprocessableEntity)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.users[b.Email]; ok {
		writeProblem(w, http.StatusConflict)
		return
	}
	g.users[b.Email] = b.Password
	writeJSON(w, http.StatusCreated, map[string]string{"email": b.Email})
}

// pair makes a token pair for email; g.mu is held.
func (g *fakeGateway) pair(w http.ResponseWriter, email string) {
	a, rt := randomToken(), randomToken()
	g.access[a], g.refresh[rt] = email, email
	writeJSON(w, http.StatusOK, map[string]any{"access_token": a, "token_type": "Bearer", "expires_in": g.expiresIn, "refresh_token": rt})
}

func (g *fakeGateway) login(w http.ResponseWriter, r *http.Request) {
	var b struct{ Email, Password string }
	g.body(r, &b)
	g.mu.Lock()
	defer g.mu.Unlock()
	if p, ok := g.users[b.Email]; !ok || p != b.Password {
		writeProblem(w, http.StatusUnauthorized)
		return
	}
	if b.Email != DefaultAdminEmail {
		if g.shoppers++; g.shoppers == g.waitShoppers {
			close(g.shoppersIn)
		}
	}
	g.pair(w, b.Email)
}

func (g *fakeGateway) refreshTokens(w http.ResponseWriter, r *http.Request) {
	var b struct {
		RefreshToken string `json:"refresh_token"`
	}
	g.body(r, &b)
	g.mu.Lock()
	defer g.mu.Unlock()
	email, ok := g.refresh[b.RefreshToken]
	if !ok {
		writeProblem(w, http.StatusUnauthorized)
		return
	}
	delete(g.refresh, b.RefreshToken)
	g.pair(w, email)
}

// reset forgets every account and token, as a stack whose databases were dropped.
func (g *fakeGateway) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.users)
	clear(g.access)
	clear(g.refresh)
}

// user is the caller, or "" after answering 401.
func (g *fakeGateway) user(w http.ResponseWriter, r *http.Request) string {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g.mu.Lock()
	email := g.access[tok]
	g.mu.Unlock()
	if !ok || email == "" {
		writeProblem(w, http.StatusUnauthorized)
		return ""
	}
	return email
}

func (g *fakeGateway) listProducts(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 || limit > 100 {
		writeProblem(w, http.StatusUnprocessableEntity)
		return
	}
	from := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		if from, err = strconv.Atoi(strings.TrimPrefix(c, "c")); err != nil {
			writeProblem(w, http.StatusUnprocessableEntity)
			return
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	to := min(from+limit, len(g.products))
	page := map[string]any{"items": g.products[from:to], "next_cursor": nil}
	if to < len(g.products) {
		page["next_cursor"] = "c" + strconv.Itoa(to)
	}
	writeJSON(w, http.StatusOK, page)
}

func (g *fakeGateway) getProduct(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.products {
		if p.ID == r.PathValue("id") {
			writeJSON(w, http.StatusOK, p)
			return
		}
	}
	writeProblem(w, http.StatusNotFound)
}

func (g *fakeGateway) patchProduct(w http.ResponseWriter, r *http.Request) {
	email := g.user(w, r)
	if email == "" {
		return
	}
	if email != DefaultAdminEmail {
		writeProblem(w, http.StatusForbidden)
		return
	}
	var b struct {
		Stock *int `json:"stock"`
	}
	if !g.body(r, &b) || b.Stock == nil {
		writeProblem(w, http.StatusUnprocessableEntity)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, p := range g.products {
		if p.ID == r.PathValue("id") {
			g.products[i].Stock = *b.Stock
			writeJSON(w, http.StatusOK, g.products[i])
			return
		}
	}
	writeProblem(w, http.StatusNotFound)
}

// setStock sets every product's stock.
func (g *fakeGateway) setStock(stock ...int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.products {
		g.products[i].Stock = stock[i%len(stock)]
	}
}

func (o *fakeOrder) doc() map[string]any {
	var reason any
	if o.Reason != "" {
		reason = o.Reason
	}
	return map[string]any{"id": o.ID, "user_id": o.Owner, "status": o.Status, "cancel_reason": reason}
}

// finish ends a pending order as its payment says; g.mu is held.
func (o *fakeOrder) finish() {
	if o.Status != "confirmed" && o.Status != "cancelled" {
		o.Status, o.Reason = o.final, o.finalReason
	}
}

func (g *fakeGateway) createOrder(w http.ResponseWriter, r *http.Request) {
	email := g.user(w, r)
	if email == "" {
		return
	}
	if g.waitShoppers > 0 {
		select {
		case <-g.shoppersIn:
		case <-r.Context().Done():
			return
		}
	}
	if g.hold != nil {
		// Held until the client gives up (the body read, so that the server notices
		// the connection closing) or the test ends.
		_, _ = io.Copy(io.Discard, r.Body)
		g.arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-g.hold:
		}
		return
	}
	key := r.Header.Get("Idempotency-Key")
	var b orderRequest
	if key == "" {
		g.t.Error("POST /orders without an Idempotency-Key, want one")
		writeProblem(w, http.StatusUnprocessableEntity)
		return
	}
	if !g.body(r, &b) {
		g.t.Errorf("POST /orders: body does not decode as an order (read %+v)", b)
		writeProblem(w, http.StatusUnprocessableEntity)
		return
	}
	if len(b.Items) == 0 {
		g.t.Errorf("POST /orders: body %+v without items, want some", b)
		writeProblem(w, http.StatusUnprocessableEntity)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.posts++
	if g.limitEvery > 0 && g.posts%g.limitEvery == 0 {
		w.Header().Set("Retry-After", "0")
		writeProblem(w, http.StatusTooManyRequests)
		return
	}
	if a, ok := g.keys[email+" "+key]; ok && !g.noReplay {
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		w.Write(a.body)
		return
	}
	g.created++
	o := &fakeOrder{ID: fmt.Sprintf("0197a3b4-0000-7000-8000-%012d", g.created), Owner: email, final: "confirmed"}
	switch b.PaymentMethod {
	case PaymentDeclined:
		o.final, o.finalReason = "cancelled", "payment_declined"
	case PaymentInsufficient:
		o.final, o.finalReason = "cancelled", "insufficient_funds"
	}
	status := http.StatusCreated
	if g.pendingEvery > 0 && g.created%g.pendingEvery == 0 {
		o.Status, status = "pending", http.StatusAccepted
	} else {
		o.finish()
	}
	g.orders[o.ID] = o
	body, _ := json.Marshal(o.doc())
	g.keys[email+" "+key] = fakeAnswer{status, body}
	w.Header().Set("Location", "/api/v1/orders/"+o.ID)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// order is the caller's order named in the path, or nil after answering.
func (g *fakeGateway) order(w http.ResponseWriter, r *http.Request) *fakeOrder {
	email := g.user(w, r)
	if email == "" {
		return nil
	}
	g.mu.Lock()
	o := g.orders[r.PathValue("id")]
	g.mu.Unlock()
	if o == nil || o.Owner != email {
		writeProblem(w, http.StatusNotFound)
		return nil
	}
	return o
}

func (g *fakeGateway) getOrder(w http.ResponseWriter, r *http.Request) {
	o := g.order(w, r)
	if o == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	o.finish() // a pending order has finished by the time it is polled
	writeJSON(w, http.StatusOK, o.doc())
}

func (g *fakeGateway) cancelOrder(w http.ResponseWriter, r *http.Request) {
	o := g.order(w, r)
	if o == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case o.Status == "confirmed":
		o.Status, o.Reason = "cancelled", "customer_request"
	case o.Reason != "customer_request":
		writeProblem(w, http.StatusConflict)
		return
	}
	writeJSON(w, http.StatusOK, o.doc())
}

func (g *fakeGateway) orderEvents(w http.ResponseWriter, r *http.Request) {
	o := g.order(w, r)
	if o == nil {
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	g.mu.Lock()
	defer g.mu.Unlock()
	send := func() {
		fmt.Fprint(w, ": keep-alive\n\n")
		b, _ := json.Marshal(map[string]any{"order_id": o.ID, "status": o.Status, "cancel_reason": o.doc()["cancel_reason"]})
		fmt.Fprintf(w, "event: status\ndata: %s\n\n", b)
	}
	send()
	if o.Status == "pending" {
		o.Status = "paid"
		send()
		o.finish()
		send()
	}
}

// finalCounts are the orders by final status (and cancel reason).
func (g *fakeGateway) finalCounts() (confirmed int, cancelled map[string]int, ids map[string]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cancelled, ids = map[string]int{}, map[string]bool{}
	for id, o := range g.orders {
		ids[id] = true
		switch o.Status {
		case "confirmed":
			confirmed++
		case "cancelled":
			cancelled[o.Reason]++
		default:
			g.t.Errorf("order %s ended %s", id, o.Status)
		}
	}
	return confirmed, cancelled, ids
}
