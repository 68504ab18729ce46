package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

type lineRequest struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

type createRequest struct {
	Items         []lineRequest `json:"items"`
	PaymentMethod string        `json:"payment_method"`
}

func (req createRequest) toRaw() order.RawNewOrder {
	raw := order.RawNewOrder{PaymentMethod: req.PaymentMethod, Lines: make([]order.RawLine, len(req.Items))}
	for i, l := range req.Items {
		raw.Lines[i] = order.RawLine{ProductID: l.ProductID, Quantity: l.Quantity}
	}
	return raw
}

type lineResponse struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// orderResponse is an order as its owner sees it.
type orderResponse struct {
	ID            string         `json:"id"`
	UserID        string         `json:"user_id"`
	Status        string         `json:"status"`
	Items         []lineResponse `json:"items"`
	TotalCents    int64          `json:"total_cents"`
	Currency      string         `json:"currency"`
	PaymentMethod string         `json:"payment_method"`
	CancelReason  *string        `json:"cancel_reason"`
	CreatedAt     time.Time      `json:"created_at"`
	UpdatedAt     time.Time      `json:"updated_at"`
}

func toOrderResponse(o order.Order) orderResponse {
	r := orderResponse{
		ID: o.ID.String(), UserID: o.UserID.String(), Status: string(o.Status), Items: make([]lineResponse, len(o.Lines)),
		TotalCents: o.TotalCents, Currency: o.Currency, PaymentMethod: string(o.PaymentMethod),
		CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC(),
	}
	for i, l := range o.Lines {
		r.Items[i] = lineResponse{ProductID: l.ProductID.String(), Quantity: int(l.Quantity), UnitPriceCents: l.UnitPriceCents}
	}
	if o.CancelReason != order.ReasonNone {
		reason := string(o.CancelReason)
		r.CancelReason = &reason
	}
	return r
}

type listResponse[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// orderCursor is an order's position in a list of orders (created_at, then id).
func orderCursor(o order.Order) page.Cursor { return page.Cursor{Time: o.CreatedAt, ID: o.ID} }

func orderLocation(id uuid.UUID) string { return "/api/v1/orders/" + id.String() }

// maxKeyLen bounds an Idempotency-Key (Stripe's limit).
const maxKeyLen = 255

// keyWaitPoll is how often a request waits to see whether the request holding its
// Idempotency-Key has answered.
const keyWaitPoll = 25 * time.Millisecond

// createOrder answers POST /api/v1/orders: 201 with the finished order (confirmed, or
// cancelled with its reason), or 202 with the order still in progress when the saga
// could not finish within SAGA_INLINE_TIMEOUT (recovery finishes it); Location either
// way. With an Idempotency-Key the first answer is stored in keys and replayed for the
// same user and key; a repeat that comes while the first is running waits for its
// answer (at most keyTTL); the same key with another request is 422.
func createOrder(log *slog.Logger, orders *order.Service, keys IdempotencyKeys, keyTTL time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r, log)
		if !ok {
			return
		}
		var req createRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		n, err := order.ParseNewOrder(req.toRaw())
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		id, err := uuid.NewV7()
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if key != "" {
			if !saneKey(key) {
				problem.Write(w, r, log, &apperr.Error{Code: apperr.Invalid, Message: "the request has invalid fields",
					Fields: []apperr.FieldError{{Field: "Idempotency-Key", Message: "must be 1 to 255 printable ASCII characters"}}})
				return
			}
			c, err := claimKey(r.Context(), keys, keyTTL, p.UserID, key, n.Fingerprint())
			switch {
			case err != nil:
				problem.Write(w, r, log, err)
				return
			case c.State == order.KeyClaimReplay:
				w.Header().Set("Idempotent-Replayed", "true")
				writeStored(w, c.Status, c.Body, c.Location)
				return
			case c.State == order.KeyClaimMismatch:
				problem.Write(w, r, log, order.ErrKeyReused)
				return
			}
			id = order.IdempotentID(p.UserID, key)
		}
		o, err := orders.Create(r.Context(), p.UserID, id, n)
		if err != nil {
			if key != "" {
				// Let the client try again with the same key at once. When the order may
				// have been stored after all, the key stays bound to this request's
				// fingerprint: a retry of the same request finds the order (its id comes
				// from the key), another request with the key is still refused.
				dctx, cancel := detached(r.Context())
				release := keys.AbandonKey
				if order.MaybeStored(err) {
					release = keys.UnlockKey
				}
				if aerr := release(dctx, p.UserID, key); aerr != nil {
					log.WarnContext(r.Context(), "idempotency key not released; it expires by itself", "err", aerr)
				}
				cancel()
			}
			problem.Write(w, r, log, err)
			return
		}
		status := http.StatusAccepted
		if o.Status.Terminal() {
			status = http.StatusCreated
		}
		body, err := json.Marshal(toOrderResponse(o))
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		body = append(body, '\n')
		if key != "" {
			dctx, cancel := detached(r.Context())
			if err := keys.CompleteKey(dctx, p.UserID, key, status, body, orderLocation(o.ID)); err != nil {
				// The answer is still right; a repeat takes the claim over once it
				// expires and finds the order by its id.
				log.WarnContext(r.Context(), "idempotent answer not stored", "order_id", o.ID, "err", err)
			}
			cancel()
		}
		writeStored(w, status, body, orderLocation(o.ID))
	}
}

