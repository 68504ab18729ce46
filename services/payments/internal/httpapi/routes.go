// Package httpapi is the payments service's HTTP API: the routes, the JSON request and
// response types, and the converters between them and the domain. Handlers parse
// requests into domain values, call the payment.Service, and render errors as problems.
package httpapi

import (
	"log/slog"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
)

// Deps are what the handlers need.
type Deps struct {
	Log      *slog.Logger
	Payments *payment.Service
	Verifier *auth.Verifier    // checks access tokens against the users service's keys
	Services *svcauth.Verifier // checks the service credentials of internal calls
	Events   EventLog          // the outbox's events, for operators
}

// Mount adds the public routes of the payments service to r, the public listener's
// router: the gateway proxies them unchanged.
func Mount(r chi.Router, d Deps) {
	r.With(d.Verifier.Require(d.Log)).Get("/api/v1/payments", list(d.Log, d.Payments))
	admin := r.With(d.Verifier.Require(d.Log), auth.RequireRole(d.Log, auth.RoleAdmin))
	admin.Get("/api/v1/admin/payments", adminPayments(d.Log, d.Payments, d.Events))
}

// MountInternal adds the internal routes to r, the internal listener's router
// (docs/internal-api.md): they are the orders saga's, and only a call carrying the
// orders service's credential gets in.
func MountInternal(r chi.Router, d Deps) {
	saga := r.With(d.Services.Require(d.Log, "orders"))
	saga.Post("/internal/charges", charge(d.Log, d.Payments))
	saga.Get("/internal/charges/{order_id}", getCharge(d.Log, d.Payments))
	saga.Post("/internal/charges/{order_id}/refund", refund(d.Log, d.Payments))
}
