package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"

	"github.com/bazaar-shop/bazaar/gateway/internal/httpapi"
	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
	"github.com/bazaar-shop/bazaar/gateway/internal/productcache"
	"github.com/bazaar-shop/bazaar/gateway/internal/ratelimit"
	"github.com/bazaar-shop/bazaar/gateway/internal/storefront"
	"github.com/bazaar-shop/bazaar/gateway/internal/systemhealth"
	"github.com/bazaar-shop/bazaar/gateway/internal/usersclient"
	"github.com/bazaar-shop/bazaar/internal/programs"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// serviceReadyTimeout bounds each service's /readyz as asked by GET /health. Short, so
// that /health answers promptly when a service hangs.
const serviceReadyTimeout = 2 * time.Second

// healthCacheTTL is how long GET /health gives the same report again: anyone may ask
// it, and each check asks every service, so a second's staleness buys a bound on what
// a crowd of callers costs them.
const healthCacheTTL = time.Second

// tokenCacheSize bounds the verified tokens the gateway remembers: about 1 KiB each,
// and more active tokens than this cost a signature check now and then, no more.
// revocationRecheck is how long the gateway trusts its last answer that a token's
// session is still open: the contract promises an ended session's tokens are refused
// within seconds.
const (
	tokenCacheSize    = 50_000
	revocationRecheck = time.Second
)

// defaultGOGC is the gateway's garbage-collection target when GOGC is not set: the
// heap may grow to five times what survived the last collection before the next,
// rather than Go's twice. Every proxied request leaves garbage behind (headers,
// contexts, the proxy's copy buffer) while what stays live is a few MiB, so Go's
// default collects hundreds of times a second under load; this trades tens of MiB
// of heap for a fifth to a third more requests a second (docs/benchmarks.md).
const defaultGOGC = 400

// defaultOpsPort is OPS_ADDR's port when it is not set: the operations listener is on
// loopback by default, so that only the machine (or a scraper beside it) reaches it.
const defaultOpsPort = "9080"

// flushLogsEvery is how long an info line of the gateway's log may wait in memory
// before it is written (logging.Buffer): its access log, a line per request, costs
// a system call a line otherwise.
const flushLogsEvery = 100 * time.Millisecond

// Config is everything the gateway reads from its environment: the settings every
// program shares (platform.Config), then its own.
type Config struct {
	// platform.Config's InternalAddr is the operations listener, OPS_ADDR: /metrics,
	// the probes again, and the profiler with PPROF. By default 127.0.0.1:9080, or
	// any free port when HTTP_ADDR asks for one (port 0), since such a gateway is one
	// of many on the machine (a test's stack). REDIS_URL holds the operations and
	// shop sessions, the product cache, the rate limits' shared counts and the task
	// queues. The gateway has no database.
	platform.Config
	UsersURL         string // USERS_URL: its instances' base URLs, comma-separated (upstreams.go)
	InventoryURL     string // INVENTORY_URL
	PaymentsURL      string // PAYMENTS_URL
	OrdersURL        string // ORDERS_URL
	NotificationsURL string // NOTIFICATIONS_URL
	// Balancing (EJECT_AFTER, EJECT_BACKOFF, EJECT_BACKOFF_MAX, RESOLVE_EVERY,
	// BREAKER_COOLDOWN) tunes the balancers over each service's instances.
	Balancing balancer.Settings
	// ReadyURLs are the services' internal listeners (USERS_INTERNAL_URL and so on),
	// one per instance, where GET /health and the balancers ask for /readyz: the
	// probes are not on the public ports the gateway proxies to.
	ReadyURLs       map[string]string
	UpstreamTimeout time.Duration // UPSTREAM_TIMEOUT: the whole of one proxied call
	// MaxInFlight (UPSTREAM_MAX_IN_FLIGHT) bounds the requests in flight to each
	// upstream service; past it the gateway answers 503 with Retry-After at once.
	MaxInFlight int
	// GOGC is the Go runtime's own variable, read here only to tell whether it is
	// set: when it is not, the gateway runs its garbage collector at defaultGOGC.
	GOGC string
	// StreamIdleTimeout (STREAM_IDLE_TIMEOUT) ends an order's status stream that has
	// been silent this long; the orders service sends a keep-alive every 15s.
	StreamIdleTimeout time.Duration
	ProductCacheTTL   time.Duration // PRODUCT_CACHE_TTL: the longest a product read is served from the cache
	OpsSessionTTL     time.Duration // OPS_SESSION_TTL: how long an admin stays signed in to /ops
	// ShopSessionTTL (SHOP_SESSION_TTL) is the longest a storefront session lasts
	// from sign-in; the users service may end it sooner (SESSION_MAX_AGE, log-out).
	ShopSessionTTL time.Duration
	// MailpitURL (MAILPIT_URL) is the mail catcher's web page, which the admin pages
	// link to; empty where there is none (production).
	MailpitURL string
	// TraceURL (TRACE_URL_TEMPLATE) is a trace's page in a trace viewer, with
	// {trace_id} where its id goes; the order story links to it. Empty: no link.
	TraceURL string
	// ConsumerName (CONSUMER_NAME) names this replica in the "gateway" consumer group
	// that reads inventory events for the product cache; empty means
	// "gateway@<host name>". It must be stable across restarts and unique among
	// replicas.
	ConsumerName string
	// RateLimits (RATE_EDGE_IP, RATE_EDGE_IP_BURST, RATE_IP, RATE_IP_BURST,
	// RATE_USER, RATE_USER_BURST, RATE_AUTH_IP_PER_MIN, RATE_AUTH_EMAIL_PER_MIN) are
	// the public API's rate limits; 0 turns one off. RATE_SYNC_INTERVAL is how often
	// the per-caller ones are reconciled across replicas through Redis.
	RateLimits ratelimit.Limits
	// RateRedisTimeout (RATE_REDIS_TIMEOUT) bounds a per-caller limit's call to
	// Redis; past it the request is judged in the process, and counted there too,
	// since Redis may have counted it or not.
	RateRedisTimeout time.Duration
}

