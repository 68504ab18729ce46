// Package httpapi is the users service's HTTP API: the routes, the JSON request and
// response types, and the converters between them and the domain. Handlers parse
// requests into domain values, call the user.Service, and render errors as problems.
package httpapi

import (
	"log/slog"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

// Deps are what the handlers need.
type Deps struct {
	Log      *slog.Logger
	Users    *user.Service
	Verifier *auth.Verifier // checks access tokens against this service's own keys and the revocation list
	KeySet   auth.KeySet    // the public keys published at /.well-known/jwks.json
	// Proxies are the peers trusted to say the client's address in X-Forwarded-For
	// (the gateway); log-ins are throttled per client address.
	Proxies TrustedProxies
}

// Mount adds every route of the users service to r. The paths are the public ones:
// the gateway proxies them unchanged.
func Mount(r chi.Router, d Deps) {
	r.Post("/api/v1/auth/register", register(d.Log, d.Users))
	r.Post("/api/v1/auth/login", login(d.Log, d.Users, d.Proxies))
	r.Post("/api/v1/auth/refresh", refresh(d.Log, d.Users))
	r.Post("/api/v1/auth/logout", logout(d.Log, d.Users))
	r.With(d.Verifier.Require(d.Log)).Get("/api/v1/users/me", me(d.Log, d.Users))
	r.Get("/.well-known/jwks.json", jwks(d.KeySet))
}
