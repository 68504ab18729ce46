// Package platform is the process shell every Bazaar program runs in: it reads the
// settings all services share, opens the logger, tracing, the Postgres pool (applying
// the service's migrations) and Redis, registers the readiness checks, and serves the
// program's two listeners and background loops until the context ends. A program's
// run() reads as: load config, platform.Start, build the handlers, Serve. The gateway
// runs in it too, without a database (Start with no migrations).
package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Config is what every service reads from its environment.
type Config struct {
	Name     string
	HTTPAddr string // HTTP_ADDR: the public API, which the gateway proxies
	// InternalAddr (INTERNAL_ADDR) is the internal listener: the /internal routes,
	// which want a service credential, and the operations endpoints (/healthz,
	// /readyz, /metrics), which want none and so must stay off the public network.
	InternalAddr string
	// ServiceKeyFile (SERVICE_KEY_FILE) is this service's private key, which signs its
	// calls to other services' internal routes; needed only by a service that makes
	// such calls.
	ServiceKeyFile string
	// ServiceTrustDir (SERVICE_TRUST_DIR) holds the public keys of the services
	// allowed to call this one's internal routes, a <service>.pub file each; needed
	// only by a service that has internal routes.
	ServiceTrustDir string
	DatabaseURL     string           // DATABASE_URL
	RedisURL        string           // REDIS_URL
	JWKSURL         string           // JWKS_URL: where the users service publishes its signing keys
	LogLevel        string           // LOG_LEVEL
	TraceExport     telemetry.Export // the standard OTEL_* variables (telemetry.ExportFromEnv)
	// StartupTimeout bounds how long start-up waits for Postgres to accept the migrations.
	StartupTimeout time.Duration // STARTUP_TIMEOUT
	// Pprof (PPROF) serves Go's profiler on the internal listener (see
	// httpserver.Profiling); off by default.
	Pprof bool

	// What follows is set by the program, not read from the environment.

	// InternalName is how the log names the internal listener: "<name> listening".
	// Empty means "internal"; the gateway's, which serves operations only, is "ops".
	InternalName string
	// LogEvery, when set, writes info and debug lines in batches this often, and
	// warnings and errors at once (logging.Buffer): for a program whose access log
	// is a large part of its work, the gateway.
	LogEvery time.Duration
}

// LoadConfig reads the shared settings of service name, whose local defaults are the
// two listeners' addresses and the database bazaar_<name> with its own role. Errors
// are left in env.
func LoadConfig(env *config.Env, name, defaultAddr, defaultInternalAddr string) Config {
	db := "bazaar_" + name
	return Config{
		Name:            name,
		HTTPAddr:        env.Addr("HTTP_ADDR", defaultAddr),
		InternalAddr:    env.Addr("INTERNAL_ADDR", defaultInternalAddr),
		ServiceKeyFile:  env.String("SERVICE_KEY_FILE", ""),
		ServiceTrustDir: env.String("SERVICE_TRUST_DIR", ""),
		DatabaseURL:     env.URL("DATABASE_URL", "postgres://"+db+":"+db+"@127.0.0.1:5432/"+db+"?sslmode=disable", "postgres", "postgresql"),
		RedisURL:        env.URL("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "rediss"),
		JWKSURL:         env.URL("JWKS_URL", "http://127.0.0.1:8081/.well-known/jwks.json", "http", "https"),
		LogLevel:        env.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		TraceExport:     telemetry.ExportFromEnv(env),
		StartupTimeout:  env.Duration("STARTUP_TIMEOUT", 30*time.Second),
		Pprof:           env.Bool("PPROF", false),
	}
}

// LogValue shows the config with its secrets masked.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("http_addr", c.HTTPAddr),
		slog.String(c.internalName()+"_addr", c.InternalAddr),
		slog.String("service_key_file", c.ServiceKeyFile),
		slog.String("service_trust_dir", c.ServiceTrustDir),
	}
	if c.DatabaseURL != "" {
		attrs = append(attrs, slog.String("database_url", config.Mask(c.DatabaseURL)))
	}
	return slog.GroupValue(append(attrs,
		slog.String("redis_url", config.Mask(c.RedisURL)),
		slog.String("jwks_url", config.Mask(c.JWKSURL)),
		slog.String("log_level", c.LogLevel),
		slog.String("trace_export", c.TraceExport.String()),
		slog.Bool("pprof", c.Pprof),
	)...)
}

