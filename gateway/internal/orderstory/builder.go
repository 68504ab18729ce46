package orderstory

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaar-shop/bazaar/gateway/internal/inproc"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Tasks reads background tasks' states (a *tasks.Inspector over every service's
// queues in the gateway). Get fails with tasks.ErrTaskNotFound for an id no queue
// holds.
type Tasks interface {
	Get(ctx context.Context, id string) (tasks.Info, error)
}

// Builder tells orders' stories. It is safe for concurrent use.
type Builder struct {
	api     inproc.Client
	streams streamReader
	tasks   Tasks
	log     *slog.Logger
}

// New makes a Builder that asks the public API through api, the gateway's own
// handler (the router every public route is on: its admin routes to the services
// are what a story is read from), reads the services' streams from the Redis they
// publish to (streams) and the e-mail tasks from every queue (tasks).
func New(api http.Handler, streams *redis.Client, tasks Tasks, log *slog.Logger) *Builder {
	b := &Builder{api: inproc.Client{Handler: api}, tasks: tasks, log: log}
	if streams != nil { // a nil *redis.Client in the interface would not be nil
		b.streams = streams
	}
	return b
}

// ErrNotFound is Build's error for an order the orders service does not know.
var ErrNotFound = apperr.E(apperr.NotFound, "no such order")

// notificationsGroup is the consumer group whose inbox the notifications service
// keeps: its handled_at times are shown with its consumption.
const notificationsGroup = "notifications"

// Build tells the story of order orderID, as the admin whose access token is
// bearerToken may see it: every API call it makes carries that token and nothing
// else of the admin's but what inproc.WithCaller put in ctx, so the gateway checks it, its
// role and its rate limits on each call as it would for the admin calling directly.
//
// It asks the orders, inventory and payments admin endpoints at once, then, with the
// ids of the events they report, the notifications endpoint and the streams'
// consumer groups at once, then the e-mail tasks. An unknown order (the orders
// service's 404) is ErrNotFound; a refused token, a missing role or a rate limit on
// the orders call is that call's error (401, 403, 429). Any other failure leaves a
// Gap in the story and the rest is told.
func (b *Builder) Build(ctx context.Context, orderID uuid.UUID, bearerToken string) (Story, error) {
	s := Story{OrderID: orderID, Payments: []Payment{}, Events: []Event{}, Notifications: []Notification{}, Unavailable: []Gap{}}
	id := orderID.String()

	var orders ordersAnswer
	var inventory inventoryAnswer
	var payments paymentsAnswer
	var ordersErr, inventoryErr, paymentsErr error
	var wg sync.WaitGroup
	wg.Go(func() { ordersErr = b.get(ctx, "/api/v1/admin/orders/"+id, bearerToken, &orders) })
	wg.Go(func() { inventoryErr = b.get(ctx, "/api/v1/admin/reservations/"+id, bearerToken, &inventory) })
	wg.Go(func() {
		paymentsErr = b.get(ctx, "/api/v1/admin/payments?order_id="+url.QueryEscape(id), bearerToken, &payments)
	})
	wg.Wait()

	switch code := apperr.CodeOf(ordersErr); {
	case ordersErr == nil:
		s.Order, s.Saga = &orders.Order, &orders.Saga
		s.Events = append(s.Events, toEvents(orders.Events)...)
		s.TraceID = traceID(orders.Events)
	case code == apperr.NotFound:
		return Story{}, ErrNotFound
	case code == apperr.Unauthorized, code == apperr.Forbidden, code == apperr.RateLimited:
		return Story{}, ordersErr
	default:
		s.gap(PartOrders, ordersErr)
	}
	switch {
	case inventoryErr == nil:
		s.Reservation = &inventory.Reservation
		s.Events = append(s.Events, toEvents(inventory.Events)...)
	case apperr.CodeOf(inventoryErr) == apperr.NotFound:
		// No reservation: refused for want of stock, or never made.
	default:
		s.gap(PartInventory, inventoryErr)
	}
	if paymentsErr == nil {
		for _, p := range payments.Payments {
			s.Payments = append(s.Payments, p.Payment)
			s.Events = append(s.Events, toEvents(p.Events)...)
		}
	} else {
		s.gap(PartPayments, paymentsErr)
	}
	slices.SortStableFunc(s.Events, byTime)

	var notifications notificationsAnswer
	var notificationsErr, streamsErr error
	ids := make([]uuid.UUID, len(s.Events)) // read here: the streams' reader fills the events in meanwhile
	for i, e := range s.Events {
		ids[i] = e.ID
	}
	wg.Go(func() { notifications, notificationsErr = b.notifications(ctx, ids, bearerToken) })
	wg.Go(func() {
		if b.streams == nil {
			streamsErr = errors.New("no Redis to read the streams from")
			return
		}
		streamsErr = fillConsumers(ctx, b.streams, s.Events)
	})
	wg.Wait()
	if streamsErr != nil {
		b.log.WarnContext(ctx, "order story: reading the streams", "order_id", id, "err", streamsErr)
		s.gap(PartStreams, apperr.Wrap(streamsErr, apperr.Unavailable, "the event streams could not be read"))
	}
	if notificationsErr != nil {
		s.gap(PartNotifications, notificationsErr)
	}
	s.Notifications = append(s.Notifications, notifications.Notifications...)
	b.fillTasks(ctx, &s)
	handled := make(map[uuid.UUID]time.Time, len(notifications.Inbox))
	for _, h := range notifications.Inbox {
		handled[h.EventID] = h.HandledAt
	}
	for i := range s.Events {
		for j := range s.Events[i].Consumers {
			c := &s.Events[i].Consumers[j]
			if at, ok := handled[s.Events[i].ID]; ok && c.Group == notificationsGroup {
				c.HandledAt = &at
			}
		}
	}
	return s, nil
}

