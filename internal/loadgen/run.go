package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// runner is one run's shared state.
type runner struct {
	cfg   Config
	clock clock
	stats *stats
	cl    *client
	pool  *pool
	cat   *catalogue
	anon  *bucket
	cache *tokenCache
}

func newRunner(cfg Config) *runner {
	st := newStats()
	hc := cfg.HTTPClient
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Enough idle connections that the shoppers reuse them rather than open (and
		// leave in TIME_WAIT) one per request.
		t.MaxIdleConns = 0
		t.MaxIdleConnsPerHost = max(64, cfg.MaxInFlight, cfg.Concurrency)
		hc = &http.Client{Transport: t}
	}
	cl := &client{hc: hc, base: cfg.BaseURL, timeout: cfg.RequestTimeout, clock: cfg.clock,
		maxWaits: cfg.MaxRateLimitWaits, stats: st}
	// The gateway allows bursts as large as a minute's sign-ins and two seconds of
	// anonymous requests; these buckets stay well inside both.
	perMinute := float64(cfg.SignInsPerMinute)
	signIns := newBucket(cfg.clock, perMinute/60, perMinute/2)
	anon := newBucket(cfg.clock, cfg.AnonymousPerSecond, cfg.AnonymousPerSecond)
	cache := openTokenCache(cfg.TokenCache)
	return &runner{
		cfg: cfg, clock: cfg.clock, stats: st, cl: cl, cat: newCatalogue(), anon: anon, cache: cache,
		pool: newPool(cfg, cl, signIns, anon, cache),
	}
}

// Run drives Bazaar through its gateway as a crowd of shoppers would, until cfg's
// bounds (Duration, Orders) or ctx ends, and returns what happened.
//
// It first reads the catalogue (and with Restock tops its stock up as the admin) and
// signs the accounts in (reusing cached tokens, refreshing them, logging in,
// registering the accounts that do not exist yet), pacing sign-ins under the
// gateway's limits; orders start once one account is ready, the others joining as
// they become ready. Then each order is one shopper's visit: it
// may browse the catalogue and open the products' pages, orders 1 to MaxLines lines
// with a payment method from the mix and an Idempotency-Key, may send the same order
// again and check the replay, follows a pending order (status stream or polls) to its
// end, and may cancel it once confirmed. A 429 is waited out as its Retry-After says and
// sent again; other failures are counted by kind and, for the order's POST, retried
// with the same key.
//
// When the bounds are reached no new order starts and those under way finish, each
// within SettleTimeout; when ctx ends, everything stops at once and orders not
// finished count as pending or failed (interrupted). Run returns an error only when
// the run could not start: a bad Config, a gateway that cannot be reached, an empty
// catalogue, no account able to sign in, or (with Restock) no admin. The failures of
// orders, and the accounts that could not sign in, are in the Summary.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return Summary{}, fmt.Errorf("loadgen: %w", err)
	}
	return newRunner(cfg).run(ctx)
}

func (r *runner) run(ctx context.Context) (Summary, error) {
	warmCtx, stopWarm := context.WithCancel(ctx)
	var warming sync.WaitGroup
	warming.Go(func() { r.pool.warm(warmCtx) })
	defer func() {
		stopWarm()
		warming.Wait()
	}()

	if err := r.loadCatalogue(ctx); err != nil {
		return Summary{}, fmt.Errorf("loadgen: reading the catalogue at %s (is the stack running?): %w", r.cfg.BaseURL, err)
	}
	if r.cfg.Restock > 0 {
		restockCtx, stopRestock := context.WithCancel(ctx)
		var restocking sync.WaitGroup
		first := make(chan error, 1)
		restocking.Go(func() { newRestocker(r).run(restockCtx, first) })
		defer func() {
			stopRestock()
			restocking.Wait()
		}()
		if err := <-first; err != nil {
			return Summary{}, fmt.Errorf("loadgen: %w", errAdmin(r.cfg.AdminEmail, err))
		}
	}
	if err := r.pool.waitReady(ctx); err != nil {
		return Summary{}, fmt.Errorf("loadgen: %w", err)
	}

	started := r.clock.Now()
	progressDone := make(chan struct{})
	progressCtx, stopProgress := context.WithCancel(ctx)
	go func() {
		defer close(progressDone)
		r.reportProgress(progressCtx, started)
	}()

	sched := schedule{
		clock: r.clock, rate: r.cfg.Rate, poisson: r.cfg.Poisson, seed: r.cfg.Seed,
		maxInFlight: r.cfg.MaxInFlight, workers: r.cfg.Concurrency,
		orders: r.cfg.Orders, duration: r.cfg.Duration,
	}
	_, load := sched.run(ctx, func(i int) { r.visit(ctx, i) }, r.stats.dropArrival)
	stopProgress()
	<-progressDone
	elapsed := r.clock.Now().Sub(started)
	if r.cfg.Progress != nil {
		p := r.stats.progress(elapsed, 0)
		p.Final = true
		r.cfg.Progress(p)
	}

	s := r.stats.summary()
	s.BaseURL, s.Accounts, s.Seed, s.Restock = r.cfg.BaseURL, r.cfg.Accounts, r.cfg.Seed, r.cfg.Restock
	if r.cfg.Rate > 0 {
		s.Mode, s.Rate = "open", r.cfg.Rate
	} else {
		s.Mode, s.Concurrency = "closed", r.cfg.Concurrency
	}
	s.Started, s.Elapsed, s.LoadTime = started, elapsed, load
	if load > 0 {
		s.Throughput = float64(s.Created) / load.Seconds()
	}
	s.Warnings = append(s.Warnings, r.pool.failures()...)
	if err := r.cache.Err(); err != nil {
		s.Warnings = append(s.Warnings, "token cache "+r.cfg.TokenCache+": "+err.Error())
	}
	return s, nil
}

// reportProgress calls Config.Progress every ProgressEvery until ctx ends.
func (r *runner) reportProgress(ctx context.Context, started time.Time) {
	if r.cfg.Progress == nil || r.cfg.ProgressEvery <= 0 {
		return
	}
	last := started
	for r.clock.Sleep(ctx, r.cfg.ProgressEvery) == nil {
		now := r.clock.Now()
		r.cfg.Progress(r.stats.progress(now.Sub(started), now.Sub(last)))
		last = now
	}
}

// loadCatalogue reads every page of the catalogue, so that shoppers who do not browse
// know what to order; a page that fails is tried again a few times.
func (r *runner) loadCatalogue(ctx context.Context) error {
	cursor := ""
	for {
		path := "/api/v1/products?limit=100"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page productPage
		var err error
		for try := range 3 {
			if try > 0 {
				if err := r.backoff(ctx, try); err != nil {
					return err
				}
			}
			if err = r.anon.wait(ctx); err != nil {
				return err
			}
			page, err = r.productPage(ctx, path)
			if err == nil || !transient(err) {
				break
			}
		}
		if err != nil {
			return err
		}
		if page.NextCursor == nil {
			break
		}
		cursor = url.QueryEscape(*page.NextCursor)
	}
	if r.cat.size() == 0 {
		return errors.New("the catalogue is empty: there is nothing to order")
	}
	return nil
}
