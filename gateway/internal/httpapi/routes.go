package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/pkg/health"
)

// addRoutes lists every route of the gateway. Public API paths are forwarded
// unchanged: each service serves its API under the same /api/v1 paths. Anything not
// listed, under /api/v1 or not, is the router's 404 problem.
func addRoutes(r chi.Router, d Deps) {
	// The gateway's own operational routes, and the whole system's health.
	r.Method(http.MethodGet, "/healthz", health.Live())
	r.Method(http.MethodGet, "/readyz", d.Ready.Ready())
	r.Method(http.MethodGet, "/metrics", d.Metrics.Handler())
	r.Method(http.MethodGet, "/health", d.SystemHealth)

	requireUser := d.Verifier.Require(d.Log)
	users := d.Upstreams.Users

	// Users. Sign-up, log-in and refresh are anonymous by nature; users owns the
	// paths under /auth, so any method and path there is its to answer.
	r.Handle("/api/v1/auth/*", users)
	r.With(requireUser).Method(http.MethodGet, "/api/v1/users/me", users)
}
