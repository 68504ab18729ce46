// Package fakes holds test doubles of the services the orders saga calls: an inventory
// and a payments service as httptest servers that implement docs/internal-api.md
// faithfully (idempotency, all-or-nothing reservations, problem+json refusals with
// their reasons), with switches to make them go down, slow, lose answers or refuse,
// and counters of the calls they served. Tests of the saga and of run() use them; the
// real services are exercised together by the e2e suite.
package fakes

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
)

// Product is a product the fake inventory sells.
type Product struct {
	ID         uuid.UUID
	PriceCents int64
	Currency   string
	Stock      int
}

type reservation struct {
	OrderID uuid.UUID
	Status  string // reserved, committed, released
	Items   []item
	// Prices are the unit prices when reserved, by product: what the order is
	// committed at, whatever the catalogue says later.
	Prices map[uuid.UUID]int64
}

type item struct {
	ProductID uuid.UUID `json:"product_id"`
	Quantity  int       `json:"quantity"`
}

// switches are the faults a fake can be told to show.
type switches struct {
	down    bool          // answer 503 to everything
	slow    time.Duration // wait this long before answering
	fails   map[string]bool
	answers map[string]int // kind → the status to answer instead (a 401, a 400)
}

// answer writes the fault the switches call for on a call of kind, and reports
// whether it did.
func (sw switches) answer(w http.ResponseWriter, r *http.Request, kind, service string) bool {
	switch code := sw.answers[kind]; {
	case sw.down || sw.fails[kind]:
		problem.Write(w, r, nil, apperr.E(apperr.Unavailable, "%s is down (fake)", service))
	case code != 0:
		problem.Write(w, r, nil, apperr.E(apperr.FromStatus(code), "%s answers %d (fake)", service, code))
	default:
		return false
	}
	return true
}

func newSwitches() switches {
	return switches{fails: map[string]bool{}, answers: map[string]int{}}
}

// snapshot is a copy of the switches to read without the fake's lock.
func (sw switches) snapshot() switches {
	c := sw
	c.fails, c.answers = maps.Clone(sw.fails), maps.Clone(sw.answers)
	return c
}

// Inventory is a fake inventory service.
type Inventory struct {
	URL string

	mu           sync.Mutex
	caller       caller
	sw           switches
	products     map[uuid.UUID]*Product
	reservations map[uuid.UUID]*reservation
	refused      map[uuid.UUID]bool // orders whose reservation was out of stock
	calls        map[string]int     // "reserve <order id>" → count
}

