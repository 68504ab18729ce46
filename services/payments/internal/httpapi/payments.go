package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
)

// publicPaymentResponse is a payment as its owner sees it: not the user id, method or
// processor reference.
type publicPaymentResponse struct {
	ID          string `json:"id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Status      string `json:"status"`
}

type listResponse struct {
	Items      []publicPaymentResponse `json:"items"`
	NextCursor *string                 `json:"next_cursor"`
}

func toPublicPaymentResponse(p payment.Payment) publicPaymentResponse {
	return publicPaymentResponse{
		ID:          p.ID.String(),
		OrderID:     p.OrderID.String(),
		AmountCents: p.Amount.Cents,
		Currency:    p.Amount.Currency.String(),
		Status:      string(p.Status),
	}
}

func cursorOf(p payment.Payment) page.Cursor { return page.Cursor{Time: p.CreatedAt, ID: p.ID} }

// list answers GET /api/v1/payments?order_id=: the caller's payments for the order,
// oldest first, a page at a time (?limit=1..100, default 20; ?cursor=). Another user's
// order has no payments for the caller: the list is empty, never a 403 that would say
// the order exists.
func list(log *slog.Logger, payments *payment.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller, ok := auth.FromContext(r.Context())
		if !ok { // only reachable if the route lost its Require middleware
			problem.Write(w, r, log, apperr.E(apperr.Unauthorized, "a bearer access token is required"))
			return
		}
		q := r.URL.Query()
		var f apperr.Fields
		order := apperr.Parse(&f, "order_id", q.Get("order_id"), payment.ParseID)
		pr, err := page.Parse(q)
		var pageErr *apperr.Error
		if errors.As(err, &pageErr) {
			f = append(f, pageErr.Fields...)
		}
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		found, err := payments.List(r.Context(), caller.UserID, order, pr)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		items, next := page.Next(found, pr.Limit, cursorOf)
		resp := listResponse{Items: make([]publicPaymentResponse, 0, len(items)), NextCursor: next}
		for _, p := range items {
			resp.Items = append(resp.Items, toPublicPaymentResponse(p))
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, resp)
	}
}
