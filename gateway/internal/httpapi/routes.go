package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
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

	// Notifications: a user's own list, so the token is checked here first.
	r.With(requireUser).Method(http.MethodGet, "/api/v1/notifications", d.Upstreams.Notifications)

	// Operations pages, for administrators in a browser: a sign-in form that gives
	// the browser a session cookie (bearer tokens do not work there), and the task
	// monitor behind it, which also takes an admin's bearer token for scripts. The
	// cookie is ambient, so every state-changing request here must come from the
	// gateway's own pages (opsauth.SameOrigin says why).
	r.Group(func(r chi.Router) {
		r.Use(opsauth.SameOrigin(d.Log))
		r.Get("/ops/login", d.Ops.LoginForm())
		r.Post("/ops/login", d.Ops.Login())
		r.Post("/ops/logout", d.Ops.Logout())
		r.Method(http.MethodGet, "/ops/tasks", http.RedirectHandler(TaskMonitorPath, http.StatusMovedPermanently))
		// asynqmon: its pages, their assets, and its API under /ops/tasks/api/.
		r.With(d.Ops.RequireAdmin).Handle(TaskMonitorPath+"*", d.TaskMonitor)
	})
}
