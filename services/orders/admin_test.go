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
	if r.Status != http.StatusCreated {
		t.Fatalf("create: status %d, want 201; body %s", r.Status, r.Body)
	}
	if placed.Status != "confirmed" {
		t.Fatalf("create: order status %q, want confirmed", placed.Status)
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
	if got.Order.ID != placed.ID {
		t.Errorf("order id %s, want %s", got.Order.ID, placed.ID)
	}
	if got.Order.UserID != annID.String() {
		t.Errorf("order user_id %s, want ann's %s", got.Order.UserID, annID)
	}
	if got.Order.Status != "confirmed" {
		t.Errorf("order status %q, want confirmed", got.Order.Status)
	}
	if got.Order.TotalCents != 240 {
		t.Errorf("order total_cents %d, want 240", got.Order.TotalCents)
	}
	if got.Saga.OrderID != placed.ID {
		t.Errorf("saga order_id %s, want %s", got.Saga.OrderID, placed.ID)
	}
	if got.Saga.State != "done" {
		t.Errorf("saga state %q, want done", got.Saga.State)
	}
	if got.Saga.NextStep != nil {
		t.Errorf("saga next_step %q, want null", *got.Saga.NextStep)
	}
	if got.Saga.Charge != "captured" {
		t.Errorf("saga charge %q, want captured", got.Saga.Charge)
	}
	var steps []string
	for _, st := range got.Saga.Steps {
		steps = append(steps, st.Step+":"+st.Outcome)
		if st.Attempt < 1 {
			t.Errorf("step %+v: attempt %d, want 1 or more", st, st.Attempt)
		}
		if st.At.IsZero() {
			t.Errorf("step %+v: zero time, want one", st)
		}
	}
	if !slices.Equal(steps, []string{"reserve:ok", "charge:ok", "commit:ok"}) {
		t.Errorf("steps %v; want reserve, charge, commit, each ok", steps)
	}
	for i, want := range []string{"order.created", "order.confirmed"} {
		e := got.Events[i]
		if e.Type != want {
			t.Errorf("event %d: type %q, want %s", i, e.Type, want)
		}
		if e.Stream != "events.orders" {
			t.Errorf("event %d: stream %q, want events.orders", i, e.Stream)
		}
		if e.Subject != placed.ID {
			t.Errorf("event %d: subject %q, want the order %s", i, e.Subject, placed.ID)
		}
		if e.ID == uuid.Nil {
			t.Errorf("event %d: nil id, want one", i)
		}
		if e.Time.IsZero() {
			t.Errorf("event %d: zero time, want one", i)
		}
		if e.PublishedAt.Before(e.Time) {
			t.Errorf("event %d: published at %v, want after it happened at %v", i, *e.PublishedAt, e.Time)
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
		if n := len(whole.Saga.Steps); n != 63 {
			t.Fatalf("%d step log entries, want all 63", n)
		}
		if first := whole.Saga.Steps[0]; first.Step != "reserve" {
			t.Errorf("first step log entry %+v, want the oldest, reserve", first)
		}
		if last := whole.Saga.Steps[62]; last.Error != "boom" {
			t.Errorf("last step log entry %+v, want the newest, with error boom", last)
		}
	})

	t.Run("admins only; an unknown or malformed id is 404", func(t *testing.T) {
		call(t, http.MethodGet, path, ann, "").Problem(t, http.StatusForbidden)
		call(t, http.MethodGet, path, "", "").Problem(t, http.StatusUnauthorized)
		call(t, http.MethodGet, s.url+"/api/v1/admin/orders/"+uuid.NewString(), admin, "").Problem(t, http.StatusNotFound)
		call(t, http.MethodGet, s.url+"/api/v1/admin/orders/not-an-id", admin, "").Problem(t, http.StatusNotFound)
	})
}
