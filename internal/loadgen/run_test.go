package loadgen

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
)

// fakeConfig is a quick run against the fake gateway at url.
func fakeConfig(t *testing.T, url string) Config {
	cfg := DefaultConfig()
	cfg.BaseURL = url
	cfg.Rate, cfg.Duration, cfg.Orders = 500, 0, 40
	cfg.Accounts = 3
	cfg.TokenCache = filepath.Join(t.TempDir(), "tokens.json")
	cfg.Seed = 7
	cfg.Browse, cfg.Replay, cfg.Cancel, cfg.Stream = 0.5, 0.3, 0.3, 0.3
	cfg.Payments = PaymentMix{{PaymentVisa, 6}, {PaymentDeclined, 2}, {PaymentInsufficient, 2}}
	cfg.SignInsPerMinute, cfg.AnonymousPerSecond = 0, 0
	cfg.ProgressEvery = time.Hour // only the final call
	return cfg
}

func TestRunAgainstAFakeGatewayAccountsForEveryOrder(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	g.limitEvery, g.pendingEvery = 7, 5
	g.waitShoppers = 3 // all three sign in before the run can end
	srv := g.start()
	cfg := fakeConfig(t, srv.URL)
	var mu sync.Mutex
	var progress []Progress
	cfg.Progress = func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, p)
	}
	s, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Consistent(); err != nil {
		t.Fatal(err)
	}
	o := s.Outcomes
	if s.Orders != 40 || s.Created != 40 || o.Pending != 0 || o.FailedTotal() != 0 {
		t.Fatalf("orders %d, created %d, outcomes %+v; want 40 created, all settled, none failed; errors %v",
			s.Orders, s.Created, o, s.Errors)
	}
	confirmed, cancelled, ids := g.finalCounts()
	if o.Confirmed != confirmed || !mapsEqual(o.Cancelled, cancelled) {
		t.Errorf("summary: %d confirmed, cancelled %v; the gateway: %d, %v", o.Confirmed, o.Cancelled, confirmed, cancelled)
	}
	for _, id := range s.OrderIDs {
		if !ids[id] {
			t.Errorf("order %s is not the gateway's", id)
		}
	}
	if len(ids) != len(s.OrderIDs) {
		t.Errorf("the gateway has %d orders, the summary %d ids", len(ids), len(s.OrderIDs))
	}
	for _, reason := range []string{"payment_declined", "insufficient_funds", "customer_request"} {
		if o.Cancelled[reason] == 0 {
			t.Errorf("no order cancelled %s: %v", reason, o.Cancelled)
		}
	}
	if s.Replays == 0 || len(s.ReplayMismatches) != 0 {
		t.Errorf("replays %d, mismatches %v; want some, none mismatched", s.Replays, s.ReplayMismatches)
	}
	if s.RateLimited == 0 || s.Errors[ErrRateLimited] != 0 || len(s.Errors) != 0 {
		t.Errorf("rate limited %d, errors %v; want the 429s waited out and no errors", s.RateLimited, s.Errors)
	}
	if s.Streams == 0 {
		t.Error("no streams, want some")
	}
	if s.Polls == 0 {
		t.Error("no polls, want some")
	}
	if s.Requests["cancel_order"] == 0 {
		t.Errorf("no cancel_order requests, want some: %v", s.Requests)
	}
	if n := s.Requests["list_products"]; n < 2 {
		t.Errorf("%d list_products requests, want at least 2: %v", n, s.Requests)
	}
	if s.Requests["get_product"] == 0 {
		t.Errorf("no get_product requests, want some: %v", s.Requests)
	}
	if s.Settle.Count != s.Created {
		t.Errorf("settle count %d, want one per order created, %d", s.Settle.Count, s.Created)
	}
	if s.Latency.P99 <= 0 {
		t.Errorf("latency p99 %s, want above 0: %+v", s.Latency.P99, s.Latency)
	}
	// Three new accounts: each signed up and logged in once, never again.
	if g.count("POST /api/v1/auth/register") != 3 || g.count("POST /api/v1/auth/login") != 3 || g.count("POST /api/v1/auth/refresh") != 0 {
		t.Errorf("register %d, login %d, refresh %d; want 3, 3, 0", g.count("POST /api/v1/auth/register"),
			g.count("POST /api/v1/auth/login"), g.count("POST /api/v1/auth/refresh"))
	}
	mu.Lock()
	last := progress[len(progress)-1]
	mu.Unlock()
	if !last.Final {
		t.Errorf("final progress %+v not Final, want Final", last)
	}
	if last.Created != s.Created {
		t.Errorf("final progress: %d created, want the summary's %d", last.Created, s.Created)
	}
	if n := last.Outcomes.Total(); n != s.Orders {
		t.Errorf("final progress: %d outcomes, want the summary's %d orders", n, s.Orders)
	}

	// A second run with the same token cache signs nobody in again.
	s2, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Consistent(); err != nil {
		t.Fatal(err)
	}
	if s2.Requests["login"]+s2.Requests["register"]+s2.Requests["refresh"] != 0 {
		t.Errorf("second run's requests %v; want no sign-in", s2.Requests)
	}
}

