package main

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
)

// adminReservationBody is GET /api/v1/admin/reservations/{order_id}'s answer.
type adminReservationBody struct {
	Reservation struct {
		reservationBody
		CreatedAt time.Time `json:"created_at"`
		UpdatedAt time.Time `json:"updated_at"`
	} `json:"reservation"`
	Events []outbox.Record `json:"events"`
}

func TestAnAdminReadsAReservationWithItsStockEvents(t *testing.T) {
	t.Parallel()
	s := startInventory(t, "", nil)
	mug := s.create(t, "MUG", 1800, "USD", 3)
	order := uuid.NewString()
	if r := s.saga(t, http.MethodPost, "/internal/reservations", reserveBody(order, mug.ID, 2)); r.Status != http.StatusCreated {
		t.Fatalf("reserve: %d %s", r.Status, r.Body)
	}
	if r := s.saga(t, http.MethodPost, "/internal/reservations/"+order+"/release", ""); r.Status != http.StatusOK {
		t.Fatalf("release: %d %s", r.Status, r.Body)
	}
	admin := programtest.Bearer(s.admin)
	path := s.url + "/api/v1/admin/reservations/"

	r := call(t, http.MethodGet, path+order, "", admin...)
	if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("admin read: %d %v %s", r.Status, r.Header, r.Body)
	}
	var got adminReservationBody
	r.JSON(t, &got)
	res := got.Reservation
	if res.OrderID != order || res.Status != "released" || res.TotalCents != 3600 || res.Currency != "USD" ||
		len(res.Items) != 1 || res.Items[0] != (lineBody{mug.ID, 2, 1800}) || res.ExpiresAt.IsZero() ||
		res.CreatedAt.IsZero() || res.UpdatedAt.Before(res.CreatedAt) {
		t.Errorf("reservation %+v; want the order's released reservation of 2 mugs", res)
	}
	var types []string
	for _, e := range got.Events {
		types = append(types, e.Type)
		if e.Stream != "events.inventory" || e.Subject != order || e.ID == uuid.Nil || e.Time.IsZero() {
			t.Errorf("event %+v; want one on events.inventory about the order", e)
		}
	}
	// Only the order's: the product.created of the mug is about the product.
	if !slices.Equal(types, []string{"stock.reserved", "stock.released"}) {
		t.Errorf("events %v; want stock.reserved then stock.released", types)
	}

	// An order refused for want of stock has no reservation to show, like an unknown one.
	refused := uuid.NewString()
	s.saga(t, http.MethodPost, "/internal/reservations", reserveBody(refused, mug.ID, 50)).problem(t, http.StatusConflict)
	call(t, http.MethodGet, path+refused, "", admin...).problem(t, http.StatusNotFound)
	call(t, http.MethodGet, path+uuid.NewString(), "", admin...).problem(t, http.StatusNotFound)
	call(t, http.MethodGet, path+"not-an-id", "", admin...).problem(t, http.StatusNotFound)

	// Admins only.
	call(t, http.MethodGet, path+order, "", programtest.Bearer(s.customer)...).problem(t, http.StatusForbidden)
	call(t, http.MethodGet, path+order, "").problem(t, http.StatusUnauthorized)
}
