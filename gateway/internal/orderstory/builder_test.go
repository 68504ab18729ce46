package orderstory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/gateway/internal/inproc"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
)

const adminToken = "admin-token"

// fakeAPI answers the four admin endpoints a story is read from, as the gateway's
// handler would route them to the services: from canned answers, or with a problem
// for a service told to fail. It records the requests it was sent.
type fakeAPI struct {
	mu       sync.Mutex
	answers  map[string]any   // by path, without the query
	failures map[string]error // by path
	requests []*http.Request
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r)
	answer, failure := f.answers[r.URL.Path], f.failures[r.URL.Path]
	f.mu.Unlock()
	switch {
	case r.Header.Get("Authorization") != "Bearer "+adminToken:
		problem.Write(w, r, nil, apperr.E(apperr.Unauthorized, "a bearer access token is required"))
	case failure != nil:
		problem.Write(w, r, nil, failure)
	case answer == nil:
		problem.Write(w, r, nil, apperr.E(apperr.NotFound, "no such resource"))
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer)
	}
}

// fakeTasks holds tasks by id; with err set, every read fails.
type fakeTasks struct {
	held map[string]tasks.Info
	err  error
}

func (f fakeTasks) Get(_ context.Context, id string) (tasks.Info, error) {
	if f.err != nil {
		return tasks.Info{}, f.err
	}
	if i, ok := f.held[id]; ok {
		return i, nil
	}
	return tasks.Info{}, tasks.ErrTaskNotFound
}

