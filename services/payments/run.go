package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/services/payments/internal/httpapi"
	"github.com/bazaar-shop/bazaar/services/payments/internal/jobs"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
	"github.com/bazaar-shop/bazaar/services/payments/internal/paymentmetrics"
	"github.com/bazaar-shop/bazaar/services/payments/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/payments/internal/postgres/migrations"
)

// settings is the payments service's configuration: the platform's shared settings
// plus its own.
type settings struct {
	platform.Config
	// ProcessorTimeout bounds each call to the payment processor (PROCESSOR_TIMEOUT,
	// default 3s). Nothing of the database is held meanwhile (see the payment package
	// doc). It must stay below what a caller gives one payments call (the orders saga:
	// 5s per attempt), so that payments answers 504 (or 503), and the caller knows the
	// processor was the trouble, rather than the caller timing out and having to guess.
	ProcessorTimeout time.Duration
	// VoidRetention is how long a voided order stays void (VOID_RETENTION, default 30
	// days, at least an hour): long past the last moment a charge request sent before
	// the void could arrive. payments:voids-cleanup forgets older voids daily.
	VoidRetention time.Duration
}

// loadSettings reads the configuration; the error names every bad variable.
func loadSettings(getenv func(string) string) (settings, error) {
	env := config.New(getenv)
	s := settings{
		Config:           platform.LoadConfig(env, "payments", ":8083", ":9083"),
		ProcessorTimeout: env.Duration("PROCESSOR_TIMEOUT", 3*time.Second),
		VoidRetention:    env.Duration("VOID_RETENTION", jobs.DefaultVoidRetention),
	}
	if err := env.Err(); err != nil {
		return settings{}, err
	}
	if s.VoidRetention < jobs.MinVoidRetention {
		return settings{}, fmt.Errorf("VOID_RETENTION=%q: want at least %s, or a charge sent before a void could outlive it", s.VoidRetention, jobs.MinVoidRetention)
	}
	return s, nil
}

// run starts the payments service: it charges orders for the saga, once per order,
// refunds them, and lists a user's payments; it sweeps up charges left pending and
// forgets old voids. The processor is Stripe's test mode.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadSettings(getenv)
	if err != nil {
		return err
	}
	if platform.Probing(args) {
		return platform.Probe(ctx, cfg.InternalAddr)
	}
	p, err := platform.Start(ctx, cfg.Config, migrations.FS, stdout)
	if err != nil {
		return err
	}
	defer p.Close()
	p.Log.Info("payments settings", "processor", "stripe-test", "processor_timeout", cfg.ProcessorTimeout.String(),
		"void_retention", cfg.VoidRetention.String())

	// payment.captured, .declined and .refunded leave through the outbox relay; while
	// Redis is down they wait in the outbox and payments carry on.
	if err := p.RelayOutbox(); err != nil {
		return err
	}

	store := postgres.NewStore(p.Pool)
	payments := payment.NewService(store, payment.StripeTest{}, time.Now, cfg.ProcessorTimeout)
	// payments_pending and the oldest's age, read at each scrape (bounded).
	if err := paymentmetrics.Register(p.Metrics, store, time.Now); err != nil {
		return err
	}
	// Charges interrupted before their outcome was recorded are settled every minute,
	// with or without Redis.
	p.Background("pending payments sweep", func(ctx context.Context) error { return jobs.RunSweep(ctx, payments, p.Log) })
	queue, err := p.Tasks()
	if err != nil {
		return err
	}
	if err := jobs.RegisterVoidsCleanup(queue.Worker, queue.Scheduler, payments, cfg.VoidRetention, p.Log); err != nil {
		return err
	}
	services, err := p.ServiceVerifier()
	if err != nil {
		return err
	}
	d := httpapi.Deps{
		Log:      p.Log,
		Payments: payments,
		Verifier: p.TokenVerifier(),
		Services: services,
		Events:   store,
	}
	public, internal := p.Router(), p.InternalRouter()
	httpapi.Mount(public, d)
	httpapi.MountInternal(internal, d)
	return p.Serve(ctx, public, internal)
}