func TestRunCountsAReplayThatIsNotOne(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	g.noReplay = true
	srv := g.start()
	cfg := fakeConfig(t, srv.URL)
	cfg.Orders, cfg.Replay = 5, 1
	s, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Replays != 5 || len(s.ReplayMismatches) != 5 || s.Errors[ErrReplayMismatch] != 5 {
		t.Fatalf("replays %d, mismatches %v, errors %v; want all 5 mismatched", s.Replays, s.ReplayMismatches, s.Errors)
	}
	m := s.ReplayMismatches[0]
	if !strings.Contains(m, "Idempotent-Replayed") {
		t.Errorf("mismatch %q should say what differed: no Idempotent-Replayed", m)
	}
	if !strings.Contains(m, "order ") {
		t.Errorf("mismatch %q should say what differed: no \"order \"", m)
	}
	if err := s.Consistent(); err != nil {
		t.Errorf("the summary is not consistent: %v", err)
	}
	if s.Created != 5 {
		t.Errorf("created %d, want 5: the second orders are not the run's", s.Created)
	}
}

func TestRunStoppedEarlyStillAddsUp(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	g.hold, g.arrived = make(chan struct{}), make(chan struct{}, 100)
	srv := g.start()
	t.Cleanup(func() { close(g.hold) }) // before the server's Close
	cfg := fakeConfig(t, srv.URL)
	cfg.Rate, cfg.Orders, cfg.Duration = 0, 0, time.Hour
	cfg.Concurrency = 4
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for range 4 { // every shopper is waiting for its order's answer
			<-g.arrived
		}
		cancel()
	}()
	s, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Consistent(); err != nil {
		t.Fatal(err)
	}
	if s.Orders != 4 || s.Outcomes.Failed[ErrInterrupted] != 4 || len(s.Errors) != 0 {
		t.Errorf("orders %d, outcomes %+v, errors %v; want 4 interrupted and no errors", s.Orders, s.Outcomes, s.Errors)
	}
}

func TestRunFailsWhenTheGatewayIsDown(t *testing.T) {
	t.Parallel()
	url := closedport.URL(t)
	cfg := fakeConfig(t, url)
	_, err := Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "is the stack running?") || !strings.Contains(err.Error(), url) {
		t.Fatalf("err = %v; want one naming %s and asking whether the stack runs", err, url)
	}
}