// anOrder is a confirmed order's answers, as the services give them, its events
// published to rdb (order events handled by the notifications group, stock events
// still pending with the gateway's), and its e-mail's task.
type anOrder struct {
	id                                     uuid.UUID
	created, reserved, captured, confirmed events.Envelope
	notification                           uuid.UUID
	api                                    *fakeAPI
	tasks                                  fakeTasks
}

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func newOrder(t *testing.T, rdb *redis.Client) anOrder {
	t.Helper()
	ctx := context.Background()
	for stream, group := range map[string]string{"events.orders": "notifications", "events.payments": "notifications", "events.inventory": "gateway"} {
		if err := rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil && err.Error() != "BUSYGROUP Consumer Group name already exists" {
			t.Fatal(err)
		}
	}
	o := anOrder{id: uuid.New(), notification: uuid.New()}
	payment := uuid.New()
	base := time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)
	pub := func(stream, typ, subject string, at time.Time) (events.Envelope, map[string]any) {
		e := events.Envelope{ID: uuid.New(), Type: typ, Source: "test", Subject: subject, Time: at, Data: []byte(`{}`)}
		if typ == "order.created" {
			e.TraceParent = traceparent
		}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: e.Fields()}).Err(); err != nil {
			t.Fatal(err)
		}
		published := time.Now().UTC()
		return e, map[string]any{"id": e.ID, "stream": stream, "type": typ, "subject": subject, "time": at,
			"published_at": published, "traceparent": e.TraceParent}
	}
	// Written in the order they happened; each service reports its own.
	var createdRow, reservedRow, capturedRow, confirmedRow map[string]any
	o.created, createdRow = pub("events.orders", "order.created", o.id.String(), base)
	o.reserved, reservedRow = pub("events.inventory", "stock.reserved", o.id.String(), base.Add(10*time.Millisecond))
	o.captured, capturedRow = pub("events.payments", "payment.captured", payment.String(), base.Add(20*time.Millisecond))
	o.confirmed, confirmedRow = pub("events.orders", "order.confirmed", o.id.String(), base.Add(30*time.Millisecond))
	// notifications handles both order events and the payment's; the gateway has
	// stock.reserved in hand.
	for stream, group := range map[string]string{"events.orders": "notifications", "events.payments": "notifications", "events.inventory": "gateway"} {
		got, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: group + "@host", Streams: []string{stream, ">"}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		if group == "gateway" {
			continue
		}
		for _, m := range got[0].Messages {
			rdb.XAck(ctx, stream, group, m.ID)
		}
	}
	handled := base.Add(40 * time.Millisecond)
	sent := base.Add(50 * time.Millisecond)
	o.api = &fakeAPI{
		answers: map[string]any{
			"/api/v1/admin/orders/" + o.id.String(): map[string]any{
				"order": map[string]any{"id": o.id, "user_id": uuid.New(), "status": "confirmed", "cancel_reason": nil,
					"items": []any{map[string]any{"product_id": uuid.New(), "quantity": 2, "unit_price_cents": 1299}}, "total_cents": 2598,
					"currency": "USD", "payment_method": "pm_card_visa", "created_at": base, "updated_at": base.Add(30 * time.Millisecond)},
				"saga": map[string]any{"order_id": o.id, "state": "done", "next_step": nil, "charge": "captured", "reserved": true,
					"failing_since": nil, "created_at": base, "updated_at": base, "finished_at": base, "leased": false,
					"steps": []any{
						map[string]any{"step": "reserve", "attempt": 1, "outcome": "ok", "at": base},
						map[string]any{"step": "charge", "attempt": 1, "outcome": "failed", "error": "payments: timeout", "at": base},
						map[string]any{"step": "charge", "attempt": 2, "outcome": "ok", "at": base},
						map[string]any{"step": "commit", "attempt": 1, "outcome": "ok", "at": base},
					}},
				// orders lists its own in time order; the story merges the services'.
				"events": []any{createdRow, confirmedRow},
			},
			"/api/v1/admin/reservations/" + o.id.String(): map[string]any{
				"reservation": map[string]any{"order_id": o.id, "status": "committed", "items": []any{}, "total_cents": 2598,
					"currency": "USD", "expires_at": base.Add(15 * time.Minute), "created_at": base, "updated_at": base},
				"events": []any{reservedRow},
			},
			"/api/v1/admin/payments": map[string]any{
				"order_id": o.id,
				"payments": []any{map[string]any{"id": payment, "order_id": o.id, "user_id": uuid.New(), "amount_cents": 2598,
					"currency": "USD", "method": "pm_card_visa", "status": "captured", "decline_code": nil, "created_at": base,
					"settled_at": base, "refunded_at": nil, "events": []any{capturedRow}}},
			},
			"/api/v1/admin/notifications": map[string]any{
				"notifications": []any{map[string]any{"id": o.notification, "event_id": o.confirmed.ID, "kind": "order_confirmed",
					"user_id": uuid.New(), "recipient": "ann@example.com", "subject": "Your order is confirmed", "status": "sent",
					"attempts": 1, "error": nil, "message_id": "<" + o.notification.String() + "@bazaar.local>",
					"created_at": handled, "sent_at": sent}},
				"inbox": []any{
					map[string]any{"event_id": o.created.ID, "stream": "events.orders", "type": "order.created", "handled_at": handled},
					map[string]any{"event_id": o.confirmed.ID, "stream": "events.orders", "type": "order.confirmed", "handled_at": handled},
					map[string]any{"event_id": o.captured.ID, "stream": "events.payments", "type": "payment.captured", "handled_at": handled},
				},
			},
		},
		failures: map[string]error{},
	}
	o.tasks = fakeTasks{held: map[string]tasks.Info{o.notification.String(): {ID: o.notification.String(), Type: "email:send",
		Queue: "notifications:critical", State: tasks.StateCompleted, MaxRetry: 25, CompletedAt: sent}}}
	return o
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// callerContext is the context of an admin's request to the gateway from addr, whose
// request id the gateway's middleware put there.
func callerContext(addr string) context.Context {
	r := httptest.NewRequest(http.MethodGet, "/api/v1/admin/orders/x/story", nil)
	r.RemoteAddr = addr
	r.Header.Set("Cookie", "shop_session=secret") // the admin's browser's: never passed on
	return inproc.WithCaller(logging.WithRequestID(context.Background(), "req-42"), r)
}

