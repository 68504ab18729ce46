// Package httpapi is the payments service's HTTP API: the routes, the JSON request and
// response types, and the converters between them and the domain. Handlers parse
// requests into domain values, call the payment.Service, and render errors as problems.
package httpapi

import (
	"log/slog"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
)

// Deps are what the handlers need.
type Deps struct {
	Log      *slog.Logger
	Payments *payment.Service
	Verifier *auth.Verifier // checks access tokens against the users service's keys
}

// Mount adds every route of the payments service to r. The /api/v1 paths are the
// public ones (the gateway proxies them unchanged); /internal is for the orders saga
// only, never routed by the gateway (docs/internal-api.md).
func Mount(r chi.Router, d Deps) {
	r.Post("/internal/charges", charge(d.Log, d.Payments))
	r.Get("/internal/charges/{order_id}", getCharge(d.Log, d.Payments))
	r.Post("/internal/charges/{order_id}/refund", refund(d.Log, d.Payments))
	r.With(d.Verifier.Require(d.Log)).Get("/api/v1/payments", list(d.Log, d.Payments))
}
