// Package httpapi is the notifications service's HTTP API: the routes, the JSON
// response types and the converters to them from the domain. Handlers parse requests
// into typed values, call the notification.Service, and render errors as problems.
package httpapi

import (
	"log/slog"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// Deps are what the handlers need.
type Deps struct {
	Log           *slog.Logger
	Verifier      *auth.Verifier // checks access tokens against the users service's keys
	Notifications *notification.Service
}

// Mount adds every route of the notifications service to r. The paths are the public
// ones: the gateway proxies them unchanged.
func Mount(r chi.Router, d Deps) {
	r.With(d.Verifier.Require(d.Log)).Get("/api/v1/notifications", list(d.Log, d.Notifications))
	admin := r.With(d.Verifier.Require(d.Log), auth.RequireRole(d.Log, auth.RoleAdmin))
	admin.Get("/api/v1/admin/notifications", adminNotifications(d.Log, d.Notifications))
}