// gap records that part could not be read, with the status and detail of err (an
// *apperr.Error from a service's problem, or one made here).
func (s *Story) gap(part string, err error) {
	g := Gap{Part: part, Detail: "it could not be read"}
	var ae *apperr.Error
	if errors.As(err, &ae) {
		g.Detail = ae.Message
		if part != PartStreams && part != PartTasks {
			g.Status = ae.Code.Status()
		}
	}
	s.Unavailable = append(s.Unavailable, g)
}

// maxEventIDs is how many event ids the notifications endpoint takes at once (its
// MaxEventIDs): a story with more asks in turns.
const maxEventIDs = 50

// notifications asks the notifications service about the events ids: what they led
// to, and when its consumer handled them.
func (b *Builder) notifications(ctx context.Context, ids []uuid.UUID, token string) (notificationsAnswer, error) {
	all := notificationsAnswer{}
	for batch := range slices.Chunk(ids, maxEventIDs) {
		q := url.Values{}
		for _, id := range batch {
			q.Add("event_id", id.String())
		}
		var a notificationsAnswer
		if err := b.get(ctx, "/api/v1/admin/notifications?"+q.Encode(), token, &a); err != nil {
			return notificationsAnswer{}, err
		}
		all.Notifications = append(all.Notifications, a.Notifications...)
		all.Inbox = append(all.Inbox, a.Inbox...)
	}
	slices.SortStableFunc(all.Notifications, func(a, b Notification) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return all, nil
}

// fillTasks reads each notification's email:send task (its id is the
// notification's). The first failure other than a task the queues no longer hold
// leaves a Gap and the rest unread.
func (b *Builder) fillTasks(ctx context.Context, s *Story) {
	if b.tasks == nil && len(s.Notifications) > 0 {
		s.gap(PartTasks, apperr.E(apperr.Unavailable, "the task queues are not read here"))
		return
	}
	for i := range s.Notifications {
		n := &s.Notifications[i]
		info, err := b.tasks.Get(ctx, n.ID.String())
		switch {
		case errors.Is(err, tasks.ErrTaskNotFound):
			continue
		case err != nil:
			b.log.WarnContext(ctx, "order story: reading the e-mail tasks", "order_id", s.OrderID, "err", err)
			s.gap(PartTasks, apperr.Wrap(err, apperr.Unavailable, "the task queues could not be read"))
			return
		}
		t := &Task{ID: info.ID, Queue: info.Queue, State: string(info.State), Retried: info.Retried, MaxRetry: info.MaxRetry, Error: info.Error}
		if !info.CompletedAt.IsZero() {
			at := info.CompletedAt.UTC()
			t.CompletedAt = &at
		}
		n.Task = t
	}
}

// traceID is the trace id in order.created's traceparent, "" when there is none.
func traceID(evs []eventAnswer) string {
	for _, e := range evs {
		if e.Type != "order.created" || e.TraceParent == "" {
			continue
		}
		sc := trace.SpanContextFromContext(telemetry.WithTraceParent(context.Background(), e.TraceParent))
		if sc.TraceID().IsValid() {
			return sc.TraceID().String()
		}
	}
	return ""
}

// byTime orders events by when they happened, then by when they were published
// (those still waiting last), then by id, so that the order does not depend on
// which service answered first.
func byTime(a, b Event) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	switch {
	case a.PublishedAt != nil && b.PublishedAt != nil:
		if c := a.PublishedAt.Compare(*b.PublishedAt); c != 0 {
			return c
		}
	case a.PublishedAt != nil:
		return -1
	case b.PublishedAt != nil:
		return 1
	}
	return cmp.Compare(a.ID.String(), b.ID.String())
}

// The services' answers, as far as the story reads them. Their events are outbox
// records in the wire form pkg/outbox gives them.
type (
	eventAnswer  = outbox.Record
	ordersAnswer struct {
		Order  Order         `json:"order"`
		Saga   Saga          `json:"saga"`
		Events []eventAnswer `json:"events"`
	}
	inventoryAnswer struct {
		Reservation Reservation   `json:"reservation"`
		Events      []eventAnswer `json:"events"`
	}
	paymentsAnswer struct {
		Payments []struct {
			Payment
			Events []eventAnswer `json:"events"`
		} `json:"payments"`
	}
	notificationsAnswer struct {
		Notifications []Notification `json:"notifications"`
		Inbox         []struct {
			EventID   uuid.UUID `json:"event_id"`
			HandledAt time.Time `json:"handled_at"`
		} `json:"inbox"`
	}
)

func toEvents(answers []eventAnswer) []Event {
	out := make([]Event, len(answers))
	for i, e := range answers {
		out[i] = Event{ID: e.ID, Stream: e.Stream, Type: e.Type, Subject: e.Subject, Time: e.Time,
			PublishedAt: e.PublishedAt, Consumers: []Consumer{}}
	}
	return out
}

// get makes GET path through the API as the admin: with the token, and the address,
// request id and trace of the caller in ctx (inproc.WithCaller), and nothing else.
// A 2xx answer is decoded into out; any other is returned as the *apperr.Error its
// problem document describes.
func (b *Builder) get(ctx context.Context, path, token string, out any) error {
	_, err := b.api.Do(ctx, inproc.Request{Method: http.MethodGet, Path: path, Token: token}, out)
	return err
}
