package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/invariants"
	"github.com/bazaar-shop/bazaar/internal/loadgen"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

// Config is a chaos run. Zero values take the defaults noted.
type Config struct {
	RepoDir string // the module root (required)

	Load time.Duration // how long orders keep arriving (default 130s)
	Rate float64       // orders a second, an open loop (default 10)
	// Accounts is how many shoppers' accounts the load shares (default 20).
	Accounts int
	// MaxInFlight bounds the shoppers at once (default 512): while payments is down
	// every order waits out the budget, and an arrival that finds them all busy is
	// dropped rather than made.
	MaxInFlight int
	Seed        uint64 // the shoppers' and the admin's choices (default: random, in the Result)

	// ChargeBudget is orders' CHARGE_BUDGET in this stack (default 10s): short, so
	// that a service down for longer than it fits in the run. RecoverEvery is its
	// RECOVER_EVERY (default 2s).
	ChargeBudget time.Duration
	RecoverEvery time.Duration

	// Plan is the fault schedule (default Plan(Load, ChargeBudget)).
	Plan []Fault
	// RestockEvery is how often the admin restocks the products running low
	// (default 15s): the seeded catalogue holds about 3 200 units.
	RestockEvery time.Duration
	// SettleTimeout bounds the wait for the stack to come to rest once the load has
	// ended, before it is judged all the same (default 6m: a saga whose orders was
	// killed waits out its 45 s lease, an e-mail the SMTP outage held back waits out
	// its retry back-off).
	SettleTimeout time.Duration

	// Log receives the run's progress (default: discarded). StackOutput receives
	// every program's and server's output, one line at a time (default: discarded).
	Log         *slog.Logger
	StackOutput io.Writer
}

