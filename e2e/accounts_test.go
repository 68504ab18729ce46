package e2e

import (
	"sync"
	"testing"
	"time"
)

// Accounts the tests share within a run. A stack with its default rate limits (make
// run's, docker compose's) lets one client IP sign up or log in 10 times a minute, so
// the suite signs in only where a test is about signing in or needs a customer with
// no history: the admin logs in once per stack, and the other tests borrow a shopper
// from a pool, each registered once per run and lent to one test at a time.

// poolPassword is every pooled shopper's password.
const poolPassword = "correct horse battery"

// session is an account's login, kept and renewed.
type session struct {
	email, password string

	mu      sync.Mutex
	token   string
	renewAt time.Time // half-way through the token's life
}

// accessToken is the session's access token, logging in again once it is half-way
// through its life (ACCESS_TOKEN_TTL, 15 minutes by default), so that a test is never
// handed one that expires while it runs. Concurrent callers wait for one log-in.
func (s *session) accessToken(t *testing.T, sh shop) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == "" || time.Now().After(s.renewAt) {
		before := time.Now()
		tok := sh.tokens(t, s.email, s.password)
		s.token = tok.AccessToken
		s.renewAt = before.Add(time.Duration(tok.ExpiresIn) * time.Second / 2)
	}
	return s.token
}

// accounts are one stack's shared accounts.
type accounts struct {
	admin *session

	mu   sync.Mutex
	idle []*pooledShopper // registered and not lent
}

// pooledShopper is a shopper of the pool.
type pooledShopper struct {
	id string
	*session
}

// accountsByBase holds each stack's accounts, by gateway URL: the shared stack's and
// those of the fault tests' own stacks.
var accountsByBase sync.Map // string → *accounts

func (sh shop) accounts() *accounts {
	a, _ := accountsByBase.LoadOrStore(sh.base, &accounts{admin: &session{email: admin.Email, password: admin.Password}})
	return a.(*accounts)
}

// shopper lends the test a shopper from the pool until it ends, registering a new
// one when every shopper is lent (so the pool grows to the number of tests running
// at once). A pooled shopper has the orders, payments and e-mails of the tests that
// had it before, and no other test uses it meanwhile: a test that counts a customer's
// orders or mail wants newCustomer instead.
func (sh shop) shopper(t *testing.T) customer {
	t.Helper()
	a := sh.accounts()
	a.mu.Lock()
	var p *pooledShopper
	if n := len(a.idle); n > 0 {
		p, a.idle = a.idle[n-1], a.idle[:n-1]
	}
	a.mu.Unlock()
	if p == nil {
		email := "pool-shopper-" + randomHex(4) + "@e2e.bazaar.test"
		u := sh.register(t, email, poolPassword, "Pool Shopper")
		p = &pooledShopper{id: u.ID, session: &session{email: email, password: poolPassword}}
	}
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.idle = append(a.idle, p)
	})
	return customer{ID: p.id, Email: p.email, Token: p.accessToken(t, sh)}
}