func TestAccountsSignUpOnceAndReuseTheirTokens(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	srv := g.start()
	cfg, err := fakeConfig(t, srv.URL).normalize()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Accounts = 2
	warm := func() (*pool, map[string]int) {
		t.Helper()
		r := newRunner(cfg)
		r.pool.warm(t.Context())
		if err := r.pool.waitReady(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(r.pool.ready) != 2 {
			t.Fatalf("%d accounts ready; want 2 (%v)", len(r.pool.ready), r.pool.warmErr)
		}
		return r.pool, r.stats.summary().Requests
	}

	// New accounts sign up, then log in.
	_, reqs := warm()
	if want := map[string]int{"register": 2, "login": 2}; !mapsEqual(reqs, want) {
		t.Errorf("first warm-up: %v; want %v", reqs, want)
	}
	fi, err := os.Stat(cfg.TokenCache)
	if err != nil {
		t.Fatalf("token cache: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("token cache mode %v, want 0600: a file only its owner reads", perm)
	}

	// The cached tokens are good: no request at all.
	if _, reqs = warm(); len(reqs) != 0 {
		t.Errorf("with good cached tokens: %v; want no requests", reqs)
	}

	// Expired access tokens are refreshed, not logged in again.
	editCache(t, cfg.TokenCache, func(tk *tokens) { tk.Expires = time.Now().Add(-time.Minute) })
	if _, reqs = warm(); !mapsEqual(reqs, map[string]int{"refresh": 2}) {
		t.Errorf("with expired access tokens: %v; want 2 refreshes", reqs)
	}

	// A stack whose databases were reset: the refresh and the log-in are refused, so
	// the account is signed up again.
	g.reset()
	editCache(t, cfg.TokenCache, func(tk *tokens) { tk.Expires = time.Now().Add(-time.Minute) })
	p, reqs := warm()
	if want := map[string]int{"refresh": 2, "login": 4, "register": 2}; !mapsEqual(reqs, want) {
		t.Errorf("after a reset: %v; want %v", reqs, want)
	}

	// A token the gateway refuses is dropped, and the next one is a refresh.
	a := p.ready[0]
	old := a.current().Access
	a.invalidate("not the current one")
	if a.current().Access != old {
		t.Fatal("invalidate dropped a token it was not given")
	}
	a.invalidate(old)
	tok, err := p.token(t.Context(), a)
	if err != nil {
		t.Fatalf("token after a 401: %v", err)
	}
	if tok == "" {
		t.Error("token after a 401: empty, want a new one")
	}
	if tok == old {
		t.Errorf("token after a 401: %q, the one dropped; want a new one", tok)
	}
}

func TestAccountsWithAnotherPasswordFailTheRun(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	srv := g.start()
	cfg := fakeConfig(t, srv.URL)
	cfg.Accounts = 1
	g.users[cfg.AccountPrefix+"-1@bazaar.test"] = "somebody else's"
	_, err := Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "no account could sign in") || !strings.Contains(err.Error(), "cannot log in") {
		t.Fatalf("err = %v; want no account able to sign in", err)
	}

	// With another account that can, the run goes on without the first, and says so.
	cfg.Accounts, cfg.Orders = 2, 3
	s, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Created != 3 || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], cfg.AccountPrefix+"-1@bazaar.test") {
		t.Errorf("created %d, warnings %q; want 3 orders and a warning about the first account", s.Created, s.Warnings)
	}
}

// editCache changes every entry of the token file.
func editCache(t *testing.T, path string, f func(*tokens)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tf tokenFile
	if err := json.Unmarshal(b, &tf); err != nil {
		t.Fatal(err)
	}
	for k, v := range tf.Tokens {
		f(&v)
		tf.Tokens[k] = v
	}
	if err := writeTokenFile(path, tf.Tokens); err != nil {
		t.Fatal(err)
	}
}

func TestRunRestocksAsTheAdmin(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	g.setStock(0, 3, 50) // the fake's orders take no stock
	g.waitShoppers = 3   // all three sign in before the run can end
	srv := g.start()
	cfg := fakeConfig(t, srv.URL)
	cfg.Orders, cfg.Restock = 5, 10
	s, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests["restock"] != 5 || s.Restock != 10 {
		t.Errorf("restock requests %d (summary's restock %d); want the 5 products below 10 topped up", s.Requests["restock"], s.Restock)
	}
	g.mu.Lock()
	for _, p := range g.products {
		if p.Stock != 10 && p.Stock != 50 {
			t.Errorf("product %s has %d in stock; want 10, or its 50", p.ID, p.Stock)
		}
	}
	g.mu.Unlock()
	if g.count("POST /api/v1/auth/register") != 3 {
		t.Errorf("%d sign-ups; want the 3 shoppers', never the admin's", g.count("POST /api/v1/auth/register"))
	}

	// The admin signs in only when a product needs it.
	g.setStock(0)
	cfg.AdminPassword = "not the admin's"
	cfg.TokenCache = "" // no cached admin token
	_, err = Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "restocking needs the admin "+DefaultAdminEmail) {
		t.Fatalf("err = %v; want the admin's failed sign-in", err)
	}
}
