package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
)

// chargeRequest is the body of POST /internal/charges.
type chargeRequest struct {
	OrderID       string `json:"order_id"`
	UserID        string `json:"user_id"`
	AmountCents   int64  `json:"amount_cents"`
	Currency      string `json:"currency"`
	PaymentMethod string `json:"payment_method"`
}

// toCharge parses the request and its Idempotency-Key into domain values, reporting
// every bad field (the header under its own name).
func (req chargeRequest) toCharge(key string) (payment.ChargeRequest, error) {
	var f apperr.Fields
	c := payment.ChargeRequest{
		OrderID: apperr.Parse(&f, "order_id", req.OrderID, payment.ParseID),
		UserID:  apperr.Parse(&f, "user_id", req.UserID, payment.ParseID),
		Amount: payment.Money{
			Cents:    apperr.Parse(&f, "amount_cents", req.AmountCents, payment.ParseAmount),
			Currency: apperr.Parse(&f, "currency", req.Currency, payment.ParseCurrency),
		},
		Method: apperr.Parse(&f, "payment_method", req.PaymentMethod, payment.ParseMethod),
	}
	apperr.Parse(&f, "Idempotency-Key", key, func(k string) (string, error) { return payment.ParseKey(k, c.OrderID) })
	return c, f.Err()
}

// paymentResponse is a payment as the saga sees it. DeclineCode is null unless the
// payment was declined.
type paymentResponse struct {
	ID          string  `json:"id"`
	OrderID     string  `json:"order_id"`
	UserID      string  `json:"user_id"`
	AmountCents int64   `json:"amount_cents"`
	Currency    string  `json:"currency"`
	Status      string  `json:"status"`
	DeclineCode *string `json:"decline_code"`
}

func toPaymentResponse(p payment.Payment) paymentResponse {
	r := paymentResponse{
		ID:          p.ID.String(),
		OrderID:     p.OrderID.String(),
		UserID:      p.UserID.String(),
		AmountCents: p.Amount.Cents,
		Currency:    p.Amount.Currency.String(),
		Status:      string(p.Status),
	}
	if p.DeclineCode != "" {
		code := string(p.DeclineCode)
		r.DeclineCode = &code
	}
	return r
}

// noChargeResponse answers a refund of an order that was never charged: there is
// nothing to refund, and the compensation that asked is done.
type noChargeResponse struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"` // always "none"
}

// charge answers POST /internal/charges: 201 with the captured payment, or a 402
// problem whose type is the decline code; a repeat answers the same.
func charge(log *slog.Logger, payments *payment.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req chargeRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		c, err := req.toCharge(r.Header.Get("Idempotency-Key"))
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		p, err := payments.Charge(r.Context(), c)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "charge answered", "order_id", p.OrderID, "payment_id", p.ID,
			"status", p.Status, "decline_code", p.DeclineCode)
		if err := p.Declined(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		w.Header().Set("Location", "/internal/charges/"+p.OrderID.String())
		httpjson.Write(w, http.StatusCreated, toPaymentResponse(p))
	}
}

// getCharge answers GET /internal/charges/{order_id}: 200 with the order's payment,
// settled first if a crash left it pending, or 404.
func getCharge(log *slog.Logger, payments *payment.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		order, ok := orderIDParam(r)
		if !ok {
			problem.Write(w, r, log, payment.ErrNotFound)
			return
		}
		p, err := payments.Payment(r.Context(), order)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		httpjson.Write(w, http.StatusOK, toPaymentResponse(p))
	}
}

// refund answers POST /internal/charges/{order_id}/refund: 200 with the payment,
// refunded once; a declined payment comes back as it is, and an order never charged
// is 200 {"order_id","status":"none"}, so a compensation can always finish.
func refund(log *slog.Logger, payments *payment.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		order, ok := orderIDParam(r)
		if !ok {
			problem.Write(w, r, log, payment.ErrNotFound)
			return
		}
		p, err := payments.Refund(r.Context(), order)
		switch {
		case errors.Is(err, payment.ErrNotFound):
			httpjson.Write(w, http.StatusOK, noChargeResponse{OrderID: order.String(), Status: "none"})
			return
		case err != nil:
			problem.Write(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "refund answered", "order_id", p.OrderID, "payment_id", p.ID, "status", p.Status)
		httpjson.Write(w, http.StatusOK, toPaymentResponse(p))
	}
}

// orderIDParam is the {order_id} of the path; a malformed one names no order (404).
func orderIDParam(r *http.Request) (uuid.UUID, bool) {
	id, err := payment.ParseID(r.PathValue("order_id"))
	return id, err == nil
}
