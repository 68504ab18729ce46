package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// The story route is the gateway's own: it asks the services' admin routes through
// its own router, as the admin (token, request id, the client's address forwarded),
// and tells what they answered, a failing service as a gap; it is for admins only.
func TestAnOrdersStoryIsToldFromTheServicesAdminRoutes(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	known := uuid.New()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	answer := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	orders := newUpstream(t, "orders", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/admin/orders/"+known.String() {
			problem.Write(w, r, nil, apperr.E(apperr.NotFound, "no such order"))
			return
		}
		answer(map[string]any{
			"order": map[string]any{"id": known, "user_id": uuid.New(), "status": "confirmed", "cancel_reason": nil, "items": []any{},
				"total_cents": 100, "currency": "USD", "payment_method": "pm_card_visa", "created_at": at, "updated_at": at},
			"saga": map[string]any{"state": "done", "next_step": nil, "charge": "captured", "reserved": true, "failing_since": nil,
				"created_at": at, "updated_at": at, "finished_at": at,
				"steps": []any{map[string]any{"step": "reserve", "attempt": 1, "outcome": "ok", "at": at}}},
			"events": []any{map[string]any{"id": uuid.New(), "stream": "events.orders", "type": "order.created", "subject": known,
				"time": at, "published_at": nil, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		})(w, r)
	})
	inventory := newUpstream(t, "inventory", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, nil, apperr.E(apperr.Unavailable, "the inventory database is unavailable"))
	})
	payments := newUpstream(t, "payments", answer(map[string]any{"order_id": known, "payments": []any{}}))
	notifications := newUpstream(t, "notifications", answer(map[string]any{"notifications": []any{}, "inbox": []any{}}))
	gw := startGateway(t, map[string]string{
		"USERS_URL": users.URL, "ORDERS_URL": orders.URL, "INVENTORY_URL": inventory.URL,
		"PAYMENTS_URL": payments.URL, "NOTIFICATIONS_URL": notifications.URL,
	})
	adminTok := signWith(t, users.key, auth.RoleAdmin, 15*time.Minute)
	story := func(id, tok string) (*http.Response, []byte) {
		t.Helper()
		return send(t, http.MethodGet, gw.URL+"/api/v1/admin/orders/"+id+"/story", "", tok, http.Header{"X-Request-Id": {"story-1"}})
	}

	resp, body := story(known.String(), adminTok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("story: %d %s; want 200", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("story: Cache-Control %q; want no-store", cc)
	}
	var s struct {
		OrderID string `json:"order_id"`
		Order   *struct {
			Status string `json:"status"`
		} `json:"order"`
		Saga *struct {
			Steps []struct{ Step, Outcome string } `json:"steps"`
		} `json:"saga"`
		Reservation *json.RawMessage `json:"reservation"`
		Events      []struct {
			Type    string  `json:"type"`
			EntryID *string `json:"entry_id"`
		} `json:"events"`
		TraceID     string `json:"trace_id"`
		Unavailable []struct {
			Part   string `json:"part"`
			Status int    `json:"status"`
			Detail string `json:"detail"`
		} `json:"unavailable"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if s.OrderID != known.String() {
		t.Errorf("story of order %s; want %s", s.OrderID, known)
	}
	if s.Order == nil {
		t.Errorf("story without the order; want it: %s", body)
	} else if s.Order.Status != "confirmed" {
		t.Errorf("order status %q; want confirmed", s.Order.Status)
	}
	if s.Saga == nil {
		t.Errorf("story without the saga; want it: %s", body)
	} else if len(s.Saga.Steps) != 1 {
		t.Errorf("saga steps %+v; want 1", s.Saga.Steps)
	}
	if s.Reservation != nil {
		t.Errorf("reservation %s; want none, inventory being down", *s.Reservation)
	}
	if len(s.Events) != 1 {
		t.Errorf("events %+v; want 1", s.Events)
	} else if id := s.Events[0].EntryID; id != nil {
		t.Errorf("event %s with entry %s; want none", s.Events[0].Type, *id)
	}
	if s.TraceID != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("trace id %q; want 0af7651916cd43dd8448eb211c80319c", s.TraceID)
	}
	if len(s.Unavailable) != 1 {
		t.Errorf("unavailable %+v; want inventory's 503 alone", s.Unavailable)
	} else {
		gap := s.Unavailable[0]
		if gap.Part != "inventory" {
			t.Errorf("unavailable part %q; want inventory", gap.Part)
		}
		if gap.Status != http.StatusServiceUnavailable {
			t.Errorf("unavailable status %d; want 503", gap.Status)
		}
		if gap.Detail != "the inventory database is unavailable" {
			t.Errorf("unavailable detail %q; want %q", gap.Detail, "the inventory database is unavailable")
		}
	}
	// Each service was asked once, through the gateway's routes, as the admin.
	for name, u := range map[string]*upstream{"orders": orders, "inventory": inventory, "payments": payments, "notifications": notifications} {
		calls := u.calls()
		if len(calls) != 1 {
			t.Errorf("%s was asked %d times; want once", name, len(calls))
			continue
		}
		c := calls[0]
		if c.method != http.MethodGet {
			t.Errorf("%s got %s %s; want a GET", name, c.method, c.uri)
		}
		if !strings.HasPrefix(c.uri, "/api/v1/admin/") {
			t.Errorf("%s got %s; want its admin route, under /api/v1/admin/", name, c.uri)
		}
		if c.header.Get("Authorization") != "Bearer "+adminTok {
			t.Errorf("%s got %s without the admin's token; want it", name, c.uri)
		}
		if got := c.header.Get("X-Request-Id"); got != "story-1" {
			t.Errorf("%s got X-Request-Id %q; want the admin's story-1", name, got)
		}
		if got := c.header.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("%s got X-Forwarded-For %q; want 127.0.0.1", name, got)
		}
	}
	if c := notifications.calls(); len(c) == 1 && !strings.Contains(c[0].uri, "event_id=") {
		t.Errorf("notifications was asked %s; want the order.created event's id", c[0].uri)
	}

	for name, tc := range map[string]struct {
		id, tok string
		want    int
	}{
		"an unknown order": {uuid.NewString(), adminTok, http.StatusNotFound},
		"a malformed id":   {"not-an-id", adminTok, http.StatusNotFound},
		"a customer":       {known.String(), users.sign(t, 15*time.Minute), http.StatusForbidden},
		"anonymous":        {known.String(), "", http.StatusUnauthorized},
	} {
		resp, body := story(tc.id, tc.tok)
		if d := decodeProblem(t, resp, body); resp.StatusCode != tc.want || d.Status != tc.want {
			t.Errorf("%s: %d %+v; want %d", name, resp.StatusCode, d, tc.want)
		}
	}
	// A refused caller reaches no service; an unknown order's services are asked at
	// once with orders, so inventory was asked once more, for that one.
	if n := len(inventory.calls()); n != 2 {
		t.Errorf("inventory was asked %d times in all; want 2", n)
	}
}