func (c *Config) setDefaults() error {
	if c.RepoDir == "" {
		return errors.New("chaos: Config.RepoDir is required")
	}
	if c.Load == 0 {
		c.Load = 130 * time.Second
	}
	if c.Rate == 0 {
		c.Rate = 10
	}
	if c.Accounts == 0 {
		c.Accounts = 20
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 512
	}
	if c.ChargeBudget == 0 {
		c.ChargeBudget = 10 * time.Second
	}
	if c.RecoverEvery == 0 {
		c.RecoverEvery = 2 * time.Second
	}
	if c.RestockEvery == 0 {
		c.RestockEvery = 15 * time.Second
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = 6 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.StackOutput == nil {
		c.StackOutput = io.Discard
	}
	if c.Plan == nil {
		p, err := Plan(c.Load, c.ChargeBudget)
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		c.Plan = p
	}
	return nil
}

// Run starts a stack of its own, loads it, breaks it by cfg.Plan, lets it come to
// rest and judges it (see the package doc). It returns an error only when the run
// itself could not be made: servers or the stack that did not start, the load that
// could not begin. What the system did wrong is in the Result (Violations, and
// StackErr for a program that died on its own).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Log
	res := &Result{Config: cfg, Started: time.Now()}

	log.Info("starting a private Postgres and Redis")
	pg, err := devstack.StartPrivatePostgres(ctx, cfg.StackOutput)
	if err != nil {
		return nil, fmt.Errorf("chaos: private Postgres: %w", err)
	}
	defer pg.Close()
	rd, err := devstack.StartPrivateRedis(ctx, true, cfg.StackOutput)
	if err != nil {
		return nil, fmt.Errorf("chaos: private Redis: %w", err)
	}
	defer rd.Close()

	// Inventory, payments and Mailpit's SMTP port are chosen up front so that
	// proxies can stand in front of them: orders reaches inventory and payments,
	// and notifications the mail server, only through a proxy the faults control.
	ports, release, err := devstack.HoldPorts(3)
	if err != nil {
		return nil, err
	}
	defer release()
	proxy := func(port int) (*tcpproxy.Proxy, error) { return tcpproxy.New("127.0.0.1:" + strconv.Itoa(port)) }
	toInventory, err := proxy(ports[0])
	if err != nil {
		return nil, err
	}
	defer toInventory.Close()
	toPayments, err := proxy(ports[1])
	if err != nil {
		return nil, err
	}
	defer toPayments.Close()
	toSMTP, err := proxy(ports[2])
	if err != nil {
		return nil, err
	}
	defer toSMTP.Close()

	// The programs are built into a directory of the run's own: a run restarts them
	// from there, and another run (make test's beside make chaos) must not replace
	// them meanwhile.
	binDir, err := os.MkdirTemp("", "bazaar-chaos-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)

	log.Info("starting the stack", "postgres", pg.AdminURL(), "redis", rd.URL())
	stack, err := devstack.Start(ctx, devstack.Options{
		RepoDir:    cfg.RepoDir,
		BinDir:     binDir,
		MailpitBin: devstack.DefaultMailpitBin(filepath.Join(cfg.RepoDir, "bin")),
		// Every message is counted at the end: Mailpit must not drop the oldest.
		MailpitArgs:      []string{"--max", "0"},
		AdminDatabaseURL: pg.AdminURL(),
		RedisURL:         rd.URL(),
		DatabasePrefix:   "bazaar_",
		Ports:            devstack.Ports{InventoryInternal: ports[0], PaymentsInternal: ports[1], MailpitSMTP: ports[2]},
		LogLevel:         "info",
		Output:           cfg.StackOutput,
		ReadyTimeout:     3 * time.Minute,
		StopTimeout:      15 * time.Second,
		ProgramEnv:       programEnv(cfg, toInventory.Addr(), toPayments.Addr(), toSMTP.Addr()),
	})
	if err != nil {
		return nil, fmt.Errorf("chaos: the stack did not start: %w", err)
	}
	defer stack.Stop(context.WithoutCancel(ctx))
	urls := stack.URLs()
	dbs := invariants.FromStack(urls.Databases)

	env := &faultEnv{stack: stack, pg: pg, redis: rd, toInventory: toInventory, toPayments: toPayments, toSMTP: toSMTP,
		ordersDB: dbs.Orders, admin: newAdmin(urls.Gateway, urls.Admin.Email, urls.Admin.Password, cfg.Seed), log: log}

	// The load, and the faults timed from its first order.
	loadStarted := make(chan time.Time, 1)
	var startOnce sync.Once
	lcfg := loadConfig(cfg, urls.Gateway, func(p loadgen.Progress) {
		startOnce.Do(func() { loadStarted <- time.Now().Add(-p.Elapsed) })
		if int(p.Elapsed/time.Second)%10 == 0 || p.Final {
			log.Info("load", "elapsed", p.Elapsed.Round(time.Second).String(), "orders", p.Orders, "created", p.Created,
				"in_flight", p.InFlight, "confirmed", p.Outcomes.Confirmed, "cancelled", p.Outcomes.CancelledTotal(),
				"failed", p.Outcomes.FailedTotal(), "dropped", p.Dropped)
		}
	})
	res.Seed = lcfg.Seed
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan struct{})
	var loadErr error
	go func() {
		defer close(loadDone)
		res.Load, loadErr = loadgen.Run(loadCtx, lcfg)
	}()
	var t0 time.Time
	select {
	case t0 = <-loadStarted:
	case <-loadDone:
		return nil, fmt.Errorf("chaos: the load did not start: %w", errors.Join(loadErr, ctx.Err()))
	}
	res.LoadStarted = t0
	log.Info("load started; faults follow their plan", "faults", len(cfg.Plan), "load", cfg.Load.String())

	faultCtx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	var faults sync.WaitGroup
	records := make([]FaultRecord, len(cfg.Plan))
	for i, f := range cfg.Plan {
		faults.Go(func() {
			if !waitUntil(faultCtx, t0.Add(f.At)) {
				records[i] = FaultRecord{Fault: f, Skipped: true}
				return
			}
			records[i] = env.inject(faultCtx, t0, f)
		})
	}
	faults.Go(func() { env.restockUntil(faultCtx, t0.Add(cfg.Load), cfg.RestockEvery) })

	select {
	case <-loadDone:
	case <-stack.Done():
		// A program died on its own and the stack stopped the rest: nothing more to
		// load or break.
		stopLoad()
		stopFaults()
	}
	faults.Wait() // every fault healed: each lasts its For
	res.Faults = records
	res.Admin = env.admin.changes()
	if err := stack.Err(); err != nil {
		res.StackErr = err.Error()
		log.Error("a program died on its own; the stack stopped", "err", err)
		<-loadDone
	}
	if loadErr != nil {
		return nil, fmt.Errorf("chaos: the load: %w", loadErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log.Info("load ended", "orders", res.Load.Orders, "created", res.Load.Created, "took", time.Since(t0).Round(time.Second).String())

	if res.StackErr == "" {
		res.Settle, res.Backlog = settle(ctx, log, dbs, rd.URL(), stack, cfg.SettleTimeout)
		if err := stack.Err(); err != nil {
			res.StackErr = err.Error()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	log.Info("judging")
	opts := []invariants.Option{invariants.AccountStockChanges(), invariants.CheckEvents(rd.URL())}
	if res.StackErr == "" {
		opts = append(opts, invariants.CheckMail(urls.Mailpit)) // Mailpit stopped with the stack otherwise
	}
	for _, id := range env.poisoned() {
		opts = append(opts, invariants.ExpectDeadLetter("events.orders", id))
	}
	jctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res.Violations, res.Report, err = invariants.Violations(jctx, dbs, opts...)
	if err != nil {
		return nil, fmt.Errorf("chaos: judging: %w", err)
	}
	if res.Outcomes, err = outcomes(jctx, dbs.Orders); err != nil {
		return nil, fmt.Errorf("chaos: reading outcomes: %w", err)
	}
	res.Evidence = evidence(jctx, dbs.Orders, res.Violations, 10)
	res.Elapsed = time.Since(res.Started)
	log.Info("judged", "violations", len(res.Violations), "orders", res.Report.Orders)
	return res, nil
}

// programEnv tunes the stack for a run: the gateway's rate limits off, orders' budget
// short and its calls through the proxies, notifications' mail through its proxy and
// retried soon after an outage, reservations kept a little longer than the budget.
func programEnv(cfg Config, inventory, payments, smtp string) map[string]map[string]string {
	return map[string]map[string]string{
		"gateway": {
			"RATE_EDGE_IP": "0", "RATE_IP": "0", "RATE_USER": "0", "RATE_AUTH_IP_PER_MIN": "0", "RATE_AUTH_EMAIL_PER_MIN": "0",
		},
		"orders": {
			"INVENTORY_URL": "http://" + inventory,
			"PAYMENTS_URL":  "http://" + payments,
			"CHARGE_BUDGET": cfg.ChargeBudget.String(),
			"RECOVER_EVERY": cfg.RecoverEvery.String(),
		},
		"inventory": {
			// Past the budget, so that a reservation of an order whose orders was down
			// can expire under it (the commit is then refused: the saga must refund).
			"RESERVATION_TTL": (cfg.ChargeBudget + 10*time.Second).String(),
		},
		"notifications": {
			"SMTP_ADDR": smtp,
			// An e-mail held back by the outage goes within 15 s of the server's return.
			"EMAIL_RETRY_CAP": "15s",
		},
	}
}

// loadConfig is the load of a run: an open loop at cfg.Rate for cfg.Load, against a
// gateway without rate limits (so unpaced), shoppers following their orders for a
// few budgets.
func loadConfig(cfg Config, gateway string, progress func(loadgen.Progress)) loadgen.Config {
	l := loadgen.DefaultConfig()
	l.BaseURL = gateway
	l.Rate = cfg.Rate
	l.Duration = cfg.Load
	l.Accounts = cfg.Accounts
	l.MaxInFlight = cfg.MaxInFlight
	l.AccountPrefix = "chaos"
	l.TokenCache = ""
	l.SignInsPerMinute = 0
	l.AnonymousPerSecond = 0
	l.SettleTimeout = 3*cfg.ChargeBudget + time.Minute
	l.Seed = cfg.Seed
	if l.Seed == 0 {
		l.Seed = uint64(time.Now().UnixNano()) | 1
	}
	l.Progress = progress
	l.ProgressEvery = time.Second
	return l
}

// settle polls the backlog until it has been zero three polls in a row (a second
// apart) or timeout passes; it returns how long that took and the last backlog.
func settle(ctx context.Context, log *slog.Logger, dbs invariants.Databases, redisURL string, stack *devstack.Stack, timeout time.Duration) (time.Duration, invariants.Backlog) {
	start := time.Now()
	deadline := start.Add(timeout)
	zeros := 0
	var last invariants.Backlog
	lastSaid := time.Time{}
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		b, err := invariants.ReadBacklog(rctx, dbs, redisURL)
		cancel()
		switch {
		case err != nil:
			zeros = 0
			log.Warn("reading the backlog", "err", err)
		case b.Zero():
			zeros++
		default:
			zeros = 0
		}
		if err == nil {
			last = b
		}
		if zeros >= 3 {
			log.Info("the stack is at rest", "after", time.Since(start).Round(time.Second).String())
			return time.Since(start), last
		}
		if time.Since(lastSaid) > 10*time.Second {
			log.Info("settling", "backlog", last.String())
			lastSaid = time.Now()
		}
		if time.Now().After(deadline) {
			log.Warn("the stack did not come to rest in time; judging it as it is", "timeout", timeout.String(), "backlog", last.String())
			return time.Since(start), last
		}
		select {
		case <-ctx.Done():
			return time.Since(start), last
		case <-stack.Done():
			return time.Since(start), last
		case <-time.After(time.Second):
		}
	}
}

// waitUntil waits until t, or returns false when ctx ends first.
func waitUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// wait waits for d, or returns false when ctx ends first.
func wait(ctx context.Context, d time.Duration) bool { return waitUntil(ctx, time.Now().Add(d)) }