// loadConfig reads the gateway's settings; the error names every bad variable.
func loadConfig(getenv func(string) string) (Config, error) {
	env := config.New(getenv)
	web := []string{"http", "https"}
	c := Config{
		Config: platform.Config{
			Name:         "gateway",
			HTTPAddr:     env.Addr("HTTP_ADDR", ":8080"),
			RedisURL:     env.URL("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "rediss"),
			LogLevel:     env.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
			TraceExport:  telemetry.ExportFromEnv(env),
			Pprof:        env.Bool("PPROF", false),
			InternalName: "ops",
			LogEvery:     flushLogsEvery,
		},
		UsersURL:          env.Valid("USERS_URL", localURL("users", false), balancer.ValidURLs),
		InventoryURL:      env.Valid("INVENTORY_URL", localURL("inventory", false), balancer.ValidURLs),
		PaymentsURL:       env.Valid("PAYMENTS_URL", localURL("payments", false), balancer.ValidURLs),
		OrdersURL:         env.Valid("ORDERS_URL", localURL("orders", false), balancer.ValidURLs),
		NotificationsURL:  env.Valid("NOTIFICATIONS_URL", localURL("notifications", false), balancer.ValidURLs),
		UpstreamTimeout:   env.Duration("UPSTREAM_TIMEOUT", 10*time.Second),
		MaxInFlight:       env.Int("UPSTREAM_MAX_IN_FLIGHT", 512, 1, 1_000_000),
		GOGC:              env.String("GOGC", ""),
		StreamIdleTimeout: env.Duration("STREAM_IDLE_TIMEOUT", time.Minute),
		ProductCacheTTL:   env.Duration("PRODUCT_CACHE_TTL", time.Minute),
		OpsSessionTTL:     env.Duration("OPS_SESSION_TTL", 8*time.Hour),
		ShopSessionTTL:    env.Duration("SHOP_SESSION_TTL", 7*24*time.Hour),
		MailpitURL:        env.OptionalURL("MAILPIT_URL", "http", "https"),
		TraceURL:          env.String("TRACE_URL_TEMPLATE", ""),
		ConsumerName:      env.String("CONSUMER_NAME", ""),
		RateLimits: ratelimit.Limits{
			EdgeIP:          env.Int("RATE_EDGE_IP", 100, 0, 1_000_000),
			EdgeIPBurst:     env.Int("RATE_EDGE_IP_BURST", 100, 0, 1_000_000),
			IP:              env.Int("RATE_IP", 20, 0, 1_000_000),
			IPBurst:         env.Int("RATE_IP_BURST", 40, 0, 1_000_000),
			User:            env.Int("RATE_USER", 50, 0, 1_000_000),
			UserBurst:       env.Int("RATE_USER_BURST", 100, 0, 1_000_000),
			AuthIPPerMin:    env.Int("RATE_AUTH_IP_PER_MIN", 10, 0, 1_000_000),
			AuthEmailPerMin: env.Int("RATE_AUTH_EMAIL_PER_MIN", 5, 0, 1_000_000),
			SyncInterval:    env.Duration("RATE_SYNC_INTERVAL", ratelimit.DefaultSyncInterval),
		},
		RateRedisTimeout: env.Duration("RATE_REDIS_TIMEOUT", ratelimit.DefaultOpTimeout),
	}
	if c.ConsumerName == "" {
		host, _ := os.Hostname()
		c.ConsumerName = "gateway@" + host
	}
	opsDefault := net.JoinHostPort("127.0.0.1", defaultOpsPort)
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err == nil && port == "0" {
		opsDefault = "127.0.0.1:0"
	}
	c.InternalAddr = env.Addr("OPS_ADDR", opsDefault)
	c.JWKSURL = env.URL("JWKS_URL", firstURL(c.UsersURL)+"/.well-known/jwks.json", web...)
	c.ReadyURLs = map[string]string{}
	for _, name := range serviceNames {
		c.ReadyURLs[name] = env.Valid(strings.ToUpper(name)+"_INTERNAL_URL", localURL(name, true), balancer.ValidURLs)
	}
	c.Balancing = loadBalancing(env)
	return c, errors.Join(env.Err(), c.checkPairs())
}

// LogValue shows the gateway's own settings with their secrets masked; platform.Start
// logs the shared ones.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("users_url", config.Mask(c.UsersURL)),
		slog.String("inventory_url", config.Mask(c.InventoryURL)),
		slog.String("payments_url", config.Mask(c.PaymentsURL)),
		slog.String("orders_url", config.Mask(c.OrdersURL)),
		slog.String("notifications_url", config.Mask(c.NotificationsURL)),
		slog.Any("internal_urls", c.ReadyURLs),
		slog.Any("balancing", c.Balancing),
		slog.String("upstream_timeout", c.UpstreamTimeout.String()),
		slog.Int("upstream_max_in_flight", c.MaxInFlight),
		slog.String("gogc", c.GOGC),
		slog.String("stream_idle_timeout", c.StreamIdleTimeout.String()),
		slog.String("product_cache_ttl", c.ProductCacheTTL.String()),
		slog.String("ops_session_ttl", c.OpsSessionTTL.String()),
		slog.String("shop_session_ttl", c.ShopSessionTTL.String()),
		slog.String("mailpit_url", c.MailpitURL),
		slog.String("trace_url_template", c.TraceURL),
		slog.String("consumer_name", c.ConsumerName),
		slog.Any("rate_limits", c.RateLimits),
		slog.String("rate_redis_timeout", c.RateRedisTimeout.String()),
	)
}

