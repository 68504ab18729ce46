// Package httpapi is the orders service's HTTP API: the routes, the JSON request and
// response types, and the converters between them and the domain. Handlers parse
// requests into domain values, call the order.Service, and render errors as problems.
package httpapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/report"
	"github.com/bazaar-shop/bazaar/services/orders/internal/statusfeed"
)

// Deps are what the handlers need.
type Deps struct {
	Log      *slog.Logger
	Orders   *order.Service
	Verifier *auth.Verifier
	// Keys keeps the Idempotency-Key claims and answers of POST /orders.
	Keys IdempotencyKeys
	// KeyTTL is how long a request holds its Idempotency-Key before a repeat may take
	// over (the first request died): longer than any request runs; default 30s.
	KeyTTL time.Duration
	// Feed is the live status feed the SSE stream listens to.
	Feed Subscriber
	// Reports enqueues sales reports.
	Reports ReportQueue
	// Stop ends when the program stops: SSE streams end with it, so that they do not
	// hold up the graceful shutdown.
	Stop context.Context
	// PollEvery is how often an SSE stream re-reads the order, in case a published
	// change was lost; default 2s.
	PollEvery time.Duration
	// Events reads the order events in the outbox, for operators.
	Events EventLog
}

// EventLog reads the events this service wrote about subjects (order ids) from its
// outbox, oldest first (see postgres.Store.Events).
type EventLog interface {
	Events(ctx context.Context, subjects []string) ([]outbox.Record, error)
}

// IdempotencyKeys keeps Idempotency-Key claims (see postgres.Store.ClaimKey).
type IdempotencyKeys interface {
	ClaimKey(ctx context.Context, userID uuid.UUID, key, fingerprint string, ttl time.Duration) (order.KeyClaim, error)
	CompleteKey(ctx context.Context, userID uuid.UUID, key string, status int, body []byte, location string) error
	AbandonKey(ctx context.Context, userID uuid.UUID, key string) error
	UnlockKey(ctx context.Context, userID uuid.UUID, key string) error
}

// Subscriber subscribes to an order's live status changes.
type Subscriber interface {
	Subscribe(ctx context.Context, orderID uuid.UUID) (*statusfeed.Subscription, error)
}

// ReportQueue enqueues a sales report task and returns its id.
type ReportQueue interface {
	Enqueue(ctx context.Context, r report.Range) (string, error)
}

// Mount adds every route of the orders service to r. The paths are the public ones:
// the gateway proxies them unchanged. Each handler is given only the parts of d it
// uses, so that its signature says what it depends on.
func Mount(r chi.Router, d Deps) {
	if d.KeyTTL <= 0 {
		d.KeyTTL = 30 * time.Second
	}
	if d.PollEvery <= 0 {
		d.PollEvery = 2 * time.Second
	}
	if d.Stop == nil {
		d.Stop = context.Background()
	}
	r.Group(func(r chi.Router) {
		r.Use(d.Verifier.Require(d.Log))
		r.Post("/api/v1/orders", createOrder(d.Log, d.Orders, d.Keys, d.KeyTTL))
		r.Get("/api/v1/orders", listOrders(d.Log, d.Orders))
		r.Get("/api/v1/orders/{id}", getOrder(d.Log, d.Orders))
		r.Post("/api/v1/orders/{id}/cancel", cancelOrder(d.Log, d.Orders))
		r.Get("/api/v1/orders/{id}/events", orderEvents(d.Log, d.Orders, d.Feed, d.PollEvery, d.Stop.Done()))
		r.Group(func(r chi.Router) {
			r.Use(auth.RequireRole(d.Log, auth.RoleAdmin))
			r.Get("/api/v1/admin/sagas", listSagas(d.Log, d.Orders))
			r.Get("/api/v1/admin/orders/{id}", adminOrder(d.Log, d.Orders, d.Events))
			r.Post("/api/v1/admin/reports/sales", salesReport(d.Log, d.Reports))
		})
	})
}
