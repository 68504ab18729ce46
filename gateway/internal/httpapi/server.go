// Package httpapi is the gateway's HTTP surface: the standard middleware, and in
// routes.go every route the gateway answers, with the upstream that serves it and the
// checks that run first. The gateway's handlers only route and check, and the
// services answer, with three exceptions: product reads may come from the gateway's
// cache, the state of a background task is read from the task queues (tasks.go),
// and an order's story is told from the services' admin routes and Redis (story.go).
package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/docs"
	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
	"github.com/bazaar-shop/bazaar/gateway/internal/storefront"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Upstreams are the services the gateway forwards to, one handler each (a
// *proxy.Proxy in the gateway), so that what concerns one upstream wraps exactly one
// value. A service joins here when the first of its routes is built.
type Upstreams struct {
	Users         http.Handler
	Inventory     http.Handler
	Orders        http.Handler
	Payments      http.Handler
	Notifications http.Handler
	// OrderEvents is the orders service too, for its server-sent event streams: a
	// streaming proxy with a transport of its own, bounded by silence rather than by
	// UPSTREAM_TIMEOUT. It shares Orders' balancer, and with it the instances' health
	// and the breakers.
	OrderEvents http.Handler
}

// ProductCache serves product reads through a cache, with the inventory proxy
// behind it (a *productcache.Cache in the gateway).
type ProductCache interface {
	// Product wraps the route GET /api/v1/products/{id}.
	Product(next http.Handler) http.Handler
	// List wraps the route GET /api/v1/products.
	List(next http.Handler) http.Handler
}

// Tasks reads background tasks' states (a *tasks.Inspector in the gateway). Get fails
// with tasks.ErrTaskNotFound for an id no queue holds, or when Redis cannot be reached.
type Tasks interface {
	Get(ctx context.Context, id string) (tasks.Info, error)
}

// Deps are what the gateway's routes need.
type Deps struct {
	Log     *slog.Logger
	Metrics *metrics.Registry
	Tracing *telemetry.Tracing
	// Verifier checks access tokens before a protected route is forwarded; the
	// service checks them again.
	Verifier *auth.Verifier
	// Ready is the gateway's own readiness (GET /readyz).
	Ready *health.Checker
	// SystemHealth answers GET /health, the readiness of the whole system.
	SystemHealth http.Handler
	Upstreams    Upstreams
	// Products caches the catalogue's reads.
	Products ProductCache
	// Tasks answers GET /api/v1/admin/tasks/{id} from the task queues in Redis.
	Tasks Tasks
	// Streams is the Redis the services publish their events to, where an order's
	// story reads who consumed them (orderstory). Nil: the story goes without.
	Streams *redis.Client
	// Ops signs administrators in to the operations pages from a browser and
	// guards those pages.
	Ops *opsauth.Auth
	// TaskMonitor is asynqmon, serving its pages and API under TaskMonitorPath.
	TaskMonitor http.Handler
	// Shop is the storefront: pages at / made from the public API. Nil: none.
	Shop *storefront.Shop
	// RateLimit limits the public API's callers (a *ratelimit.Limiter in the gateway).
	RateLimit RateLimit
	// MaxInFlight bounds the requests in flight to each upstream service
	// (UPSTREAM_MAX_IN_FLIGHT); past it they are answered 503 at once (forward.go).
	// Zero: no bound.
	MaxInFlight int

	// monitorPolicy is the task monitor's Content-Security-Policy, made by NewServer.
	monitorPolicy string
	// apiDocs serve the OpenAPI document and the reference page made from it, made
	// by NewServer (apidocs.go).
	apiDocs apiDocs
}

// RateLimit is the public API's rate limiting, as middleware. Each answers a 429
// problem to a request over its limits.
type RateLimit interface {
	// PerAddress limits per client IP, before any token is checked.
	PerAddress(next http.Handler) http.Handler
	// PerCaller limits per user when a verified principal is in the request's
	// context, else per client IP.
	PerCaller(next http.Handler) http.Handler
	// SignIn is the tighter limit of log-in and sign-up, per client IP and e-mail.
	SignIn(next http.Handler) http.Handler
}

// TaskMonitorPath is where the task monitor lives; asynqmon must be given it as its
// root path, since its pages link to and call their API below it.
const TaskMonitorPath = "/ops/tasks/"

// NewServer is the gateway's handler. Every answer carries the security headers
// (httpserver.SecurityHeaders), outermost so that even a recovered panic's does. It
// fails when the task monitor's page cannot be rendered to derive its security
// policy from, or the OpenAPI document it was built with (docs.OpenAPI) is not valid.
func NewServer(d Deps) (http.Handler, error) {
	policy, err := monitorPolicy(d.TaskMonitor)
	if err != nil {
		return nil, err
	}
	d.monitorPolicy = policy
	if d.apiDocs, err = newAPIDocs(docs.OpenAPI); err != nil {
		return nil, err
	}
	d.Upstreams = d.forwarding()
	r := httpserver.NewRouter(httpserver.Deps{Log: d.Log, Metrics: d.Metrics, Tracing: d.Tracing})
	addRoutes(r, d)
	return httpserver.SecurityHeaders(r), nil
}