// serviceNames are the services behind the gateway.
var serviceNames = programs.Services()

// localURL is where the local stack (make run) has the service called name listen:
// on its public port, or on its internal one.
func localURL(name string, internal bool) string {
	p, _ := programs.Get(name)
	port := p.Port
	if internal {
		port = p.InternalPort
	}
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

// run starts the gateway and serves until ctx ends. It runs in the process shell every
// service does (pkg/platform), without a database.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if platform.Probing(args) {
		return platform.Probe(ctx, cfg.InternalAddr) // the ops listener serves /readyz too
	}
	if cfg.GOGC == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	// Its log is written in batches, warnings and errors at once (cfg.LogEvery).
	p, err := platform.Start(ctx, cfg.Config, nil, stdout)
	if err != nil {
		return err
	}
	defer p.Close()
	log := p.Log
	log.Info("gateway settings", "config", cfg)
	// Without Redis the gateway still routes the API; the operations pages, the
	// product cache (bypassed) and task states need it, so the platform's readiness
	// counts it degraded, not down.
	rdb := p.Redis

	upstreams, services, err := newUpstreams(ctx, cfg, log, p.Tracing)
	if err != nil {
		return err
	}

	// The product cache has Redis connections of its own, which give up quickly.
	cacheRDB, err := redisclient.OpenBounded(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer cacheRDB.Close()
	cache := productcache.New(cacheRDB, productcache.Options{TTL: cfg.ProductCacheTTL, Log: log, Registerer: p.Metrics})
	invalidator := productcache.NewInvalidator(cache, rdb, productcache.InvalidatorOptions{Name: cfg.ConsumerName, Log: log})

	// The rate limiter has Redis connections of its own too, which give up sooner
	// still: without Redis, the limits are kept in the process. The per-caller ones
	// are decided in the process anyway, and reconciled through Redis in the
	// background (limiter.Run below).
	limitRDB, err := ratelimit.Open(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer limitRDB.Close()
	limiter := ratelimit.New(limitRDB, cfg.RateLimits, ratelimit.Options{Log: log, Registerer: p.Metrics, OpTimeout: cfg.RateRedisTimeout})

	inspector, err := tasks.NewInspector(cfg.RedisURL, "") // every service's queues
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer inspector.Close()

	monitor, err := newTaskMonitor(cfg.RedisURL)
	if err != nil {
		return err
	}
	defer monitor.Close()

	// The platform's verifier refuses the tokens of a session that has ended (logged
	// out, or its refresh token reused) before they expire, each look-up bounded. The
	// gateway caches verified tokens besides, so that a token is not parsed and its
	// signature not checked on every request, and its session is asked about once
	// every revocationRecheck rather than on every request: the gateway refuses an
	// ended session's tokens within that (the services behind it at once).
	verifier := p.TokenVerifier().WithCache(tokenCacheSize, revocationRecheck)
	shop, err := storefront.New(storefront.Options{
		Log:      log,
		Sessions: storefront.NewSessions(rdb, cfg.ShopSessionTTL),
		Links:    storefront.Links{TaskMonitor: httpapi.TaskMonitorPath, Mailpit: cfg.MailpitURL, Trace: cfg.TraceURL},
	})
	if err != nil {
		return err
	}
	h, err := httpapi.NewServer(httpapi.Deps{
		Log:          log,
		Metrics:      p.Metrics,
		Tracing:      p.Tracing,
		Verifier:     verifier,
		Ready:        p.Health,
		SystemHealth: systemhealth.New(services, p.Health.Check, serviceReadyTimeout, log).CacheFor(healthCacheTTL),
		Upstreams:    upstreams,
		Products:     cache,
		Tasks:        inspector,
		Streams:      rdb,
		Ops: opsauth.New(opsauth.Options{
			Log:        log,
			Verifier:   verifier,
			Users:      usersclient.New(firstURL(cfg.UsersURL), cfg.UpstreamTimeout, p.Tracing),
			Sessions:   opsauth.NewSessions(rdb, cfg.OpsSessionTTL),
			Limiter:    limiter,
			RetryAfter: usersclient.RetryAfter,
			Home:       httpapi.TaskMonitorPath,
		}),
		TaskMonitor: monitor,
		Shop:        shop,
		RateLimit:   limiter,
		MaxInFlight: cfg.MaxInFlight,
	})
	if err != nil {
		return err
	}

	// Serve waits for these before returning, so before the Redis clients they use
	// are closed.
	p.Background("product cache invalidator", invalidator.Run)
	p.Background("rate limit sync", limiter.Run)
	return p.Serve(ctx, h, p.InternalRouter())
}

// newTaskMonitor is asynqmon over the Redis at redisURL, which must be the one the
// services keep their task queues in: asynqmon reads and changes the queues there
// directly, not through any service. The caller closes it.
func newTaskMonitor(redisURL string) (*asynqmon.HTTPHandler, error) {
	conn, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if opt, ok := conn.(asynq.RedisClientOpt); ok {
		// ParseRedisURI drops the user name of a Redis ACL user, which the rest of
		// the gateway (redisclient) signs in as.
		if u, err := url.Parse(redisURL); err == nil {
			opt.Username = u.User.Username()
		}
		conn = opt
	}
	return asynqmon.New(asynqmon.Options{
		// Its pages load their scripts from and call their API under this path.
		RootPath:     httpapi.TaskMonitorPath,
		RedisConnOpt: conn,
		// No PrometheusAddress: the stack runs no Prometheus server for the monitor
		// to query, so it shows current counts without their history charts.
	}), nil
}
