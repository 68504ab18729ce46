// Package httpapi is the inventory service's HTTP API: the routes, the JSON request and
// response types, and the converters between them and the domain. Handlers parse
// requests into domain values, call the services, and render errors as problems.
package httpapi

import (
	"log/slog"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

// Deps are what the handlers need.
type Deps struct {
	Log          *slog.Logger
	Products     *product.Service
	Reservations *reservation.Service
	Verifier     *auth.Verifier    // checks access tokens against the users service's keys
	Services     *svcauth.Verifier // checks the service credentials of internal calls
	Events       EventLog          // the outbox's events, for operators
}

// Mount adds the public routes of the inventory service to r, the public listener's
// router: the gateway proxies them unchanged.
func Mount(r chi.Router, d Deps) {
	admin := r.With(d.Verifier.Require(d.Log), auth.RequireRole(d.Log, auth.RoleAdmin))

	r.Get("/api/v1/products", listProducts(d.Log, d.Products))
	r.Get("/api/v1/products/{id}", getProduct(d.Log, d.Products))
	admin.Post("/api/v1/products", createProduct(d.Log, d.Products))
	admin.Patch("/api/v1/products/{id}", updateProduct(d.Log, d.Products))
	admin.Get("/api/v1/admin/reservations/{order_id}", getAdminReservation(d.Log, d.Reservations, d.Events))

}

// MountInternal adds the internal routes to r, the internal listener's router
// (docs/internal-api.md): they are the orders saga's, and only a call carrying the
// orders service's credential gets in.
func MountInternal(r chi.Router, d Deps) {
	saga := r.With(d.Services.Require(d.Log, "orders"))
	saga.Post("/internal/quotes", quote(d.Log, d.Reservations))
	saga.Post("/internal/reservations", reserve(d.Log, d.Reservations))
	saga.Get("/internal/reservations/{order_id}", getReservation(d.Log, d.Reservations))
	saga.Post("/internal/reservations/{order_id}/commit", commitReservation(d.Log, d.Reservations))
	saga.Post("/internal/reservations/{order_id}/release", releaseReservation(d.Log, d.Reservations))
}