func TestAStoryIsToldWhole(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t)
	o := newOrder(t, rdb)
	b := New(o.api, rdb, o.tasks, quiet())

	s, err := b.Build(callerContext("203.0.113.7:4711"), o.id, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Unavailable) != 0 {
		t.Errorf("unavailable %+v; want a whole story", s.Unavailable)
	}
	if s.OrderID != o.id {
		t.Errorf("order id %s; want %s", s.OrderID, o.id)
	}
	if s.Order == nil {
		t.Error("no order; want it")
	} else {
		if s.Order.Status != "confirmed" {
			t.Errorf("order status %q; want confirmed", s.Order.Status)
		}
		if s.Order.TotalCents != 2598 {
			t.Errorf("order total %d; want 2598", s.Order.TotalCents)
		}
		if len(s.Order.Items) != 1 {
			t.Errorf("order items %+v; want 1", s.Order.Items)
		}
	}
	var steps []string
	for _, st := range s.Saga.Steps {
		steps = append(steps, fmt.Sprintf("%s#%d:%s", st.Step, st.Attempt, st.Outcome))
	}
	if s.Saga.State != "done" {
		t.Errorf("saga state %q; want done", s.Saga.State)
	}
	if want := []string{"reserve#1:ok", "charge#1:failed", "charge#2:ok", "commit#1:ok"}; !slices.Equal(steps, want) {
		t.Errorf("saga steps %q; want its four steps %q", steps, want)
	} else if got := s.Saga.Steps[1].Error; got != "payments: timeout" {
		t.Errorf("saga step %s: error %q; want payments: timeout", steps[1], got)
	}
	if s.Reservation == nil {
		t.Error("no reservation; want the committed one")
	} else if s.Reservation.Status != "committed" {
		t.Errorf("reservation status %q; want committed", s.Reservation.Status)
	}
	if len(s.Payments) != 1 {
		t.Errorf("payments %+v; want 1", s.Payments)
	} else if s.Payments[0].Status != "captured" {
		t.Errorf("payment status %q; want captured", s.Payments[0].Status)
	}
	if s.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %q; want order.created's", s.TraceID)
	}

	// The events of three services, in the order they happened, each with its entry
	// and what its stream's group did with it.
	want := []struct {
		event events.Envelope
		group string
		state string
	}{
		{o.created, "notifications", Consumed},
		{o.reserved, "gateway", Pending},
		{o.captured, "notifications", Consumed},
		{o.confirmed, "notifications", Consumed},
	}
	if len(s.Events) != len(want) {
		t.Fatalf("events %+v; want %d", s.Events, len(want))
	}
	for i, w := range want {
		e := s.Events[i]
		if e.ID != w.event.ID || e.Type != w.event.Type {
			t.Errorf("event %d: %s %s; want %s %s", i, e.Type, e.ID, w.event.Type, w.event.ID)
			continue
		}
		if e.EntryID == nil {
			t.Errorf("event %d, %s: no entry; want its stream entry", i, e.Type)
			continue
		}
		if len(e.Consumers) != 1 {
			t.Errorf("event %d, %s: consumers %+v; want one group", i, e.Type, e.Consumers)
			continue
		}
		c := e.Consumers[0]
		if c.Group != w.group || c.State != w.state {
			t.Errorf("%s: consumer %+v; want %s %s", e.Type, c, w.group, w.state)
		}
		if (c.Group == "notifications") != (c.HandledAt != nil) {
			t.Errorf("%s: %s handled at %v; the notifications group's inbox time, and only its", e.Type, c.Group, c.HandledAt)
		}
	}
	if c := s.Events[1].Consumers[0]; c.Consumer != "gateway@host" || c.Deliveries != 1 {
		t.Errorf("the pending stock.reserved: %+v; want held by gateway@host, delivered once", c)
	}

	if len(s.Notifications) != 1 {
		t.Fatalf("notifications %+v; want the order_confirmed e-mail", s.Notifications)
	}
	n := s.Notifications[0]
	if n.ID != o.notification {
		t.Errorf("notification id %v; want %v", n.ID, o.notification)
	}
	if n.EventID != o.confirmed.ID {
		t.Errorf("notification of event %v; want order.confirmed's %v", n.EventID, o.confirmed.ID)
	}
	if n.Kind != "order_confirmed" {
		t.Errorf("notification kind %q; want order_confirmed", n.Kind)
	}
	if n.Status != "sent" {
		t.Errorf("notification status %q; want sent", n.Status)
	}
	if n.Recipient != "ann@example.com" {
		t.Errorf("notification recipient %q; want ann@example.com", n.Recipient)
	}
	if n.SentAt == nil {
		t.Error("notification without sent_at; want the time it was sent")
	}
	if n.Task == nil {
		t.Error("notification without its task; want it")
	} else {
		if n.Task.State != "completed" {
			t.Errorf("notification task state %q; want completed", n.Task.State)
		}
		if n.Task.Queue != "notifications:critical" {
			t.Errorf("notification task queue %q; want notifications:critical", n.Task.Queue)
		}
		if n.Task.CompletedAt == nil {
			t.Error("notification task without completed_at; want the time it completed")
		}
	}

	// Every call went through the API as the admin's, and carried nothing else of
	// the admin's request: no cookie, and none of its context's values.
	paths := map[string]bool{}
	for _, r := range o.api.requests {
		paths[r.URL.Path] = true
		if r.Method != http.MethodGet {
			t.Errorf("%s %s; want a GET", r.Method, r.URL)
		}
		if r.Header.Get("Authorization") != "Bearer "+adminToken {
			t.Errorf("%s %s: Authorization is not the admin's token; want it", r.Method, r.URL)
		}
		if r.RemoteAddr != "203.0.113.7:4711" {
			t.Errorf("%s %s from %s; want the admin's address 203.0.113.7:4711", r.Method, r.URL, r.RemoteAddr)
		}
		if got := r.Header.Get("X-Request-ID"); got != "req-42" {
			t.Errorf("%s %s: X-Request-ID %q; want the admin's req-42", r.Method, r.URL, got)
		}
		if got := r.Header.Get("Cookie"); got != "" {
			t.Errorf("%s %s: Cookie %q; want none", r.Method, r.URL, got)
		}
		if got := logging.RequestID(r.Context()); got != "" {
			t.Errorf("%s %s: request id %q in its context; want none of the admin's request's context", r.Method, r.URL, got)
		}
		if r.URL.Path == "/api/v1/admin/notifications" && len(r.URL.Query()["event_id"]) != 4 {
			t.Errorf("notifications asked about %v; want the four events", r.URL.Query()["event_id"])
		}
	}
	if len(paths) != 4 {
		t.Errorf("asked %v; want the four admin endpoints", paths)
	}

	// As JSON, an empty list is a list, never null.
	if j, err := json.Marshal(s); err != nil || !strings.Contains(string(j), `"unavailable":[]`) {
		t.Errorf("the story as JSON: %.200s (%v); want \"unavailable\":[]", j, err)
	}
}

