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
	if r.Status != http.StatusOK {
		t.Fatalf("admin read: status %d, want 200; body %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("admin read: Cache-Control %q, want no-store", cc)
	}
	var got adminReservationBody
	r.JSON(t, &got)
	res := got.Reservation
	if res.OrderID != order {
		t.Errorf("reservation order_id %s, want %s", res.OrderID, order)
	}
	if res.Status != "released" {
		t.Errorf("reservation status %q, want released", res.Status)
	}
	if res.TotalCents != 3600 {
		t.Errorf("reservation total_cents %d, want 3600", res.TotalCents)
	}
	if res.Currency != "USD" {
		t.Errorf("reservation currency %q, want USD", res.Currency)
	}
	if len(res.Items) != 1 {
		t.Errorf("reservation items %+v, want one", res.Items)
	} else if want := (lineBody{mug.ID, 2, 1800}); res.Items[0] != want {
		t.Errorf("reservation item %+v, want %+v", res.Items[0], want)
	}
	if res.ExpiresAt.IsZero() {
		t.Error("reservation expires_at zero, want a time")
	}
	if res.CreatedAt.IsZero() {
		t.Error("reservation created_at zero, want a time")
	}
	if res.UpdatedAt.Before(res.CreatedAt) {
		t.Errorf("reservation updated_at %v, want no earlier than created_at %v", res.UpdatedAt, res.CreatedAt)
	}
	var types []string
	for _, e := range got.Events {
		types = append(types, e.Type)
		if e.Stream != "events.inventory" {
			t.Errorf("event %s: stream %q, want events.inventory", e.Type, e.Stream)
		}
		if e.Subject != order {
			t.Errorf("event %s: subject %q, want the order %s", e.Type, e.Subject, order)
		}
		if e.ID == uuid.Nil {
			t.Errorf("event %s: nil id, want one", e.Type)
		}
		if e.Time.IsZero() {
			t.Errorf("event %s: zero time, want one", e.Type)
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