// internalName is InternalName with its default.
func (c Config) internalName() string {
	if c.InternalName == "" {
		return "internal"
	}
	return c.InternalName
}

// Platform is a started service's shared machinery.
type Platform struct {
	Config Config
	Log    *slog.Logger
	// Pool is the service's database; nil for a program started without one.
	Pool    *pgxpool.Pool
	Redis   *redis.Client
	Metrics *metrics.Registry
	Tracing *telemetry.Tracing
	Health  *health.Checker
	// revocations is the client revocation look-ups use: bounded by their deadline,
	// which the platform's Redis client does not honour.
	revocations *redis.Client
	migrator    *pgdb.Migrator
	loops       []loop
	tasks       *Tasks
	logs        *logging.Buffer // with Config.LogEvery
}

// Start opens everything the program needs and applies its migrations, retrying while
// Postgres is unreachable for up to cfg.StartupTimeout. Readiness then checks Postgres
// and the migrations (critical) and Redis (optional: a service without Redis still
// writes, its events wait in the outbox). With no migrations the program has no
// database (the gateway): no pool, and readiness asks Redis alone. The caller must
// Close the platform.
func Start(ctx context.Context, cfg Config, migrations fs.FS, logOut io.Writer) (*Platform, error) {
	p := &Platform{Config: cfg, Metrics: metrics.New()}
	if cfg.LogEvery > 0 {
		p.logs = logging.NewBuffer(logOut, cfg.LogEvery)
		logOut = p.logs
	}
	log, err := logging.New(logOut, cfg.LogLevel, cfg.Name)
	if err != nil {
		p.closeLogs()
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	if p.logs != nil {
		log = p.logs.Urgent(log)
	}
	p.Log = log
	log.Info("starting", "config", cfg)
	if p.Tracing, err = telemetry.Setup(ctx, cfg.Name, cfg.TraceExport); err != nil {
		p.Close()
		return nil, err
	}
	if migrations != nil {
		if err := p.openDatabase(ctx, migrations); err != nil {
			p.Close()
			return nil, err
		}
	}
	if p.Redis, err = redisclient.Open(cfg.RedisURL); err != nil {
		p.Close()
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if p.Tracing.Exporting {
		redisclient.Trace(p.Redis, p.Tracing.Provider)
	}
	if p.revocations, err = redisclient.OpenBounded(cfg.RedisURL); err != nil {
		p.Close()
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	p.Health = health.NewChecker(log, 2*time.Second)
	if p.Pool != nil {
		p.Health.Critical("postgres", p.Pool.Ping)
		p.Health.Critical("migrations", p.migrator.Check)
	}
	p.Health.Optional("redis", func(ctx context.Context) error { return p.Redis.Ping(ctx).Err() })
	return p, nil
}

// openDatabase opens the pool and applies the migrations.
func (p *Platform) openDatabase(ctx context.Context, migrations fs.FS) error {
	var dbOpts []pgdb.Option
	if p.Tracing.Exporting {
		dbOpts = append(dbOpts, pgdb.Traced(p.Tracing.Provider))
	}
	var err error
	if p.Pool, err = pgdb.Open(ctx, p.Config.DatabaseURL, dbOpts...); err != nil {
		return err
	}
	if p.migrator, err = pgdb.NewMigrator(p.Pool, migrations, p.Log); err != nil {
		return err
	}
	return p.migrate(ctx)
}

func (p *Platform) migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.Config.StartupTimeout)
	defer cancel()
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		version, err := p.migrator.Up(ctx)
		if err == nil {
			p.Log.Info("migrations applied", "version", version)
			return nil
		}
		p.Log.Warn("migrations failed; retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("database not ready within STARTUP_TIMEOUT (%s): %w", p.Config.StartupTimeout, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// Router is a router with the standard middleware, for the public API.
func (p *Platform) Router() *chi.Mux {
	return httpserver.NewRouter(httpserver.Deps{Log: p.Log, Metrics: p.Metrics, Tracing: p.Tracing})
}

// InternalRouter is a router with the standard middleware and the operational routes
// (/healthz, /readyz, /metrics, and /debug/pprof/ with PPROF) already on it, for the
// internal listener. A service
// mounts its /internal routes on it, each behind ServiceVerifier().Require.
func (p *Platform) InternalRouter() *chi.Mux {
	r := p.Router()
	r.Method(http.MethodGet, "/healthz", health.Live())
	r.Method(http.MethodGet, "/readyz", p.Health.Ready())
	r.Method(http.MethodGet, "/metrics", p.Metrics.Handler())
	if p.Config.Pprof {
		httpserver.Profiling(r)
	}
	return r
}

// TokenVerifier checks shoppers' and admins' access tokens on the public routes, as
// the gateway did before: against the users service's published keys (JWKS_URL), and
// refusing the tokens of sessions that have ended (the revocation list in Redis, each
// look-up bounded by auth.DefaultRevocationTimeout; while Redis is down or slow tokens
// are judged on their signature and expiry alone, and that is logged). So a caller
// who goes round the gateway meets the same checks.
func (p *Platform) TokenVerifier() *auth.Verifier {
	return auth.NewVerifier(auth.NewJWKS(p.Config.JWKSURL, nil)).
		WithRevocations(auth.RedisRevocations(p.revocations)).
		WithLogger(p.Log)
}

// ServiceVerifier checks the service credentials sent to this service's internal
// routes, against the public keys in SERVICE_TRUST_DIR, which must be set.
func (p *Platform) ServiceVerifier() (*svcauth.Verifier, error) {
	if p.Config.ServiceTrustDir == "" {
		return nil, fmt.Errorf("SERVICE_TRUST_DIR is required: the directory of the public keys of the services that call %s "+
			"(make run creates one; bazaarctl secrets init makes them by hand)", p.Config.Name)
	}
	v, err := svcauth.NewVerifier(p.Config.Name, p.Config.ServiceTrustDir)
	if err != nil {
		return nil, fmt.Errorf("SERVICE_TRUST_DIR: %w", err)
	}
	return v, nil
}

// ServiceSigner signs this service's calls to other services' internal routes with
// the key in SERVICE_KEY_FILE, which must be set.
func (p *Platform) ServiceSigner() (*svcauth.Signer, error) {
	if p.Config.ServiceKeyFile == "" {
		return nil, fmt.Errorf("SERVICE_KEY_FILE is required: the private key %s signs its calls to other services with "+
			"(make run creates one; bazaarctl secrets init makes them by hand)", p.Config.Name)
	}
	s, err := svcauth.NewSigner(p.Config.Name, p.Config.ServiceKeyFile)
	if err != nil {
		return nil, fmt.Errorf("SERVICE_KEY_FILE: %w", err)
	}
	return s, nil
}

// Background adds a loop (an outbox relay, an event consumer, a task worker) that
// Serve runs beside the HTTP server for the life of the program. run must return when
// its context ends; an error it returns before then stops the whole program.
func (p *Platform) Background(name string, run func(context.Context) error) {
	p.loops = append(p.loops, loop{name, run})
}

type loop struct {
	name string
	run  func(context.Context) error
}

// Serve serves the public API on HTTP_ADDR and internal (the /internal routes and the
// operational ones: build it on InternalRouter) on INTERNAL_ADDR, and runs the
// background loops, until ctx ends or one of them fails; then it stops them all,
// letting in-flight work finish. Both addresses are bound before anything starts, the
// internal one first, so that a program whose port is taken never serves half.
func (p *Platform) Serve(ctx context.Context, public, internal http.Handler) error {
	in := httpserver.New(p.Config.InternalAddr, internal, p.Log)
	in.Label = p.Config.internalName()
	if err := in.Listen(); err != nil {
		return fmt.Errorf("%s listener: %w", in.Label, err)
	}
	pub := httpserver.New(p.Config.HTTPAddr, public, p.Log)
	if err := pub.Listen(); err != nil {
		in.Close()
		return fmt.Errorf("public listener: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(p.loops)+2)
	var wg sync.WaitGroup
	for _, l := range p.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.run(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", l.name, err)
			} else if ctx.Err() == nil {
				err = fmt.Errorf("%s stopped unexpectedly", l.name)
			}
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	for _, srv := range []*httpserver.Server{in, pub} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := srv.Run(ctx)
			cancel()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	p.Log.Info("stopped")
	return nil
}

// Close releases everything Start opened.
func (p *Platform) Close() {
	var errs []error
	if p.migrator != nil {
		errs = append(errs, p.migrator.Close())
	}
	if p.Pool != nil {
		p.Pool.Close()
	}
	if p.Redis != nil {
		errs = append(errs, p.Redis.Close())
	}
	if p.revocations != nil {
		errs = append(errs, p.revocations.Close())
	}
	if p.tasks != nil {
		errs = append(errs, p.tasks.Client.Close())
	}
	if p.Tracing != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, p.Tracing.Shutdown(sctx))
		cancel()
	}
	if err := errors.Join(errs...); err != nil {
		p.Log.Warn("closing", "err", err)
	}
	p.closeLogs()
}

// closeLogs writes what the log buffer holds, last, after every other step has
// logged.
func (p *Platform) closeLogs() {
	if p.logs != nil {
		_ = p.logs.Close()
	}
}

// RelayOutbox runs the service's outbox relay in the background, publishing its events
// to their streams (one active relay per service across replicas), and schedules the
// daily outbox:cleanup of rows published more than a week ago.
func (p *Platform) RelayOutbox() error {
	if err := p.needDatabase("RelayOutbox"); err != nil {
		return err
	}
	relay := outbox.NewRelay(p.Pool, p.Redis, p.Log, outbox.RelayOptions{Name: p.Config.Name, Registerer: p.Metrics,
		Tracer: p.Tracing.Provider})
	p.Background("outbox relay", relay.Run)
	t, err := p.Tasks()
	if err != nil {
		return err
	}
	t.Worker.Handle(outbox.Cleanup, outbox.Clean(p.Pool, p.Log))
	return t.Scheduler.Daily(outbox.Cleanup, outbox.CleanupAt, nil)
}

// CleanInbox schedules the daily inbox:cleanup of a service that consumes events with
// pkg/events: the ids of events handled more than retention ago are deleted from its
// inbox table (tasks.DefaultInboxRetention explains how long is long enough).
func (p *Platform) CleanInbox(retention time.Duration) error {
	if err := p.needDatabase("CleanInbox"); err != nil {
		return err
	}
	t, err := p.Tasks()
	if err != nil {
		return err
	}
	t.Worker.Handle(tasks.InboxCleanup, tasks.CleanInbox(p.Pool, p.Log, retention))
	return t.Scheduler.Daily(tasks.InboxCleanup, tasks.InboxCleanupAt, nil)
}

// needDatabase is the error of a method that needs the pool of a program started
// without one.
func (p *Platform) needDatabase(method string) error {
	if p.Pool == nil {
		return fmt.Errorf("platform: %s needs a database, and %s was started without migrations", method, p.Config.Name)
	}
	return nil
}

// Tasks is a service's background task queue (asynq): a client to enqueue with, a
// worker serving the service's own queues, and the periodic scheduler.
type Tasks struct {
	Client    *tasks.Client
	Worker    *tasks.Worker
	Scheduler *tasks.Scheduler
}

// Tasks returns the service's task queue, making it on first use; its worker and
// scheduler run in the background with the program. Register handlers and schedules
// before Serve.
func (p *Platform) Tasks() (*Tasks, error) {
	if p.tasks != nil {
		return p.tasks, nil
	}
	client, err := tasks.NewClient(p.Config.RedisURL, p.Config.Name)
	if err != nil {
		return nil, err
	}
	client.Traced(p.Tracing.Provider)
	worker, err := tasks.NewWorker(p.Config.RedisURL, p.Log, tasks.Config{Service: p.Config.Name, Registerer: p.Metrics,
		Tracer: p.Tracing.Provider})
	if err != nil {
		client.Close()
		return nil, err
	}
	p.tasks = &Tasks{Client: client, Worker: worker, Scheduler: tasks.NewScheduler(client, p.Log)}
	p.Background("task worker", worker.Run)
	p.Background("task scheduler", p.tasks.Scheduler.Run)
	return p.tasks, nil
}