// claimKey claims the user's Idempotency-Key for a request with fingerprint, for ttl,
// waiting while another request holds it (order.KeyClaimBusy). It returns the claim
// once it is the caller's (order.KeyClaimNew), has an answer to replay or belongs to
// another request; an apperr.Conflict error when the other request still holds it
// after ttl and a second, or the store's error.
func claimKey(ctx context.Context, keys IdempotencyKeys, ttl time.Duration, userID uuid.UUID, key, fingerprint string) (order.KeyClaim, error) {
	ctx, cancel := context.WithTimeout(ctx, ttl+time.Second)
	defer cancel()
	tick := time.NewTicker(keyWaitPoll)
	defer tick.Stop()
	for {
		c, err := keys.ClaimKey(ctx, userID, key, fingerprint, ttl)
		if err != nil || c.State != order.KeyClaimBusy {
			return c, err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return order.KeyClaim{}, apperr.E(apperr.Conflict, "a request with this Idempotency-Key is still in progress; retry shortly")
		}
	}
}

func saneKey(k string) bool {
	if len(k) > maxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

func writeStored(w http.ResponseWriter, status int, body []byte, location string) {
	if location != "" {
		w.Header().Set("Location", location)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// detached is ctx without its cancellation, bounded: for bookkeeping that must happen
// even when the client has gone.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

// listOrders answers GET /api/v1/orders: the caller's orders, newest first, a page at
// a time.
func listOrders(log *slog.Logger, orders *order.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r, log)
		if !ok {
			return
		}
		pr, err := page.Parse(r.URL.Query())
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		found, err := orders.List(r.Context(), p.UserID, pr)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		items, next := page.Next(found, pr.Limit, orderCursor)
		resp := listResponse[orderResponse]{Items: make([]orderResponse, len(items)), NextCursor: next}
		for i, o := range items {
			resp.Items[i] = toOrderResponse(o)
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, resp)
	}
}

// getOrder answers GET /api/v1/orders/{id}: the caller's order; 404 for someone else's
// or a malformed id.
func getOrder(log *slog.Logger, orders *order.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, id, ok := principalAndID(w, r, log)
		if !ok {
			return
		}
		o, err := orders.Get(r.Context(), p.UserID, id)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, toOrderResponse(o))
	}
}

// cancelOrder answers POST /api/v1/orders/{id}/cancel: a confirmed order is refunded and
// restocked and comes back cancelled (customer_request), 200; when the compensation
// cannot finish within SAGA_INLINE_TIMEOUT it goes on in the background and the order
// comes back cancelling with 202. 409 for an order that is not confirmed.
func cancelOrder(log *slog.Logger, orders *order.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, id, ok := principalAndID(w, r, log)
		if !ok {
			return
		}
		o, err := orders.Cancel(r.Context(), p.UserID, id)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		status := http.StatusOK
		if o.Status != order.StatusCancelled {
			status = http.StatusAccepted
		}
		w.Header().Set("Location", orderLocation(o.ID))
		httpjson.Write(w, status, toOrderResponse(o))
	}
}

// principal is the caller, put in the context by the Require middleware.
func principal(w http.ResponseWriter, r *http.Request, log *slog.Logger) (auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok { // only reachable if the route lost its Require middleware
		problem.Write(w, r, log, apperr.E(apperr.Unauthorized, "a bearer access token is required"))
	}
	return p, ok
}

// principalAndID is the caller and the order id of the path; a malformed id is the
// same 404 as an unknown one.
func principalAndID(w http.ResponseWriter, r *http.Request, log *slog.Logger) (auth.Principal, uuid.UUID, bool) {
	p, ok := principal(w, r, log)
	if !ok {
		return p, uuid.Nil, false
	}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, log, order.ErrNotFound)
		return p, uuid.Nil, false
	}
	return p, id, true
}
