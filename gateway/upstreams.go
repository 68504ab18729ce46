package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/gateway/internal/httpapi"
	"github.com/bazaar-shop/bazaar/gateway/internal/proxy"
	"github.com/bazaar-shop/bazaar/gateway/internal/systemhealth"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// An upstream service is one or more instances: <NAME>_URL is a comma-separated list
// of base URLs (or a host name that resolves to several addresses), and
// <NAME>_INTERNAL_URL lists where the same instances answer /readyz, one for each
// entry of <NAME>_URL, in the same order (a host name pairs with the same name). See
// pkg/balancer.

// loadBalancing reads the balancers' settings (EJECT_AFTER, EJECT_BACKOFF,
// EJECT_BACKOFF_MAX, RESOLVE_EVERY, BREAKER_COOLDOWN), the same for every upstream.
func loadBalancing(env *config.Env) balancer.Settings {
	return balancer.Settings{
		EjectAfter:      env.Int("EJECT_AFTER", 3, 1, 1000),
		EjectBackoff:    env.Duration("EJECT_BACKOFF", time.Second),
		EjectBackoffMax: env.Duration("EJECT_BACKOFF_MAX", 30*time.Second),
		ResolveEvery:    env.Duration("RESOLVE_EVERY", 5*time.Second),
		BreakerCooldown: env.Duration("BREAKER_COOLDOWN", 5*time.Second),
	}
}

// upstreamURLs are the services' <NAME>_URL lists, by name.
func (c Config) upstreamURLs() map[string]string {
	return map[string]string{"users": c.UsersURL, "inventory": c.InventoryURL, "payments": c.PaymentsURL,
		"orders": c.OrdersURL, "notifications": c.NotificationsURL}
}

// checkPairs reports each service whose lists of URLs and internal URLs differ in
// length: the instances could not be paired with their readiness URLs.
func (c Config) checkPairs() error {
	var errs []error
	for _, name := range serviceNames {
		urls, err1 := balancer.SplitURLs(c.upstreamURLs()[name])
		ready, err2 := balancer.SplitURLs(c.ReadyURLs[name])
		if err1 == nil && err2 == nil && len(urls) != len(ready) {
			v := strings.ToUpper(name)
			errs = append(errs, fmt.Errorf("%s_INTERNAL_URL lists %d URLs and %s_URL %d: give each instance's internal URL, in the same order",
				v, len(ready), v, len(urls)))
		}
	}
	return errors.Join(errs...)
}

// firstURL is the first URL of a list, for the users service's JWKS_URL default and
// the operations sign-in, which call one address (a name that balances, or the first
// instance).
func firstURL(list string) string {
	urls, err := balancer.SplitURLs(list)
	if err != nil {
		return list
	}
	return urls[0]
}

// newUpstreams are the proxies to the services, each over the balancer of its
// instances, and the services as GET /health reports them. The orders service gets
// two proxies over its one balancer: the status stream's lasts as long as the client
// listens, so it has no overall time limit (only UPSTREAM_TIMEOUT for its headers,
// and STREAM_IDLE_TIMEOUT for silence) and its own connections; ctx ending ends its
// streams, so that a shutdown does not wait for them.
func newUpstreams(ctx context.Context, cfg Config, log *slog.Logger, tracing *telemetry.Tracing) (httpapi.Upstreams, []systemhealth.Service, error) {
	balancers := map[string]*balancer.Balancer{}
	var services []systemhealth.Service
	for _, name := range serviceNames {
		urls, err := balancer.SplitURLs(cfg.upstreamURLs()[name])
		if err != nil {
			return httpapi.Upstreams{}, nil, fmt.Errorf("%s_URL: %w", strings.ToUpper(name), err)
		}
		ready, err := balancer.SplitURLs(cfg.ReadyURLs[name])
		if err != nil {
			return httpapi.Upstreams{}, nil, fmt.Errorf("%s_INTERNAL_URL: %w", strings.ToUpper(name), err)
		}
		b, err := balancer.New(balancer.Options{Name: name, URLs: urls, ReadyURLs: ready, Settings: cfg.Balancing,
			Log: log.With("upstream", name)})
		if err != nil {
			return httpapi.Upstreams{}, nil, err
		}
		context.AfterFunc(ctx, b.Close) // its readiness checks end with the gateway
		balancers[name] = b
		services = append(services, systemhealth.Service{Name: name, Upstream: b})
	}

	opts := proxy.Options{Timeout: cfg.UpstreamTimeout, Log: log, Tracing: tracing}
	if !tracing.Exporting {
		// No client spans when nothing exports them: they would record nothing, at a
		// cost on every call (docs/benchmarks.md); httpapi passes the request's trace
		// on to the upstream instead.
		opts.Tracing = nil
	}
	streamOpts := opts
	streamOpts.IdleTimeout, streamOpts.Stop = cfg.StreamIdleTimeout, ctx
	var u httpapi.Upstreams
	for _, p := range []struct {
		to   *http.Handler
		name string
		opts proxy.Options
	}{
		{&u.Users, "users", opts},
		{&u.Inventory, "inventory", opts},
		{&u.Orders, "orders", opts},
		{&u.OrderEvents, "orders", streamOpts},
		{&u.Payments, "payments", opts},
		{&u.Notifications, "notifications", opts},
	} {
		h, err := proxy.New(balancers[p.name], p.opts)
		if err != nil {
			return httpapi.Upstreams{}, nil, err
		}
		*p.to = h
	}
	return u, services, nil
}