func TestAStoryWithAPartMissingIsToldWithAGap(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t)
	o := newOrder(t, rdb)
	o.api.failures["/api/v1/admin/reservations/"+o.id.String()] = apperr.E(apperr.Unavailable, "the inventory service is unavailable")
	o.api.failures["/api/v1/admin/notifications"] = apperr.E(apperr.Timeout, "the notifications service did not answer in time")
	s, err := New(o.api, rdb, o.tasks, quiet()).Build(callerContext("203.0.113.7:4711"), o.id, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	want := []Gap{
		{Part: PartInventory, Status: 503, Detail: "the inventory service is unavailable"},
		{Part: PartNotifications, Status: 504, Detail: "the notifications service did not answer in time"},
	}
	if !slices.Equal(s.Unavailable, want) {
		t.Errorf("unavailable %+v; want %+v", s.Unavailable, want)
	}
	if s.Order == nil {
		t.Error("no order; want it")
	}
	if s.Reservation != nil {
		t.Errorf("reservation %+v; want none", s.Reservation)
	}
	if len(s.Events) != 3 {
		t.Errorf("events %+v; want the order's three other events", s.Events)
	}
	if len(s.Notifications) != 0 {
		t.Errorf("notifications %+v; want no e-mail", s.Notifications)
	}
	if s.TraceID == "" {
		t.Error("no trace id; want the order's")
	}
	for _, e := range s.Events {
		if len(e.Consumers) != 1 {
			t.Errorf("%s: consumers %+v; want one", e.Type, e.Consumers)
		} else if at := e.Consumers[0].HandledAt; at != nil {
			t.Errorf("%s: handled at %v; want no inbox time", e.Type, *at)
		}
	}

	t.Run("orders down: the rest is told", func(t *testing.T) {
		o := newOrder(t, rdb)
		o.api.failures["/api/v1/admin/orders/"+o.id.String()] = apperr.E(apperr.Unavailable, "the orders service is unavailable")
		o.tasks.err = errors.New("redis: connection refused")
		s, err := New(o.api, rdb, o.tasks, quiet()).Build(callerContext("203.0.113.7:4711"), o.id, adminToken)
		if err != nil {
			t.Fatal(err)
		}
		if s.Order != nil {
			t.Errorf("order %+v; want none", s.Order)
		}
		if s.Saga != nil {
			t.Errorf("saga %+v; want none", s.Saga)
		}
		if s.TraceID != "" {
			t.Errorf("trace id %q; want none", s.TraceID)
		}
		if s.Reservation == nil {
			t.Error("no reservation; want it")
		}
		if len(s.Events) != 2 {
			t.Errorf("events %+v; want two", s.Events)
		}
		if len(s.Notifications) != 1 {
			t.Errorf("notifications %+v; want the e-mail", s.Notifications)
		} else if task := s.Notifications[0].Task; task != nil {
			t.Errorf("the e-mail's task %+v; want none, the task queues being down", task)
		}
		if len(s.Unavailable) != 2 {
			t.Errorf("unavailable %+v; want orders and tasks", s.Unavailable)
		} else {
			if s.Unavailable[0].Part != PartOrders {
				t.Errorf("first gap %+v; want orders", s.Unavailable[0])
			}
			if want := (Gap{Part: PartTasks, Detail: "the task queues could not be read"}); s.Unavailable[1] != want {
				t.Errorf("second gap %+v; want %+v", s.Unavailable[1], want)
			}
		}
	})

	t.Run("no streams: the consumers are a gap", func(t *testing.T) {
		s, err := New(o.api, nil, o.tasks, quiet()).Build(callerContext("203.0.113.7:4711"), o.id, adminToken)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(s.Unavailable, func(g Gap) bool { return g.Part == PartStreams }) {
			t.Errorf("unavailable %+v; want the streams missing", s.Unavailable)
		}
		if id := s.Events[0].EntryID; id != nil {
			t.Errorf("first event's entry %s; want none without the streams", *id)
		}
	})
}

func TestAStoryIsRefusedAsTheOrdersServiceRefusesIt(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t)
	o := newOrder(t, rdb)
	b := New(o.api, rdb, o.tasks, quiet())
	ctx := callerContext("203.0.113.7:4711")

	if _, err := b.Build(ctx, uuid.New(), adminToken); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown order: %v; want ErrNotFound", err)
	}
	if _, err := b.Build(ctx, o.id, "forged"); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Errorf("a bad token: %v; want unauthorized", err)
	}
	o.api.failures["/api/v1/admin/orders/"+o.id.String()] = apperr.E(apperr.Forbidden, "this requires the admin role")
	if _, err := b.Build(ctx, o.id, adminToken); apperr.CodeOf(err) != apperr.Forbidden {
		t.Errorf("a customer: %v; want forbidden", err)
	}
}
