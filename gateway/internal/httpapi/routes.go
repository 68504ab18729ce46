package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
	"github.com/bazaar-shop/bazaar/gateway/internal/orderstory"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/health"
)

// addRoutes lists every route of the gateway. Public API paths are forwarded
// unchanged: each service serves its API under the same /api/v1 paths. Anything not
// listed, under /api/v1 or not, is the router's 404 problem.
func addRoutes(r chi.Router, d Deps) {
	// A request this gateway (or another) has already forwarded is refused first.
	r.Use(refuseLoops(d.Log))
	// Every request but a probe is first limited per client address, before any
	// token is looked at: what is refused with a 401 must cost something too.
	// Unknown paths included: the router's 404s and 405s come after it.
	r.Use(exceptProbes(d.RateLimit.PerAddress))

	// The gateway's own probes, for orchestrators and the local stack. Metrics are
	// not here but on the operations listener (OPS_ADDR, the platform's internal
	// listener in run.go), off the public port: they tell whoever reads them the
	// routes, the traffic, the error rates and the cache's hit rate, which is for
	// operators. The probes are there too, so that operators' tools need only it.
	r.Method(http.MethodGet, "/healthz", health.Live())
	r.Method(http.MethodGet, "/readyz", d.Ready.Ready())

	// Every API route is one of three kinds: anonymous, a user's, an admin's. Tokens
	// are checked here first, and roles too, so that a request that cannot succeed
	// never reaches a service; each service checks both again. Then come the rate
	// limits, before anything is forwarded: per user once a token has been verified
	// (so the user is known), per client IP on the anonymous routes.
	requireUser := d.Verifier.Require(d.Log)
	limit := d.RateLimit.PerCaller
	user := r.With(requireUser, limit)
	admin := r.With(requireUser, auth.RequireRole(d.Log, auth.RoleAdmin), limit)
	up := d.Upstreams

	// The anonymous routes, limited per client IP.
	r.Group(func(r chi.Router) {
		r.Use(limit)

		// The whole system's health. Each check asks every service, so it is shared
		// among callers for a second (systemhealth) as well as limited.
		r.Method(http.MethodGet, "/health", d.SystemHealth)

		// The API's reference, from the gateway itself: the OpenAPI document it
		// was built with, and a page made from it (apidocs.go).
		r.Method(http.MethodGet, "/openapi.yaml", d.apiDocs.spec)
		r.Method(http.MethodGet, "/docs", d.apiDocs.page)

		// Users. Sign-up, log-in, refresh and log-out are anonymous by nature (the
		// refresh token is the credential of the last two); users owns the paths
		// under /auth, so any method and path there is its to answer. Log-in and
		// sign-up have tighter limits too, per IP and per e-mail address.
		r.Group(func(r chi.Router) {
			r.Use(d.RateLimit.SignIn)
			r.Method(http.MethodPost, "/api/v1/auth/login", up.Users)
			r.Method(http.MethodPost, "/api/v1/auth/register", up.Users)
		})
		r.Method(http.MethodPost, "/api/v1/auth/refresh", up.Users)
		r.Method(http.MethodPost, "/api/v1/auth/logout", up.Users)
		r.Handle("/api/v1/auth/*", up.Users)

		// Inventory. The catalogue is public and read through the product cache.
		r.Method(http.MethodGet, "/api/v1/products", d.Products.List(up.Inventory))
		r.Method(http.MethodGet, "/api/v1/products/{id}", d.Products.Product(up.Inventory))
	})

	// Users: a user's own account.
	user.Method(http.MethodGet, "/api/v1/users/me", up.Users)

	// Inventory: changing the catalogue, and reading an order's reservation, is for
	// admins.
	admin.Method(http.MethodPost, "/api/v1/products", up.Inventory)
	admin.Method(http.MethodPatch, "/api/v1/products/{id}", up.Inventory)
	admin.Method(http.MethodGet, "/api/v1/admin/reservations/{order_id}", up.Inventory)

	// Orders: a user's own (the service answers 404 for anyone else's). The status
	// stream goes through a proxy of its own that lets it last.
	user.Method(http.MethodPost, "/api/v1/orders", up.Orders)
	user.Method(http.MethodGet, "/api/v1/orders", up.Orders)
	user.Method(http.MethodGet, "/api/v1/orders/{id}", up.Orders)
	user.Method(http.MethodPost, "/api/v1/orders/{id}/cancel", up.Orders)
	user.Method(http.MethodGet, "/api/v1/orders/{id}/events", up.OrderEvents)
	admin.Method(http.MethodGet, "/api/v1/admin/sagas", up.Orders)
	admin.Method(http.MethodGet, "/api/v1/admin/orders/{id}", up.Orders)
	admin.Method(http.MethodPost, "/api/v1/admin/reports/sales", up.Orders)

	// Payments: a user's own, by order; any order's for admins.
	user.Method(http.MethodGet, "/api/v1/payments", up.Payments)
	admin.Method(http.MethodGet, "/api/v1/admin/payments", up.Payments)

	// Notifications: a user's own list; for admins, what given events led to.
	user.Method(http.MethodGet, "/api/v1/notifications", up.Notifications)
	admin.Method(http.MethodGet, "/api/v1/admin/notifications", up.Notifications)

	// Background tasks' states and results, answered by the gateway itself from
	// the task queues, whichever service's they are.
	admin.Method(http.MethodGet, "/api/v1/admin/tasks/{id}", taskStatus(d.Log, d.Tasks))

	// An order's whole story, told by the gateway from the four admin routes above,
	// asked through this same router as the admin, and from the streams and the task
	// queues in Redis (orderstory).
	stories := orderstory.New(r, d.Streams, d.Tasks, d.Log)
	admin.Method(http.MethodGet, "/api/v1/admin/orders/{id}/story", orderStory(d.Log, stories))

	// Operations pages, for administrators in a browser: a sign-in form that gives
	// the browser a session cookie (bearer tokens do not work there), and the task
	// monitor behind it, which also takes an admin's bearer token for scripts. The
	// cookie is ambient, so every state-changing request here must come from the
	// gateway's own pages (opsauth.SameOrigin says why). Every answer has a
	// Content-Security-Policy that lets nobody frame it: the sign-in page's and the
	// monitor's allow what each needs (csp.go), the rest nothing at all.
	r.Group(func(r chi.Router) {
		r.Use(withPolicy(opsPolicy), opsauth.SameOrigin(d.Log))
		r.Get("/ops/login", d.Ops.LoginForm())
		r.Post("/ops/login", d.Ops.Login())
		r.Post("/ops/logout", d.Ops.Logout())
		r.Method(http.MethodGet, "/ops/tasks", http.RedirectHandler(TaskMonitorPath, http.StatusMovedPermanently))
		// asynqmon: its pages, their assets, and its API under /ops/tasks/api/.
		r.With(d.Ops.RequireAdmin, withPolicy(d.monitorPolicy)).Handle(TaskMonitorPath+"*", d.TaskMonitor)
	})

	// The storefront: pages for people at /, made from the public API above, which
	// they call through this same router (storefront.Shop.Mount lists them); its
	// admin pages tell an order's story as the API route above does.
	if d.Shop != nil {
		d.Shop.Mount(r, r, stories)
	}
}

// exceptProbes applies mw to every request but the liveness and readiness probes,
// which orchestrators call from a few addresses on a schedule and which must never
// be turned away.
func exceptProbes(mw func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		limited := mw(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/healthz", "/readyz":
				next.ServeHTTP(w, r)
			default:
				limited.ServeHTTP(w, r)
			}
		})
	}
}
