package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

// EventLog reads the events this service wrote about subjects from its outbox,
// oldest first (see postgres.Store.Events).
type EventLog interface {
	Events(ctx context.Context, subjects []string) ([]outbox.Record, error)
}

// adminReservation is a reservation as operators see it: as the saga does, and when
// it was made and last changed.
type adminReservation struct {
	reservationResponse
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type adminReservationResponse struct {
	Reservation adminReservation `json:"reservation"`
	Events      []outbox.Record  `json:"events"` // outbox.Record is the wire form: pkg/outbox says why
}

// getAdminReservation answers GET /api/v1/admin/reservations/{order_id}: the order's
// reservation (its status, lines and expiry) and the stock events written about the
// order (stock.reserved, stock.released: their subject is the order id). 404 when the
// order has no reservation (a refused one holds nothing and counts as none), or for a
// malformed id.
func getAdminReservation(log *slog.Logger, reservations *reservation.Service, events EventLog) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		order, err := pathID(r.PathValue("order_id"), reservation.ErrNotFound)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		res, err := reservations.Get(r.Context(), order)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		found, err := events.Events(r.Context(), []string{order.String()})
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, adminReservationResponse{
			Reservation: adminReservation{reservationResponse: toReservationResponse(res),
				CreatedAt: res.CreatedAt.UTC(), UpdatedAt: res.UpdatedAt.UTC()},
			Events: found,
		})
	}
}
