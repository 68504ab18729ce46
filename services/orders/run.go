package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/services/orders/internal/downstream"
	"github.com/bazaar-shop/bazaar/services/orders/internal/httpapi"
	"github.com/bazaar-shop/bazaar/services/orders/internal/inventory"
	"github.com/bazaar-shop/bazaar/services/orders/internal/jobs"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/payments"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/orders/internal/postgres/migrations"
	"github.com/bazaar-shop/bazaar/services/orders/internal/sagametrics"
	"github.com/bazaar-shop/bazaar/services/orders/internal/statusfeed"
)

// settings is the orders service's configuration: the platform's shared settings plus
// its own.
type settings struct {
	platform.Config
	// InventoryURL (INVENTORY_URL) is inventory's internal listener: one base URL, or
	// one per instance, comma-separated, or a name resolving to several
	// (pkg/balancer); each instance's /readyz is asked there.
	InventoryURL string
	PaymentsURL  string // PAYMENTS_URL: payments' internal listener, the same way
	// SagaInlineTimeout bounds how long POST /orders runs the saga before answering
	// 202 with the order still in progress (SAGA_INLINE_TIMEOUT).
	SagaInlineTimeout time.Duration
	// ChargeBudget is how long after its creation an order may still be charged;
	// later it is compensated and cancelled as timed out (CHARGE_BUDGET).
	ChargeBudget time.Duration
	// RecoverEvery is the period of the in-process saga recovery pass (RECOVER_EVERY).
	RecoverEvery time.Duration
	// SagaAlarmAfter is how long a saga's step may keep failing before the saga is
	// marked stuck or compensation_failed for operators (SAGA_ALARM_AFTER).
	SagaAlarmAfter time.Duration
	// DownstreamTimeout bounds one attempt at a call to inventory (DOWNSTREAM_TIMEOUT).
	DownstreamTimeout time.Duration
	// PaymentsTimeout bounds one attempt at a call to payments (PAYMENTS_TIMEOUT). It
	// must outlast payments' own PROCESSOR_TIMEOUT (3s), so that payments answers
	// (504 when its processor is slow) before the saga gives up and has to treat the
	// charge as unknown.
	PaymentsTimeout time.Duration
	// Balancing tunes the balancers over inventory's and payments' instances: an
	// instance's ejection (EJECT_AFTER, EJECT_BACKOFF, EJECT_BACKOFF_MAX), how often
	// names are resolved again (RESOLVE_EVERY), and how long an open circuit breaker
	// fails calls at once before a trial call (BREAKER_COOLDOWN).
	Balancing balancer.Settings
	// Retention is how long step logs and Idempotency-Keys are kept
	// (SAGA_STEPS_RETENTION, SAGA_STEPS_KEEP, IDEMPOTENCY_KEY_RETENTION).
	Retention postgres.Retention
}

// loadSettings reads the configuration; the error names every bad variable.
func loadSettings(getenv func(string) string) (settings, error) {
	env := config.New(getenv)
	s := settings{
		Config:            platform.LoadConfig(env, "orders", ":8084", ":9084"),
		InventoryURL:      env.Valid("INVENTORY_URL", "http://127.0.0.1:9082", balancer.ValidURLs),
		PaymentsURL:       env.Valid("PAYMENTS_URL", "http://127.0.0.1:9083", balancer.ValidURLs),
		SagaInlineTimeout: env.Duration("SAGA_INLINE_TIMEOUT", 3*time.Second),
		ChargeBudget:      env.Duration("CHARGE_BUDGET", 2*time.Minute),
		RecoverEvery:      env.Duration("RECOVER_EVERY", 15*time.Second),
		SagaAlarmAfter:    env.Duration("SAGA_ALARM_AFTER", order.DefaultPolicy.AlarmAfter),
		DownstreamTimeout: env.Duration("DOWNSTREAM_TIMEOUT", 2*time.Second),
		PaymentsTimeout:   env.Duration("PAYMENTS_TIMEOUT", 5*time.Second),
		Balancing: balancer.Settings{
			EjectAfter:      env.Int("EJECT_AFTER", 3, 1, 1000),
			EjectBackoff:    env.Duration("EJECT_BACKOFF", time.Second),
			EjectBackoffMax: env.Duration("EJECT_BACKOFF_MAX", 30*time.Second),
			ResolveEvery:    env.Duration("RESOLVE_EVERY", 5*time.Second),
			BreakerCooldown: env.Duration("BREAKER_COOLDOWN", 5*time.Second),
		},
		Retention: postgres.Retention{
			SagaSteps:       env.Duration("SAGA_STEPS_RETENTION", postgres.DefaultRetention.SagaSteps),
			KeepFailedSteps: env.Int("SAGA_STEPS_KEEP", postgres.DefaultRetention.KeepFailedSteps, 1, 10_000),
			IdempotencyKeys: env.Duration("IDEMPOTENCY_KEY_RETENTION", postgres.DefaultRetention.IdempotencyKeys),
		},
	}
	if err := env.Err(); err != nil {
		return settings{}, err
	}
	return s, nil
}

