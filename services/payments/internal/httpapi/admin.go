package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
)

// EventLog reads the events this service wrote about subjects (payment ids) from its
// outbox, oldest first (see postgres.Store.Events).
type EventLog interface {
	Events(ctx context.Context, subjects []string) ([]outbox.Record, error)
}

// adminPaymentResponse is a payment as operators see it: whose it is, how it was
// paid, where it stands and when it got there, and the events about it.
type adminPaymentResponse struct {
	ID          string          `json:"id"`
	OrderID     string          `json:"order_id"`
	UserID      string          `json:"user_id"`
	AmountCents int64           `json:"amount_cents"`
	Currency    string          `json:"currency"`
	Method      string          `json:"method"`
	Status      string          `json:"status"`
	DeclineCode *string         `json:"decline_code"`
	CreatedAt   time.Time       `json:"created_at"`
	SettledAt   *time.Time      `json:"settled_at"`
	RefundedAt  *time.Time      `json:"refunded_at"`
	Events      []outbox.Record `json:"events"` // outbox.Record is the wire form: pkg/outbox says why
}

type adminPaymentsResponse struct {
	OrderID  string                 `json:"order_id"`
	Payments []adminPaymentResponse `json:"payments"`
}

func toAdminPaymentResponse(p payment.Payment) adminPaymentResponse {
	r := adminPaymentResponse{
		ID: p.ID.String(), OrderID: p.OrderID.String(), UserID: p.UserID.String(), AmountCents: p.Amount.Cents,
		Currency: p.Amount.Currency.String(), Method: string(p.Method), Status: string(p.Status),
		CreatedAt: p.CreatedAt.UTC(), Events: []outbox.Record{},
	}
	if p.DeclineCode != "" {
		code := string(p.DeclineCode)
		r.DeclineCode = &code
	}
	if !p.SettledAt.IsZero() {
		at := p.SettledAt.UTC()
		r.SettledAt = &at
	}
	if !p.RefundedAt.IsZero() {
		at := p.RefundedAt.UTC()
		r.RefundedAt = &at
	}
	return r
}

// adminPayments answers GET /api/v1/admin/payments?order_id=: the payments of the
// order, whichever user's it is (none when it was never charged), each with the
// events about it in the outbox (payment.captured, .declined, .refunded: their subject
// is the payment id). A pending payment is shown as it is stored, not settled with the
// processor. 422 when order_id is missing or not a UUID.
func adminPayments(log *slog.Logger, payments *payment.Service, events EventLog) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var f apperr.Fields
		order := apperr.Parse(&f, "order_id", r.URL.Query().Get("order_id"), payment.ParseID)
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		found, err := payments.OfOrder(r.Context(), order)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		resp := adminPaymentsResponse{OrderID: order.String(), Payments: make([]adminPaymentResponse, len(found))}
		subjects := make([]string, len(found))
		at := make(map[string]int, len(found))
		for i, p := range found {
			resp.Payments[i] = toAdminPaymentResponse(p)
			subjects[i], at[p.ID.String()] = p.ID.String(), i
		}
		if len(subjects) > 0 {
			records, err := events.Events(r.Context(), subjects)
			if err != nil {
				problem.Write(w, r, log, err)
				return
			}
			for _, e := range records {
				i := at[e.Subject]
				resp.Payments[i].Events = append(resp.Payments[i].Events, e)
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, resp)
	}
}
