package main

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
)

// adminOrderBody is GET /api/v1/admin/orders/{id}'s answer.
type adminOrderBody struct {
	Order orderBody `json:"order"`
	Saga  struct {
		OrderID     string  `json:"order_id"`
		OrderStatus string  `json:"order_status"`
		State       string  `json:"state"`
		NextStep    *string `json:"next_step"`
		Charge      string  `json:"charge"`
		Steps       []struct {
			Step    string    `json:"step"`
			Attempt int       `json:"attempt"`
			Outcome string    `json:"outcome"`
			Error   string    `json:"error"`
			At      time.Time `json:"at"`
		} `json:"steps"`
	} `json:"saga"`
	Events []outbox.Record `json:"events"`
}

func TestAnAdminReadsAnyOrderWithItsWholeSagaAndEvents(t *testing.T) {
	t.Parallel()
	s := startOrders(t, nil)
	apple := s.inv.AddProduct(120, 50)
	ann, annID := s.token(t, auth.RoleCustomer)
	admin, _ := s.token(t, auth.RoleAdmin)

	var placed orderBody
	r := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 2))
	r.JSON(t, &placed)
	if r.Status != http.StatusCreated || placed.Status != "confirmed" {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	path := s.url + "/api/v1/admin/orders/" + placed.ID

	// The relay publishes the events (Redis is there): wait until both say when.
	var got adminOrderBody
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r = call(t, http.MethodGet, path, admin, "")
		got = adminOrderBody{}
		r.JSON(t, &got)
		if r.Status != http.StatusOK {
			t.Fatalf("admin read: %d %s", r.Status, r.Body)
		}
		if len(got.Events) == 2 && got.Events[0].PublishedAt != nil && got.Events[1].PublishedAt != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the order's events were not both published in 20s: %s", r.Body)
		}
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q; want no-store", r.Header.Get("Cache-Control"))
	}
	if got.Order.ID != placed.ID || got.Order.UserID != annID.String() || got.Order.Status != "confirmed" || got.Order.TotalCents != 240 {
		t.Errorf("order %+v; want ann's confirmed order of 240", got.Order)
	}
	if got.Saga.OrderID != placed.ID || got.Saga.State != "done" || got.Saga.NextStep != nil || got.Saga.Charge != "captured" {
		t.Errorf("saga %+v; want done, captured, no next step", got.Saga)
	}
	var steps []string
	for _, st := range got.Saga.Steps {
		steps = append(steps, st.Step+":"+st.Outcome)
		if st.Attempt < 1 || st.At.IsZero() {
			t.Errorf("step %+v lacks its attempt or time", st)
		}
	}
	if !slices.Equal(steps, []string{"reserve:ok", "charge:ok", "commit:ok"}) {
		t.Errorf("steps %v; want reserve, charge, commit, each ok", steps)
	}
	for i, want := range []string{"order.created", "order.confirmed"} {
		e := got.Events[i]
		if e.Type != want || e.Stream != "events.orders" || e.Subject != placed.ID || e.ID == uuid.Nil ||
			e.Time.IsZero() || e.PublishedAt.Before(e.Time) {
			t.Errorf("event %d: %+v; want %s on events.orders about the order, published after it happened", i, e, want)
		}
	}

	t.Run("the whole step log, not only the latest entries", func(t *testing.T) {
		// A step that failed 60 times before it succeeded: the sagas list shows the
		// latest 50 entries, the order's admin view every one.
		id := uuid.MustParse(placed.ID)
		at := time.Now().UTC().Add(-time.Hour)
		for i := range 60 {
			if _, err := s.db.Exec(context.Background(),
				`INSERT INTO saga_steps (order_id, step, attempt, outcome, error, at) VALUES ($1, 'commit', $2, 'failed', 'boom', $3)`,
				id, i+1, at.Add(time.Duration(i)*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		var whole adminOrderBody
		call(t, http.MethodGet, path, admin, "").JSON(t, &whole)
		if n := len(whole.Saga.Steps); n != 63 || whole.Saga.Steps[0].Step != "reserve" || whole.Saga.Steps[62].Error != "boom" {
			t.Errorf("%d step log entries (first %+v); want all 63, oldest first", n, whole.Saga.Steps[0])
		}
	})

	t.Run("admins only; an unknown or malformed id is 404", func(t *testing.T) {
		call(t, http.MethodGet, path, ann, "").Problem(t, http.StatusForbidden)
		call(t, http.MethodGet, path, "", "").Problem(t, http.StatusUnauthorized)
		call(t, http.MethodGet, s.url+"/api/v1/admin/orders/"+uuid.NewString(), admin, "").Problem(t, http.StatusNotFound)
		call(t, http.MethodGet, s.url+"/api/v1/admin/orders/not-an-id", admin, "").Problem(t, http.StatusNotFound)
	})
}
