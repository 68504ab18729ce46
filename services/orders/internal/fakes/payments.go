package fakes

import (
	"bytes"
	"io"
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

// Payment is a payment the fake payments service holds.
type Payment struct {
	ID            uuid.UUID `json:"id"`
	OrderID       uuid.UUID `json:"order_id"`
	UserID        uuid.UUID `json:"user_id"`
	AmountCents   int64     `json:"amount_cents"`
	Currency      string    `json:"currency"`
	Status        string    `json:"status"` // captured, declined, refunded
	DeclineCode   string    `json:"decline_code"`
	PaymentMethod string    `json:"-"`
}

// Payments is a fake payments service.
type Payments struct {
	URL string

	mu       sync.Mutex
	caller   caller
	sw       switches
	dropping bool // charge, then drop the connection instead of answering
	failing  bool // charge, then answer 503 (a processor error or a lost commit)
	payments map[uuid.UUID]*Payment
	voided   map[uuid.UUID]bool // orders refunded before any charge: never to be charged
	captures map[uuid.UUID]int  // how many times money was taken, per order
	calls    map[string]int
}

// RequireOrders makes the fake refuse, as the real payments does, every call that
// does not carry the orders service's credential for payments, checked against the
// public keys in trustDir.
func (f *Payments) RequireOrders(t testing.TB, trustDir string) {
	t.Helper()
	v, err := svcauth.NewVerifier("payments", trustDir)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.caller = caller{v}
}

// NewPayments starts a fake payments service for the test.
func NewPayments(t testing.TB) *Payments {
	t.Helper()
	f := &Payments{
		sw:       newSwitches(),
		payments: map[uuid.UUID]*Payment{},
		voided:   map[uuid.UUID]bool{},
		captures: map[uuid.UUID]int{},
		calls:    map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /internal/charges", f.guard("charge", f.charge))
	mux.HandleFunc("POST /internal/charges/{id}/refund", f.guard("refund", f.refund))
	mux.HandleFunc("GET /internal/charges/{id}", f.guard("lookup", f.lookup))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// SetDown makes every call answer 503 (down=true) or work again.
func (f *Payments) SetDown(down bool) { f.mu.Lock(); f.sw.down = down; f.mu.Unlock() }

// SetSlow makes every call wait d before it is handled (0: answer at once).
func (f *Payments) SetSlow(d time.Duration) { f.mu.Lock(); f.sw.slow = d; f.mu.Unlock() }

// SetFailing makes calls of one kind (charge, refund, lookup) answer 503.
func (f *Payments) SetFailing(kind string, failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sw.fails[kind] = failing
}

// SetDropping makes charges take effect and then drop the connection without an
// answer: the charge's outcome is lost on the way back.
func (f *Payments) SetDropping(drop bool) { f.mu.Lock(); f.dropping = drop; f.mu.Unlock() }

// SetFailingAfterCharge makes charges take effect and then answer 503, as the real
// service does when the processor took the money but its answer, or the commit that
// records it, failed.
func (f *Payments) SetFailingAfterCharge(fail bool) { f.mu.Lock(); f.failing = fail; f.mu.Unlock() }

// Payment is the order's payment, if any.
func (f *Payments) Payment(orderID uuid.UUID) (Payment, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.payments[orderID]
	if !ok {
		return Payment{}, false
	}
	return *p, true
}

// Captures is how many times money was taken for the order: never more than one.
func (f *Payments) Captures(orderID uuid.UUID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.captures[orderID]
}

// Calls is how many calls of kind (charge, refund, lookup) were made for the order,
// or of any order when orderID is uuid.Nil.
func (f *Payments) Calls(kind string, orderID uuid.UUID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if orderID == uuid.Nil {
		return f.calls[kind]
	}
	return f.calls[kind+" "+orderID.String()]
}

func (f *Payments) guard(kind string, h func(w http.ResponseWriter, r *http.Request, orderID uuid.UUID)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = readCloser(readBody(r)) // see Inventory.guard
		orderID, _ := uuid.Parse(r.PathValue("id"))
		if kind == "charge" {
			orderID, _ = uuid.Parse(r.Header.Get("Idempotency-Key"))
		}
		f.mu.Lock()
		f.calls[kind]++
		if orderID != uuid.Nil {
			f.calls[kind+" "+orderID.String()]++
		}
		sw, c := f.sw.snapshot(), f.caller
		f.mu.Unlock()
		if c.refused(w, r) || !wait(r.Context(), sw.slow) || sw.answer(w, r, kind, "payments") {
			return
		}
		h(w, r, orderID)
	}
}

type chargeRequest struct {
	OrderID       uuid.UUID `json:"order_id"`
	UserID        uuid.UUID `json:"user_id"`
	AmountCents   int64     `json:"amount_cents"`
	Currency      string    `json:"currency"`
	PaymentMethod string    `json:"payment_method"`
}

func (f *Payments) charge(w http.ResponseWriter, r *http.Request, key uuid.UUID) {
	var req chargeRequest
	if err := httpjson.Decode(r, &req); err != nil {
		problem.Write(w, r, nil, err)
		return
	}
	if key == uuid.Nil || key != req.OrderID {
		problem.Write(w, r, nil, apperr.E(apperr.Malformed, "Idempotency-Key must be the order id"))
		return
	}
	f.mu.Lock()
	p, seen := f.payments[req.OrderID]
	switch {
	case !seen && f.voided[req.OrderID]:
		f.mu.Unlock()
		problem.Write(w, r, nil, apperr.R(apperr.Conflict, "order_voided", "this order was cancelled before it was charged"))
		return
	case seen && (p.AmountCents != req.AmountCents || p.Currency != req.Currency || p.PaymentMethod != req.PaymentMethod || p.UserID != req.UserID):
		f.mu.Unlock()
		problem.Write(w, r, nil, apperr.E(apperr.Invalid, "this Idempotency-Key was used with a different charge"))
		return
	case !seen:
		p = &Payment{ID: uuid.New(), OrderID: req.OrderID, UserID: req.UserID, AmountCents: req.AmountCents,
			Currency: req.Currency, PaymentMethod: req.PaymentMethod}
		switch req.PaymentMethod {
		case "pm_card_visa":
			p.Status = "captured"
			f.captures[req.OrderID]++
		case "pm_card_chargeDeclined":
			p.Status, p.DeclineCode = "declined", "payment_declined"
		case "pm_card_chargeDeclinedInsufficientFunds":
			p.Status, p.DeclineCode = "declined", "insufficient_funds"
		default:
			f.mu.Unlock()
			problem.Write(w, r, nil, &apperr.Error{Code: apperr.Invalid, Message: "unknown payment method",
				Fields: []apperr.FieldError{{Field: "payment_method", Message: "is not a test payment method"}}})
			return
		}
		f.payments[req.OrderID] = p
	}
	answer := *p
	dropping, failing := f.dropping, f.failing
	f.mu.Unlock()
	if failing {
		problem.Write(w, r, nil, apperr.E(apperr.Unavailable, "the payment processor is unavailable (fake)"))
		return
	}
	if dropping {
		// The charge happened; the answer never arrives.
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	if answer.Status == "declined" {
		problem.Write(w, r, nil, apperr.R(apperr.PaymentRequired, answer.DeclineCode, answer.DeclineCode))
		return
	}
	httpjson.Write(w, http.StatusCreated, answer)
}

func (f *Payments) refund(w http.ResponseWriter, r *http.Request, orderID uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.payments[orderID]
	if !ok {
		// Nothing to refund is still a success: a compensation must always finish.
		// The order is voided, so that a charge still on its way takes no money.
		f.voided[orderID] = true
		httpjson.Write(w, http.StatusOK, map[string]any{"order_id": orderID, "status": "none"})
		return
	}
	if p.Status == "captured" {
		p.Status = "refunded"
	}
	httpjson.Write(w, http.StatusOK, p)
}

func (f *Payments) lookup(w http.ResponseWriter, r *http.Request, orderID uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.payments[orderID]
	if !ok {
		problem.Write(w, r, nil, apperr.E(apperr.NotFound, "no payment for this order"))
		return
	}
	httpjson.Write(w, http.StatusOK, p)
}

func readBody(r *http.Request) []byte {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return b
}

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }
