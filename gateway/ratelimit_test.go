package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// login posts a log-in for email.
func login(t *testing.T, gw, email string) (*http.Response, []byte) {
	t.Helper()
	return send(t, http.MethodPost, gw+"/api/v1/auth/login", fmt.Sprintf(`{"email":%q,"password":"pw-123456"}`, email), "", nil)
}

// expect429 checks a rate-limited answer: a problem with a whole Retry-After.
func expect429(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429; body %s", resp.StatusCode, body)
	}
	if d := decodeProblem(t, resp, body); d.Status != http.StatusTooManyRequests {
		t.Fatalf("problem %+v", d)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
	}
}

func TestLoginIsLimitedPerIP(t *testing.T) {
	t.Parallel()
	users := newUpstream(t, "users", nil)
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL}).URL
	for i := range 10 {
		resp, body := login(t, gw, fmt.Sprintf("u%d@example.com", i))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("log-in %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := login(t, gw, "u10@example.com")
	expect429(t, resp, body)
	// Sign-up shares the limit; other auth paths only have the per-IP one.
	resp, body = send(t, http.MethodPost, gw+"/api/v1/auth/register", `{"email":"new@example.com"}`, "", nil)
	expect429(t, resp, body)
	if resp, body := send(t, http.MethodPost, gw+"/api/v1/auth/refresh", `{"refresh_token":"x"}`, "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}
	if n := users.callsTo("/api/v1/auth/login"); n != 10 {
		t.Fatalf("users got %d log-ins, want 10", n)
	}
	// The body reached users intact.
	if c := users.calls()[0]; !strings.Contains(c.body, `"email":"u0@example.com"`) {
		t.Fatalf("users got body %q", c.body)
	}
}

func TestLoginIsLimitedPerEmail(t *testing.T) {
	t.Parallel()
	users := newUpstream(t, "users", nil)
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "RATE_AUTH_IP_PER_MIN": "0"}).URL
	for i := range 5 {
		// Case does not make another address.
		if resp, body := login(t, gw, []string{"Ann@Example.com", "ann@example.com"}[i%2]); resp.StatusCode != http.StatusOK {
			t.Fatalf("log-in %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := login(t, gw, "ANN@example.com")
	expect429(t, resp, body)
	if resp, body := login(t, gw, "bob@example.com"); resp.StatusCode != http.StatusOK {
		t.Fatalf("another address: %d %s", resp.StatusCode, body)
	}
	if n := users.callsTo("/api/v1/auth/login"); n != 6 {
		t.Fatalf("users got %d log-ins, want 6", n)
	}
}

func TestSignedInCallsAreLimitedPerUser(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	orders := newUpstream(t, "orders", nil)
	gw := startGateway(t, map[string]string{
		"USERS_URL": users.URL, "ORDERS_URL": orders.URL,
		"RATE_USER": "2", "RATE_USER_BURST": "2",
	}).URL
	ann, bob := users.sign(t, time.Hour), users.sign(t, time.Hour)
	for i := range 2 {
		if resp, body := send(t, http.MethodGet, gw+"/api/v1/orders", "", ann, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := send(t, http.MethodGet, gw+"/api/v1/orders", "", ann, nil)
	expect429(t, resp, body)
	if resp.Header.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("RateLimit-Remaining %q", resp.Header.Get("RateLimit-Remaining"))
	}
	if resp, body := send(t, http.MethodGet, gw+"/api/v1/orders", "", bob, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("another user: %d %s", resp.StatusCode, body)
	}
	if n := orders.callsTo("/api/v1/orders"); n != 3 {
		t.Fatalf("orders got %d calls, want 3", n)
	}
}

func TestAnonymousCallsAreLimitedPerIP(t *testing.T) {
	t.Parallel()
	inventory := newUpstream(t, "inventory", nil)
	gw := startGateway(t, map[string]string{"INVENTORY_URL": inventory.URL, "RATE_IP": "1", "RATE_IP_BURST": "3"}).URL
	for i := range 3 {
		if resp, body := get(t, gw+"/api/v1/products", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	// X-Forwarded-For is not believed.
	resp, body := get(t, gw+"/api/v1/products", http.Header{"X-Forwarded-For": {"203.0.113.9"}})
	expect429(t, resp, body)
	if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("content type %q", ct)
	}
	// The gateway's own routes are not limited.
	if resp, _ := get(t, gw+"/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
}

func TestZeroTurnsLimitsOff(t *testing.T) {
	t.Parallel()
	users := newUpstream(t, "users", nil)
	gw := startGateway(t, map[string]string{
		"USERS_URL": users.URL, "RATE_IP": "0", "RATE_USER": "0",
		"RATE_AUTH_IP_PER_MIN": "0", "RATE_AUTH_EMAIL_PER_MIN": "0",
	}).URL
	for i := range 60 {
		if resp, body := login(t, gw, "ann@example.com"); resp.StatusCode != http.StatusOK {
			t.Fatalf("log-in %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
}

// Without Redis the limits do not turn off: each is kept in the gateway's process
// (the same GCRA), and that is logged. Formerly they failed open: fifteen log-ins for
// one e-mail in a row all went through.
func TestLimitsHoldInProcessWithoutRedis(t *testing.T) {
	t.Parallel()
	users := newUpstream(t, "users", nil)
	closedRedis := "redis://" + strings.TrimPrefix(closedURL(t), "http://") + "/0"
	prog := startGateway(t, map[string]string{"USERS_URL": users.URL, "REDIS_URL": closedRedis,
		"RATE_AUTH_EMAIL_PER_MIN": "5", "RATE_AUTH_IP_PER_MIN": "100"})
	refused := 0
	for i := range 15 {
		resp, body := login(t, prog.URL, "ann@example.com")
		switch resp.StatusCode {
		case http.StatusOK:
			if refused > 0 {
				t.Fatalf("log-in %d let through after a refusal", i+1)
			}
		case http.StatusTooManyRequests:
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("log-in %d: 429 without Retry-After", i+1)
			}
			refused++
		default:
			t.Fatalf("log-in %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	// The per-e-mail limit: a burst of 5, then refusals (a few may refill meanwhile).
	if refused < 8 {
		t.Errorf("%d of 15 log-ins for one e-mail refused without Redis, want at least 8", refused)
	}
	if !strings.Contains(prog.Logs(), "rate limits kept in this process") {
		t.Error("the fallback is not logged")
	}
}

func TestBadTokensAreLimitedPerAddressBeforeTheyAreVerified(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	orders := newUpstream(t, "orders", nil)
	gw := startGateway(t, map[string]string{
		"USERS_URL": users.URL, "ORDERS_URL": orders.URL,
		// Low enough that a flood of 150 cannot outrun the refill on a slow machine.
		"RATE_EDGE_IP": "2", "RATE_EDGE_IP_BURST": "50",
	}).URL
	badlySigned := signWith(t, otherKey(t), auth.RoleCustomer, time.Hour)

	// 150 badly signed tokens at once: once the address's burst is spent the rest
	// are turned away before their signatures are checked (a 429, where a check
	// would have said 401).
	const flood = 150
	codes := make([]int, flood)
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, gw+"/api/v1/users/me", nil)
			req.Header.Set("Authorization", "Bearer "+badlySigned)
			resp, err := testhttp.Client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
			if resp.StatusCode == http.StatusTooManyRequests {
				if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
					t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
				}
			}
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != flood || count[http.StatusTooManyRequests] < flood/2 {
		t.Fatalf("answers by status %v; want only 401s and 429s, mostly 429s", count)
	}

	// Every route that checks a token is behind it: a user's, an admin's, the
	// monitor's bearer tokens; anonymous routes too. Probes are not.
	// The address's allowance refills meanwhile (2 a second): before each path it is
	// spent again on a route that answers without an upstream, so that a slow machine
	// (make test's race detector and load) cannot let the next request through on a
	// refill and make it look unlimited.
	spend := func() {
		for range 10 {
			resp, _ := send(t, http.MethodGet, gw+"/api/v1/users/me", "", badlySigned, nil)
			if resp.StatusCode == http.StatusTooManyRequests {
				return
			}
		}
		t.Fatal("the address's allowance was never spent")
	}
	for _, path := range []string{"/api/v1/orders", "/api/v1/admin/sagas", "/ops/tasks/api/queues", "/api/v1/products", "/api/v1/nothing-here"} {
		spend()
		resp, body := send(t, http.MethodGet, gw+path, "", badlySigned, nil)
		expect429(t, resp, body)
	}
	if resp, _ := get(t, gw+"/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	if n := len(users.calls()); n != 0 {
		t.Errorf("users got %d calls", n)
	}
	if n := len(orders.calls()); n != 0 {
		t.Errorf("orders got %d calls", n)
	}
}

func TestLoginLimitHoldsUnderAParallelFlood(t *testing.T) {
	t.Parallel()
	users := newUpstream(t, "users", nil)
	// The per-address limit off, so that the sign-in limit alone is tested: a check
	// that waits too long for Redis falls back to the process's count, which must not
	// let a burst through either.
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "RATE_EDGE_IP": "0"}).URL
	const flood = 150
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, gw+"/api/v1/auth/login",
				strings.NewReader(fmt.Sprintf(`{"email":"victim@example.com","password":"guess-%d"}`, i)))
			req.Header.Set("Content-Type", "application/json")
			resp, err := testhttp.Client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if n := users.callsTo("/api/v1/auth/login"); n != 5 {
		t.Fatalf("users got %d of %d parallel log-ins for one address, want 5 (RATE_AUTH_EMAIL_PER_MIN)", n, flood)
	}
}
