package statusfeed_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/statusfeed"
)

func TestPublishedChangesReachSubscribersOfThatOrderOnly(t *testing.T) {
	t.Parallel()
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	feed := statusfeed.New(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _ = feed.Run(ctx) }()
	mine, other := uuid.New(), uuid.New()
	sub, err := feed.Subscribe(ctx, mine)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Subscribe returns once the subscription is live: nothing published after it is missed.
	feed.Notify(ctx, order.StatusChange{OrderID: other, Status: order.StatusPaid})
	feed.Notify(ctx, order.StatusChange{OrderID: mine, Status: order.StatusReserved})
	feed.Notify(ctx, order.StatusChange{OrderID: mine, Status: order.StatusCancelled, CancelReason: order.ReasonTimeout})
	want := []order.StatusChange{
		{OrderID: mine, Status: order.StatusReserved},
		{OrderID: mine, Status: order.StatusCancelled, CancelReason: order.ReasonTimeout},
	}
	for _, w := range want {
		select {
		case got := <-sub.C:
			if got != w {
				t.Errorf("got %+v, want %+v", got, w)
			}
		case <-ctx.Done():
			t.Fatalf("no %+v", w)
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	for range sub.C { // the channel closes with the subscription
	}
}

func TestMessageJSONHasANullReasonUnlessCancelled(t *testing.T) {
	t.Parallel()
	m := statusfeed.ToMessage(order.StatusChange{OrderID: uuid.New(), Status: order.StatusPending})
	if m.CancelReason != nil {
		t.Errorf("pending: cancel reason %q, want nil", *m.CancelReason)
	}
	if m.Status != "pending" {
		t.Errorf("pending: status %q, want pending", m.Status)
	}
	m = statusfeed.ToMessage(order.StatusChange{OrderID: uuid.New(), Status: order.StatusCancelled, CancelReason: order.ReasonOutOfStock})
	if m.CancelReason == nil {
		t.Error("cancelled: cancel reason nil, want out_of_stock")
	} else if *m.CancelReason != "out_of_stock" {
		t.Errorf("cancelled: cancel reason %q, want out_of_stock", *m.CancelReason)
	}
}

func TestNotifyNeverWaitsForRedis(t *testing.T) {
	t.Parallel()
	// A Redis that is not there, and no publisher running: the queue fills, then drops.
	rdb, err := redisclient.Open("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	feed := statusfeed.New(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	start := time.Now()
	for range 5000 {
		feed.Notify(context.Background(), order.StatusChange{OrderID: uuid.New(), Status: order.StatusPaid})
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("5000 notifications took %s", took)
	}
}
