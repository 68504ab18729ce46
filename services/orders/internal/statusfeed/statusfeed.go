// Package statusfeed carries live order status changes over Redis Pub/Sub, channel
// "orders:<order id>", from the saga (Publish, after each committed change) to the
// SSE stream of GET /orders/{id}/events (Subscribe). Pub/Sub is fire and forget: a
// message published while nobody listens, or while Redis is down, is lost. That is
// acceptable only because listeners read the status from the database too (first,
// and again now and then).
package statusfeed

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// Channel is the Pub/Sub channel of an order's status changes.
func Channel(orderID uuid.UUID) string { return "orders:" + orderID.String() }

// Message is a status change on the wire, the same JSON the SSE stream sends.
type Message struct {
	OrderID      uuid.UUID `json:"order_id"`
	Status       string    `json:"status"`
	CancelReason *string   `json:"cancel_reason"`
}

// ToMessage is the wire form of c.
func ToMessage(c order.StatusChange) Message {
	m := Message{OrderID: c.OrderID, Status: string(c.Status)}
	if c.CancelReason != order.ReasonNone {
		r := string(c.CancelReason)
		m.CancelReason = &r
	}
	return m
}

// Feed publishes and subscribes to status changes.
type Feed struct {
	rdb     *redis.Client
	log     *slog.Logger
	queue   chan order.StatusChange
	dropped atomic.Int64
}

var _ order.Notifier = (*Feed)(nil)

// queueSize bounds the changes waiting to be published; beyond it they are dropped
// (listeners poll the database too).
const queueSize = 1024

// New is a feed on rdb. Its publisher runs in Run.
func New(rdb *redis.Client, log *slog.Logger) *Feed {
	return &Feed{rdb: rdb, log: log, queue: make(chan order.StatusChange, queueSize)}
}

// publishTimeout bounds one publish, so that a Redis that hangs cannot hold up the
// queue for long.
const publishTimeout = time.Second

// Notify implements order.Notifier: it queues c for Run to publish and returns at
// once, so that a saga never waits on Redis. A full queue (Redis down for a while)
// drops c.
func (f *Feed) Notify(ctx context.Context, c order.StatusChange) {
	select {
	case f.queue <- c:
	default:
		if n := f.dropped.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th… drop
			f.log.WarnContext(ctx, "order status changes dropped: the live feed is behind", "dropped", n)
		}
	}
}

// Run publishes queued changes, in order, until ctx ends; then it returns nil. A
// change that cannot be published is logged and dropped.
func (f *Feed) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-f.queue:
			f.publish(ctx, c)
		}
	}
}

func (f *Feed) publish(ctx context.Context, c order.StatusChange) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	data, _ := json.Marshal(ToMessage(c))
	if err := f.rdb.Publish(ctx, Channel(c.OrderID), data).Err(); err != nil {
		f.log.WarnContext(ctx, "order status not published; live listeners will poll", "order_id", c.OrderID, "err", err)
	}
}

// Subscription is a live subscription to one order's changes.
type Subscription struct {
	ps *redis.PubSub
	C  <-chan order.StatusChange
}

// Subscribe listens to the order's changes; when it returns, the subscription is
// active, so a change committed after that is received. The channel closes when ctx
// ends or the subscription is closed. It fails when Redis cannot be reached.
func (f *Feed) Subscribe(ctx context.Context, orderID uuid.UUID) (*Subscription, error) {
	ps := f.rdb.Subscribe(ctx, Channel(orderID))
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		ps.Close()
		return nil, fmt.Errorf("subscribe to %s: %w", Channel(orderID), err)
	}
	out := make(chan order.StatusChange, 8)
	go func() {
		defer close(out)
		for msg := range ps.Channel() {
			var m Message
			if err := json.Unmarshal([]byte(msg.Payload), &m); err != nil {
				continue
			}
			c := order.StatusChange{OrderID: m.OrderID, Status: order.Status(m.Status)}
			if m.CancelReason != nil {
				c.CancelReason = order.CancelReason(*m.CancelReason)
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return &Subscription{ps: ps, C: out}, nil
}

// Close ends the subscription.
func (s *Subscription) Close() error { return s.ps.Close() }
