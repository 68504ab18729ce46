package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/statusfeed"
)

// writeWait bounds each write to an SSE stream: the server's WriteTimeout (30s) would
// cut every stream, so the deadline is moved before each write instead, and a client
// that stops reading is dropped after this long.
const writeWait = 10 * time.Second

// keepAlive is how often an idle stream sends a comment, so that proxies keep it open.
const keepAlive = 15 * time.Second

// orderEvents answers GET /api/v1/orders/{id}/events: a text/event-stream of the
// order's status, as `event: status` with data {"order_id","status","cancel_reason"}:
// the current status first, then each change, closing after a terminal status
// (confirmed or cancelled). Changes come over feed (Redis Pub/Sub); the order is also
// re-read every pollEvery, so a lost message (or Redis down) only delays the stream. The
// stream ends when stop is closed, so that it does not hold up a graceful shutdown.
func orderEvents(log *slog.Logger, orders *order.Service, feed Subscriber, pollEvery time.Duration, stop <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, id, ok := principalAndID(w, r, log)
		if !ok {
			return
		}
		ctx := r.Context()
		if _, err := orders.Get(ctx, p.UserID, id); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		// Subscribe before reading the status that is sent first, so that no change
		// can fall between the two.
		var changes <-chan order.StatusChange
		if sub, err := feed.Subscribe(ctx, id); err != nil {
			log.WarnContext(ctx, "live status unavailable; the stream polls", "order_id", id, "err", err)
		} else {
			defer sub.Close()
			changes = sub.C
		}
		o, err := orders.Get(ctx, p.UserID, id)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		rc := http.NewResponseController(w)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no") // nginx and the like: do not buffer the stream
		w.WriteHeader(http.StatusOK)

		last := -1
		// send writes c unless the stream has already gone past it (a message that
		// arrives after the poll saw its change, or out of order); done reports a
		// terminal status, or a client that is gone.
		send := func(c order.StatusChange) (done bool) {
			if c.Status.Rank() <= last {
				return false
			}
			last = c.Status.Rank()
			data, _ := json.Marshal(statusfeed.ToMessage(c))
			if !write(rc, w, fmt.Sprintf("event: status\ndata: %s\n\n", data)) {
				return true
			}
			return c.Status.Terminal()
		}
		if send(order.StatusChange{OrderID: o.ID, Status: o.Status, CancelReason: o.CancelReason}) {
			return
		}
		poll := time.NewTicker(pollEvery)
		defer poll.Stop()
		idle := time.NewTicker(keepAlive)
		defer idle.Stop()
		for {
			select {
			case c, ok := <-changes:
				if !ok {
					changes = nil // the feed broke: polling goes on
					continue
				}
				if send(c) {
					return
				}
			case <-poll.C:
				o, err := orders.Get(ctx, p.UserID, id)
				if err != nil {
					continue
				}
				if send(order.StatusChange{OrderID: o.ID, Status: o.Status, CancelReason: o.CancelReason}) {
					return
				}
			case <-idle.C:
				if !write(rc, w, ": keep-alive\n\n") {
					return
				}
			case <-ctx.Done():
				return
			case <-stop:
				return
			}
		}
	}
}

// write sends one chunk of the stream and flushes it, reporting whether it got out.
func write(rc *http.ResponseController, w http.ResponseWriter, s string) bool {
	_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
	if _, err := w.Write([]byte(s)); err != nil {
		return false
	}
	return rc.Flush() == nil
}