// NewInventory starts a fake inventory service for the test.
func NewInventory(t testing.TB) *Inventory {
	t.Helper()
	f := &Inventory{
		sw:           newSwitches(),
		products:     map[uuid.UUID]*Product{},
		reservations: map[uuid.UUID]*reservation{},
		refused:      map[uuid.UUID]bool{},
		calls:        map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /internal/quotes", f.guard("quote", f.quote))
	mux.HandleFunc("POST /internal/reservations", f.guard("reserve", f.reserve))
	mux.HandleFunc("POST /internal/reservations/{id}/commit", f.guard("commit", f.commit))
	mux.HandleFunc("POST /internal/reservations/{id}/release", f.guard("release", f.release))
	mux.HandleFunc("GET /internal/reservations/{id}", f.guard("get", f.get))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// RequireOrders makes the fake refuse, as the real inventory does, every call that
// does not carry the orders service's credential for inventory, checked against the
// public keys in trustDir.
func (f *Inventory) RequireOrders(t testing.TB, trustDir string) {
	t.Helper()
	v, err := svcauth.NewVerifier("inventory", trustDir)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.caller = caller{v}
}

// AddProduct adds a product priced priceCents USD with stock units.
func (f *Inventory) AddProduct(priceCents int64, stock int) uuid.UUID {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := uuid.New()
	f.products[id] = &Product{ID: id, PriceCents: priceCents, Currency: "USD", Stock: stock}
	return id
}

// SetPrice changes the product's price, as an admin's PATCH would.
func (f *Inventory) SetPrice(id uuid.UUID, priceCents int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.products[id].PriceCents = priceCents
}

// Stock is the product's stock now.
func (f *Inventory) Stock(id uuid.UUID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.products[id].Stock
}

// Reservation is the status of the order's reservation ("" when none).
func (f *Inventory) Reservation(orderID uuid.UUID) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.reservations[orderID]; ok {
		return r.Status
	}
	return ""
}

// Expire releases the order's reservation as the reservations:expire task would after
// its TTL: the stock goes back and a later commit is refused.
func (f *Inventory) Expire(orderID uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.reservations[orderID]; ok && r.Status == "reserved" {
		f.restock(r)
	}
}

// SetDown makes every call answer 503 (down=true) or work again.
func (f *Inventory) SetDown(down bool) { f.mu.Lock(); f.sw.down = down; f.mu.Unlock() }

// SetSlow makes every call wait d before it is handled (0: answer at once).
func (f *Inventory) SetSlow(d time.Duration) { f.mu.Lock(); f.sw.slow = d; f.mu.Unlock() }

// SetFailing makes calls of one kind (quote, reserve, commit, release, get) answer 503.
func (f *Inventory) SetFailing(kind string, failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sw.fails[kind] = failing
}

// SetAnswer makes calls of one kind answer status (0: work again).
func (f *Inventory) SetAnswer(kind string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sw.answers[kind] = status
}

// Calls is how many calls of kind (reserve, commit, release, get) were made for the
// order, or of any order when orderID is uuid.Nil; quotes count under uuid.Nil.
func (f *Inventory) Calls(kind string, orderID uuid.UUID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if orderID == uuid.Nil {
		return f.calls[kind]
	}
	return f.calls[kind+" "+orderID.String()]
}

// guard counts the call and applies the switches before handling it.
func (f *Inventory) guard(kind string, h func(w http.ResponseWriter, r *http.Request, orderID uuid.UUID)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The body is read up front: the server notices a client that gave up only
		// once the body is consumed, and slow answers must stop when it does.
		body := readBody(r)
		r.Body = readCloser(body)
		orderID, _ := uuid.Parse(r.PathValue("id"))
		if orderID == uuid.Nil && kind == "reserve" {
			var req struct {
				OrderID uuid.UUID `json:"order_id"`
			}
			_ = json.Unmarshal(body, &req)
			orderID = req.OrderID
		}
		f.mu.Lock()
		f.calls[kind]++
		if orderID != uuid.Nil {
			f.calls[kind+" "+orderID.String()]++
		}
		sw, c := f.sw.snapshot(), f.caller
		f.mu.Unlock()
		if c.refused(w, r) || !wait(r.Context(), sw.slow) || sw.answer(w, r, kind, "inventory") {
			return
		}
		h(w, r, orderID)
	}
}

