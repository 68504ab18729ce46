package httpapi

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/bazaar-shop/bazaar/gateway/internal/proxy"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// forwarding is what the gateway adds to every request it forwards to an upstream,
// around the upstream's handler:
//
//   - A bound on the requests in flight to each upstream service (MaxInFlight): past
//     it a request is answered at once, 503 with Retry-After, rather than queued
//     behind the others, so that an upstream that slows down makes the gateway shed
//     its excess instead of holding an ever longer queue of connections and
//     goroutines, each waiting up to UPSTREAM_TIMEOUT. Each upstream has its own
//     bound, so that one slow service cannot take every request's place. Order
//     status streams are not counted: they last as long as the client listens.
//   - When spans are not exported, the request's trace passed on in traceparent (the
//     proxies then make no client spans of their own, which would record nothing).
func (d Deps) forwarding() Upstreams {
	up := d.Upstreams
	bound := func(name string, h http.Handler) http.Handler {
		if d.MaxInFlight > 0 {
			h = (&bulkhead{name: name, max: int64(d.MaxInFlight), log: d.Log}).wrap(h)
		}
		return h
	}
	up.Users = bound("users", up.Users)
	up.Inventory = bound("inventory", up.Inventory)
	up.Orders = bound("orders", up.Orders)
	up.Payments = bound("payments", up.Payments)
	up.Notifications = bound("notifications", up.Notifications)
	if d.Tracing != nil && !d.Tracing.Exporting {
		for _, h := range []*http.Handler{&up.Users, &up.Inventory, &up.Orders, &up.OrderEvents, &up.Payments, &up.Notifications} {
			*h = passTrace(d.Tracing, *h)
		}
	}
	return up
}

// shedWarnEvery is the least time between two warnings that an upstream's bound
// turned requests away: under overload there is one per request otherwise.
const shedWarnEvery = 5 * time.Second

// bulkhead bounds the requests in flight through one handler.
type bulkhead struct {
	name     string
	max      int64
	log      *slog.Logger
	inFlight atomic.Int64
	shed     atomic.Int64 // requests turned away since the last warning
	warned   atomic.Int64 // unix nanoseconds of the last warning
}

func (b *bulkhead) wrap(next http.Handler) http.Handler {
	busy := apperr.E(apperr.Unavailable, "the %s service is busy; retry later", b.name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.inFlight.Add(1) > b.max {
			b.inFlight.Add(-1)
			b.warn(r)
			w.Header().Set("Retry-After", "1")
			// No logger: one error line per request turned away would flood the
			// log at the worst moment; warn says it now and then instead.
			problem.Write(w, r, nil, busy)
			return
		}
		defer b.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// warn counts a request turned away and says how many, at most every shedWarnEvery.
func (b *bulkhead) warn(r *http.Request) {
	n := b.shed.Add(1)
	now := time.Now().UnixNano()
	last := b.warned.Load()
	if now-last < int64(shedWarnEvery) || !b.warned.CompareAndSwap(last, now) {
		return
	}
	b.shed.Add(-n)
	b.log.WarnContext(r.Context(), "shedding load: too many requests in flight to an upstream; answering 503",
		"upstream", b.name, "max_in_flight", b.max, "shed", n)
}

// passTrace puts the request's trace context (its span, made by the router) in the
// request's headers, which the proxy forwards, so that the upstream continues the
// trace.
func passTrace(t *telemetry.Tracing, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Propagator.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
		next.ServeHTTP(w, r)
	})
}

// refuseLoops answers 508 to a request that a Bazaar gateway has already forwarded
// (proxy.Looped): an upstream URL that points at the gateway itself, a configuration
// mistake that would otherwise send each request round and round, every lap holding a
// connection, until a rate limit or a timeout stopped it. It is logged as a warning,
// since only an operator can fix it.
func refuseLoops(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !proxy.Looped(r) {
				next.ServeHTTP(w, r)
				return
			}
			log.WarnContext(r.Context(), "a request came back to the gateway that forwarded it: an upstream URL points at the gateway",
				"method", r.Method, "path", r.URL.Path, "via", r.Header.Values("Via"))
			problem.Write(w, r, log, apperr.E(apperr.LoopDetected,
				"the request came back to the gateway: an upstream URL points at the gateway itself"))
		})
	}
}
