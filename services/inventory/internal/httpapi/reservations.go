package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

type itemRequest struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// toBasket parses items into a basket, adding every bad field to f.
func toBasket(f *apperr.Fields, items []itemRequest) reservation.Basket {
	parsed := make([]reservation.Item, len(items))
	before := len(*f)
	for i, it := range items {
		parsed[i] = reservation.Item{
			ProductID: parseID(f, fmt.Sprintf("items[%d].product_id", i), it.ProductID),
			Quantity:  apperr.Parse(f, fmt.Sprintf("items[%d].quantity", i), it.Quantity, reservation.ParseQuantity),
		}
	}
	if len(*f) > before && len(items) > 0 {
		return reservation.Basket{} // the basket's own rules only make sense for valid items
	}
	b, err := reservation.NewBasket(parsed)
	var ae *apperr.Error
	if errors.As(err, &ae) {
		*f = append(*f, ae.Fields...)
	}
	return b
}

type quoteRequest struct {
	Items []itemRequest `json:"items"`
}

type lineResponse struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

func toLineResponses(lines []reservation.Line) []lineResponse {
	out := make([]lineResponse, len(lines))
	for i, l := range lines {
		out[i] = lineResponse{ProductID: l.ProductID.String(), Quantity: int(l.Quantity), UnitPriceCents: int64(l.UnitPrice)}
	}
	return out
}

type quoteResponse struct {
	Items      []lineResponse `json:"items"`
	TotalCents int64          `json:"total_cents"`
	Currency   string         `json:"currency"`
}

// quote answers POST /internal/quotes: the basket priced now; nothing changes.
func quote(log *slog.Logger, reservations *reservation.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req quoteRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		var f apperr.Fields
		basket := toBasket(&f, req.Items)
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		q, err := reservations.Quote(r.Context(), basket)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		httpjson.Write(w, http.StatusOK, quoteResponse{
			Items: toLineResponses(q.Lines), TotalCents: q.Total(), Currency: q.Currency.String(),
		})
	}
}

type reserveRequest struct {
	OrderID string        `json:"order_id"`
	Items   []itemRequest `json:"items"`
}

type reservationResponse struct {
	OrderID    string         `json:"order_id"`
	Status     string         `json:"status"`
	Items      []lineResponse `json:"items"`
	TotalCents int64          `json:"total_cents"`
	Currency   string         `json:"currency"`
	ExpiresAt  time.Time      `json:"expires_at"`
}

func toReservationResponse(res reservation.Reservation) reservationResponse {
	return reservationResponse{
		OrderID:    res.OrderID.String(),
		Status:     string(res.Status),
		Items:      toLineResponses(res.Lines),
		TotalCents: res.Total(),
		Currency:   res.Currency.String(),
		ExpiresAt:  res.ExpiresAt.UTC(),
	}
}

// reservationPath is where a reservation is read.
func reservationPath(order uuid.UUID) string { return "/internal/reservations/" + order.String() }

// reserve answers POST /internal/reservations: 201 with the new reservation, or 200
// with the order's existing one; 409 out_of_stock when a line is short.
func reserve(log *slog.Logger, reservations *reservation.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req reserveRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		var f apperr.Fields
		order := parseID(&f, "order_id", req.OrderID)
		basket := toBasket(&f, req.Items)
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		res, created, err := reservations.Reserve(r.Context(), order, basket)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
			w.Header().Set("Location", reservationPath(order))
			log.InfoContext(r.Context(), "stock reserved", "order_id", order, "total_cents", res.Total())
		}
		httpjson.Write(w, status, toReservationResponse(res))
	}
}

// reservationAction answers the routes on one order's reservation: GET, commit and
// release, each 200 with the reservation.
func reservationAction(log *slog.Logger, act func(r *http.Request, order uuid.UUID) (reservation.Reservation, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		order, err := pathID(r.PathValue("order_id"), reservation.ErrNotFound)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		res, err := act(r, order)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		httpjson.Write(w, http.StatusOK, toReservationResponse(res))
	}
}

// getReservation answers GET /internal/reservations/{order_id}: 200 or 404.
func getReservation(log *slog.Logger, reservations *reservation.Service) http.HandlerFunc {
	return reservationAction(log, func(r *http.Request, order uuid.UUID) (reservation.Reservation, error) {
		return reservations.Get(r.Context(), order)
	})
}

// commitReservation answers POST /internal/reservations/{order_id}/commit: 200
// committed; 409 reservation_released; 404 when there is none.
func commitReservation(log *slog.Logger, reservations *reservation.Service) http.HandlerFunc {
	return reservationAction(log, func(r *http.Request, order uuid.UUID) (reservation.Reservation, error) {
		return reservations.Commit(r.Context(), order)
	})
}

// releaseReservation answers POST /internal/reservations/{order_id}/release: 200
// released, the stock back, whatever state it was in (or none).
func releaseReservation(log *slog.Logger, reservations *reservation.Service) http.HandlerFunc {
	return reservationAction(log, func(r *http.Request, order uuid.UUID) (reservation.Reservation, error) {
		return reservations.Release(r.Context(), order)
	})
}
