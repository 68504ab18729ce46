package e2e

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// storyDoc is GET /api/v1/admin/orders/{id}/story's answer, as far as the test reads it
// (the contract check holds the rest to docs/openapi.yaml).
type storyDoc struct {
	OrderID string    `json:"order_id"`
	Order   *orderDoc `json:"order"`
	Saga    *struct {
		State string `json:"state"`
		Steps []struct {
			Step    string `json:"step"`
			Attempt int    `json:"attempt"`
			Outcome string `json:"outcome"`
			Error   string `json:"error"`
		} `json:"steps"`
	} `json:"saga"`
	Events []struct {
		ID          string     `json:"id"`
		Stream      string     `json:"stream"`
		Type        string     `json:"type"`
		Time        time.Time  `json:"time"`
		PublishedAt *time.Time `json:"published_at"`
		EntryID     *string    `json:"entry_id"`
		Consumers   []struct {
			Group     string     `json:"group"`
			State     string     `json:"state"`
			HandledAt *time.Time `json:"handled_at"`
		} `json:"consumers"`
	} `json:"events"`
	Notifications []storyNotificationDoc `json:"notifications"`
	TraceID       string                 `json:"trace_id"`
	Unavailable   []json.RawMessage      `json:"unavailable"`
}

// storyNotificationDoc is a notification in a story, with its e-mail task.
type storyNotificationDoc struct {
	ID      string     `json:"id"`
	EventID string     `json:"event_id"`
	Kind    string     `json:"kind"`
	Status  string     `json:"status"`
	SentAt  *time.Time `json:"sent_at"`
	Task    *struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"task"`
}

// consumedBy reports whether the story's event of type typ was consumed by group,
// and when that group's inbox says it handled it.
func (s storyDoc) consumedBy(typ, group string) (bool, *time.Time) {
	for _, e := range s.Events {
		if e.Type != typ {
			continue
		}
		for _, c := range e.Consumers {
			if c.Group == group && c.State == "consumed" {
				return true, c.HandledAt
			}
		}
	}
	return false, nil
}

var traceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// poll asks cond every 100ms until it holds, and fails t once timeout has passed.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("not within %s: %s", timeout, what)
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for %s: %v", what, t.Context().Err())
		}
	}
}

// A confirmed order's whole story, as an admin reads it from the gateway: every saga
// step ok, the events of orders, inventory and payments, order.confirmed consumed by
// notifications (with its inbox time), the e-mail it led to sent, and the trace that
// ties them together. A customer may not read it.
func TestAConfirmedOrdersStoryIsToldWhole(t *testing.T) {
	setup(t)
	sh := sharedShop()
	p := sh.createProduct(t, 3, 1500)
	c := sh.shopper(t)
	o, _ := sh.placeOrder(t, c, visa, item{p.ID, 1})
	if !o.terminal() {
		o = sh.waitOrder(t, c.Token, o.ID)
	}
	if o.Status != "confirmed" {
		t.Fatalf("order %s is %s (%s); want confirmed", o.ID, o.Status, o.reason())
	}

	// The order_confirmed e-mail is sent: the end of the story's chain.
	poll(t, time.Minute, "the order_confirmed notification sent", func() bool {
		var list struct {
			Items []notificationDoc `json:"items"`
		}
		decode(t, do(t, request{Base: sh.base, Method: "GET", Path: "/api/v1/notifications?limit=100", Token: c.Token}), http.StatusOK, &list)
		return slices.ContainsFunc(list.Items, func(n notificationDoc) bool {
			return n.Kind == "order_confirmed" && n.Status == "sent" && strings.Contains(n.Subject, shortID(o.ID))
		})
	})

	admin := sh.adminToken(t)
	path := "/api/v1/admin/orders/" + o.ID + "/story"
	var s storyDoc
	// The consumer acknowledges an event just after committing what it made of it, so
	// the acknowledgement may trail the e-mail by a moment.
	poll(t, 15*time.Second, "order.confirmed consumed by the notifications group", func() bool {
		s = storyDoc{}
		decode(t, do(t, request{Base: sh.base, Method: "GET", Path: path, Token: admin}), http.StatusOK, &s)
		consumed, _ := s.consumedBy("order.confirmed", "notifications")
		return consumed
	})

	if len(s.Unavailable) != 0 {
		t.Errorf("unavailable parts %s; want a whole story", s.Unavailable)
	}
	if s.OrderID != o.ID {
		t.Errorf("the story is of order %s; want %s", s.OrderID, o.ID)
	}
	if s.Order == nil {
		t.Errorf("the story has no order; want %s confirmed", o.ID)
	} else {
		if s.Order.ID != o.ID {
			t.Errorf("the story's order is %s; want %s", s.Order.ID, o.ID)
		}
		if s.Order.Status != "confirmed" {
			t.Errorf("the story's order is %s; want confirmed", s.Order.Status)
		}
	}
	if s.Saga == nil || s.Saga.State != "done" || len(s.Saga.Steps) == 0 {
		t.Fatalf("saga %+v; want done, with its steps", s.Saga)
	}
	var steps []string
	for _, st := range s.Saga.Steps {
		steps = append(steps, st.Step)
		if st.Outcome != "ok" {
			t.Errorf("saga step %s (attempt %d) is %s: %s; want every step ok", st.Step, st.Attempt, st.Outcome, st.Error)
		}
	}
	if !slices.Equal(steps, []string{"reserve", "charge", "commit"}) {
		t.Errorf("saga steps %v; want reserve, charge, commit", steps)
	}

	var types []string
	for i, e := range s.Events {
		types = append(types, e.Type)
		if i > 0 && e.Time.Before(s.Events[i-1].Time) {
			t.Errorf("event %s comes before %s but happened after it", s.Events[i-1].Type, e.Type)
		}
		if e.PublishedAt == nil || e.EntryID == nil {
			t.Errorf("event %s: published %v, entry %v; want both", e.Type, e.PublishedAt, e.EntryID)
		}
	}
	for _, want := range []string{"order.created", "stock.reserved", "payment.captured", "order.confirmed"} {
		if !slices.Contains(types, want) {
			t.Errorf("events %v; want %s among them", types, want)
		}
	}
	if _, handledAt := s.consumedBy("order.confirmed", "notifications"); handledAt == nil {
		t.Error("order.confirmed consumed by notifications with no inbox time")
	}
	confirmed := ""
	for _, e := range s.Events {
		if e.Type == "order.confirmed" {
			confirmed = e.ID
		}
	}
	i := slices.IndexFunc(s.Notifications, func(n storyNotificationDoc) bool { return n.Kind == "order_confirmed" })
	if i < 0 {
		t.Fatalf("notifications %+v; want the order_confirmed one", s.Notifications)
	}
	n := s.Notifications[i]
	if n.Status != "sent" || n.SentAt == nil || n.EventID != confirmed {
		t.Errorf("notification %+v; want sent, made from order.confirmed %s", n, confirmed)
	}
	if n.Task != nil && (n.Task.ID != n.ID || n.Task.State != "completed") {
		t.Errorf("its email:send task %+v; want completed, with the notification's id", n.Task)
	}
	if !traceIDPattern.MatchString(s.TraceID) || s.TraceID == strings.Repeat("0", 32) {
		t.Errorf("trace id %q; want 32 hex digits", s.TraceID)
	}

	problem(t, do(t, request{Base: sh.base, Method: "GET", Path: path, Token: c.Token}), http.StatusForbidden)
}