// run starts the orders service: orders, the create-order saga across inventory and
// payments, its recovery, the live status stream and the sales reports.
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
	p.Log.Info("orders settings", "inventory_url", cfg.InventoryURL, "payments_url", cfg.PaymentsURL,
		"saga_inline_timeout", cfg.SagaInlineTimeout.String(), "charge_budget", cfg.ChargeBudget.String(),
		"recover_every", cfg.RecoverEvery.String(), "saga_alarm_after", cfg.SagaAlarmAfter.String(),
		"downstream_timeout", cfg.DownstreamTimeout.String(), "payments_timeout", cfg.PaymentsTimeout.String(),
		"balancing", cfg.Balancing)

	store := postgres.NewStore(p.Pool)
	// Every call to inventory and payments carries orders' service token, for that
	// callee alone.
	signer, err := p.ServiceSigner()
	if err != nil {
		return err
	}
	client := func(name, url string, timeout time.Duration) downstream.Config {
		return downstream.Config{Name: name, BaseURL: url, Timeout: timeout, Balancing: cfg.Balancing,
			Log: p.Log, Registerer: p.Metrics, Tracing: p.Tracing, Credentials: signer}
	}
	inv, err := inventory.New(client("inventory", cfg.InventoryURL, cfg.DownstreamTimeout))
	if err != nil {
		return err
	}
	defer inv.Close()
	pay, err := payments.New(client("payments", cfg.PaymentsURL, cfg.PaymentsTimeout))
	if err != nil {
		return err
	}
	defer pay.Close()
	recorder, err := sagametrics.New(p.Metrics)
	if err != nil {
		return err
	}
	// sagas_unfinished{state} and sagas_unattended, read at each scrape (bounded).
	if err := sagametrics.RegisterUnfinished(p.Metrics, store, cfg.SagaAlarmAfter, time.Now); err != nil {
		return err
	}
	feed := statusfeed.New(p.Redis, p.Log)
	p.Background("status feed", feed.Run)
	deps := order.Deps{Store: store, Inventory: inv, Payments: pay, Notifier: feed, Recorder: recorder, Now: time.Now, Log: p.Log}
	policy := order.DefaultPolicy
	policy.ChargeBudget, policy.AlarmAfter = cfg.ChargeBudget, cfg.SagaAlarmAfter
	saga := order.NewOrchestrator(deps, order.OrchestratorConfig{Policy: policy, Owner: owner()})
	// Recovery runs in the process, at start (for the sagas a previous run left
	// unfinished) and every RECOVER_EVERY, with or without Redis.
	p.Background("saga recovery", func(ctx context.Context) error {
		saga.RecoverEvery(ctx, cfg.RecoverEvery)
		return nil
	})
	orders := order.NewService(deps, saga, cfg.SagaInlineTimeout)

	// Order events leave through the outbox relay; while Redis is down they wait in
	// the outbox and orders carry on.
	if err := p.RelayOutbox(); err != nil {
		return err
	}
	t, err := p.Tasks()
	if err != nil {
		return err
	}
	if err := jobs.Register(t, jobs.Deps{Reports: store, Log: p.Log, Now: time.Now, Cleanup: store.Cleanup(cfg.Retention, p.Log)}); err != nil {
		return err
	}

	public := p.Router()
	httpapi.Mount(public, httpapi.Deps{
		Log:      p.Log,
		Orders:   orders,
		Verifier: p.TokenVerifier(),
		Keys:     store,
		// Longer than a request can run: the quote, the inline saga, and their calls.
		KeyTTL:  cfg.SagaInlineTimeout + 15*time.Second,
		Feed:    feed,
		Reports: jobs.Reports{Client: t.Client},
		Stop:    ctx,
		Events:  store,
	})
	return p.Serve(ctx, public, p.InternalRouter())
}

// owner names this process in saga leases, for operators.
func owner() string {
	host, err := os.Hostname()
	if err != nil {
		host = "orders"
	}
	return host + "/" + uuid.NewString()[:8]
}