type quoteLine struct {
	ProductID      uuid.UUID `json:"product_id"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
}

func (f *Inventory) quote(w http.ResponseWriter, r *http.Request, _ uuid.UUID) {
	var req struct {
		Items []item `json:"items"`
	}
	if err := httpjson.Decode(r, &req); err != nil {
		problem.Write(w, r, nil, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	lines, total, currency, err := f.price(req.Items)
	if err != nil {
		problem.Write(w, r, nil, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"items": lines, "total_cents": total, "currency": currency})
}

// price prices items; f.mu is held.
func (f *Inventory) price(items []item) ([]quoteLine, int64, string, error) {
	var fields apperr.Fields
	var lines []quoteLine
	var total int64
	currency := ""
	for i, it := range items {
		p, ok := f.products[it.ProductID]
		if !ok {
			fields.Add(fmt.Sprintf("items[%d].product_id", i), "no such product")
			continue
		}
		if currency != "" && p.Currency != currency {
			fields.Add(fmt.Sprintf("items[%d].product_id", i), "is priced in another currency")
		}
		currency = p.Currency
		lines = append(lines, quoteLine{ProductID: p.ID, Quantity: it.Quantity, UnitPriceCents: p.PriceCents})
		total += p.PriceCents * int64(it.Quantity)
	}
	return lines, total, currency, fields.Err()
}

func (f *Inventory) reserve(w http.ResponseWriter, r *http.Request, orderID uuid.UUID) {
	var req struct {
		OrderID uuid.UUID `json:"order_id"`
		Items   []item    `json:"items"`
	}
	if err := httpjson.Decode(r, &req); err != nil {
		problem.Write(w, r, nil, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if res, ok := f.reservations[req.OrderID]; ok {
		f.writeReservation(w, http.StatusOK, res)
		return
	}
	if f.refused[req.OrderID] {
		problem.Write(w, r, nil, apperr.R(apperr.Conflict, "out_of_stock", "not enough stock"))
		return
	}
	if _, _, _, err := f.price(req.Items); err != nil {
		problem.Write(w, r, nil, err)
		return
	}
	for _, it := range req.Items {
		if f.products[it.ProductID].Stock < it.Quantity {
			f.refused[req.OrderID] = true
			problem.Write(w, r, nil, apperr.R(apperr.Conflict, "out_of_stock", "not enough stock of "+it.ProductID.String()))
			return
		}
	}
	res := &reservation{OrderID: req.OrderID, Status: "reserved", Items: req.Items, Prices: map[uuid.UUID]int64{}}
	for _, it := range req.Items {
		f.products[it.ProductID].Stock -= it.Quantity
		res.Prices[it.ProductID] = f.products[it.ProductID].PriceCents
	}
	f.reservations[req.OrderID] = res
	f.writeReservation(w, http.StatusCreated, res)
}

func (f *Inventory) commit(w http.ResponseWriter, r *http.Request, orderID uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res, ok := f.reservations[orderID]
	switch {
	case !ok:
		problem.Write(w, r, nil, apperr.E(apperr.NotFound, "no such reservation"))
	case res.Status == "released":
		problem.Write(w, r, nil, apperr.R(apperr.Conflict, "reservation_released", "the reservation expired and was released"))
	default:
		res.Status = "committed"
		f.writeReservation(w, http.StatusOK, res)
	}
}

func (f *Inventory) release(w http.ResponseWriter, r *http.Request, orderID uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res, ok := f.reservations[orderID]
	if !ok {
		// Releasing what never existed succeeds: a compensation must always finish.
		f.writeReservation(w, http.StatusOK, &reservation{OrderID: orderID, Status: "released"})
		return
	}
	if res.Status != "released" {
		f.restock(res)
	}
	f.writeReservation(w, http.StatusOK, res)
}

// restock puts a reservation's stock back; f.mu is held.
func (f *Inventory) restock(res *reservation) {
	for _, it := range res.Items {
		f.products[it.ProductID].Stock += it.Quantity
	}
	res.Status = "released"
}

func (f *Inventory) get(w http.ResponseWriter, r *http.Request, orderID uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res, ok := f.reservations[orderID]
	if !ok {
		problem.Write(w, r, nil, apperr.E(apperr.NotFound, "no such reservation"))
		return
	}
	f.writeReservation(w, http.StatusOK, res)
}

// writeReservation answers with res at its reserved prices; f.mu is held.
func (f *Inventory) writeReservation(w http.ResponseWriter, status int, res *reservation) {
	lines, total, currency, _ := f.price(res.Items)
	if lines == nil {
		lines = []quoteLine{}
	}
	if res.Prices != nil {
		total = 0
		for i := range lines {
			lines[i].UnitPriceCents = res.Prices[lines[i].ProductID]
			total += lines[i].UnitPriceCents * int64(lines[i].Quantity)
		}
	}
	httpjson.Write(w, status, map[string]any{
		"order_id": res.OrderID, "status": res.Status, "items": lines, "total_cents": total, "currency": currency,
		"expires_at": time.Now().Add(15 * time.Minute).UTC(),
	})
}

// wait waits d, or until the caller gives up (false).
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
