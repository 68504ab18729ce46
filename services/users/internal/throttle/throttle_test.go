package throttle_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testclock"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/services/users/internal/throttle"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

var policy = throttle.DefaultPolicy

// backends are the two places the state can live: Redis, and the in-process fallback
// (a Redis nobody listens at). Every rule must hold in both.
func backends(t *testing.T) map[string]*redis.Client {
	t.Helper()
	up, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	down, err := redisclient.Open("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close(); down.Close() })
	return map[string]*redis.Client{"redis": up, "in-process": down}
}

func newGuard(t *testing.T, rdb *redis.Client, p throttle.Policy) (*throttle.Guard, *testclock.Clock, *bytes.Buffer) {
	t.Helper()
	c := testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var logs bytes.Buffer
	g := throttle.New(rdb, p, throttle.Options{Now: c.Now, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	return g, c, &logs
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// fail makes a log-in attempt that turns out a wrong guess; it must be admitted.
func fail(t *testing.T, g *throttle.Guard, email, from string) {
	t.Helper()
	if _, err := g.Admit(context.Background(), email, addr(from)); err != nil {
		t.Fatalf("%s from %s: %v, want admitted", email, from, err)
	}
}

// refused asserts that an attempt must wait, and returns how long.
func refused(t *testing.T, g *throttle.Guard, email, from string) time.Duration {
	t.Helper()
	_, err := g.Admit(context.Background(), email, addr(from))
	var tma *user.TooManyAttemptsError
	if !errors.As(err, &tma) {
		t.Fatalf("%s from %s: %v, want too many attempts", email, from, err)
	}
	if code := apperr.CodeOf(err); code != apperr.RateLimited {
		t.Fatalf("%s from %s: %v with code %s, want %s", email, from, err, code, apperr.RateLimited)
	}
	return tma.RetryAfter
}

// succeed makes an attempt whose password turns out right.
func succeed(t *testing.T, g *throttle.Guard, email, from string) {
	t.Helper()
	release, err := g.Admit(context.Background(), email, addr(from))
	if err != nil {
		t.Fatalf("%s from %s: %v, want admitted", email, from, err)
	}
	release(context.Background())
}

// Guessing one e-mail's password from many addresses slows the guesses, but the owner,
// from an address that has not failed for it, still gets in.
func TestTheOwnerGetsInDuringADistributedAttack(t *testing.T) {
	t.Parallel()
	for name, rdb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, _, _ := newGuard(t, rdb, policy)
			for i := range 6 {
				fail(t, g, "ann@example.com", "198.51.100."+string(rune('1'+i)))
			}
			succeed(t, g, "ann@example.com", "203.0.113.7")
			// The attacking addresses must wait out the e-mail's delay.
			if d := refused(t, g, "ann@example.com", "198.51.100.1"); d <= 0 || d > policy.MaxDelay {
				t.Errorf("Retry-After %v", d)
			}
			// Other e-mails are not affected.
			succeed(t, g, "bob@example.com", "198.51.100.1")
		})
	}
}

// Fresh addresses share a small budget while an e-mail is under delay, so that an
// attacker with endless addresses is slowed as well.
func TestFreshAddressesShareABudget(t *testing.T) {
	t.Parallel()
	for name, rdb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, c, _ := newGuard(t, rdb, policy)
			for i := range 5 {
				fail(t, g, "ann@example.com", "198.51.100."+string(rune('1'+i)))
			}
			for i := range policy.FreshBudget {
				fail(t, g, "ann@example.com", "203.0.113."+string(rune('1'+i)))
			}
			d := refused(t, g, "ann@example.com", "192.0.2.1")
			// Once the delay has passed, anyone may try again.
			c.Advance(d)
			fail(t, g, "ann@example.com", "192.0.2.1")
		})
	}
}

// A correct password after failures from the same address waits for the delay like a
// wrong one: the answer must not tell them apart. Delays double and are capped.
func TestDelaysGrowPerAddressAndAreCapped(t *testing.T) {
	t.Parallel()
	for name, rdb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, c, _ := newGuard(t, rdb, policy)
			for range policy.EmailFailures {
				fail(t, g, "ann@example.com", "198.51.100.1")
			}
			want := time.Second
			for range 14 {
				if d := refused(t, g, "ann@example.com", "198.51.100.1"); d != want {
					t.Fatalf("Retry-After %v, want %v", d, want)
				}
				c.Advance(want - time.Millisecond)
				refused(t, g, "ann@example.com", "198.51.100.1")
				c.Advance(time.Millisecond)
				fail(t, g, "ann@example.com", "198.51.100.1")
				want = min(2*want, policy.MaxDelay)
			}
			if want != policy.MaxDelay {
				t.Fatalf("the delay reached %v, want the cap %v", want, policy.MaxDelay)
			}
			c.Advance(refused(t, g, "ann@example.com", "198.51.100.1"))
			succeed(t, g, "ann@example.com", "198.51.100.1")
		})
	}
}

// A flood of wrong guesses from one address, across e-mails, is slowed too.
func TestAFloodFromOneAddressIsSlowed(t *testing.T) {
	t.Parallel()
	for name, rdb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, _, _ := newGuard(t, rdb, policy)
			for i := range policy.AddressFailures {
				fail(t, g, "user"+strings.Repeat("x", i)+"@example.com", "198.51.100.1")
			}
			if d := refused(t, g, "new@example.com", "198.51.100.1"); d != time.Second {
				t.Errorf("Retry-After %v, want 1s", d)
			}
			// Another address is not affected.
			succeed(t, g, "new@example.com", "198.51.100.2")
		})
	}
}

// An IPv6 client holds a whole /64, so its addresses count as one.
func TestIPv6AddressesCountPerSlash64(t *testing.T) {
	t.Parallel()
	for name, rdb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, _, _ := newGuard(t, rdb, policy)
			for i := range policy.EmailFailures {
				fail(t, g, "ann@example.com", "2001:db8:1:2::"+string(rune('1'+i)))
			}
			refused(t, g, "ann@example.com", "2001:db8:1:2:ffff::9")
			succeed(t, g, "ann@example.com", "2001:db8:1:3::1")
		})
	}
}

// A success takes back what its attempt counted and forgets the address's failures
// for the e-mail; the e-mail's earlier failures stay.
func TestASuccessIsNotAFailure(t *testing.T) {
	t.Parallel()
	for name, rdb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, _, _ := newGuard(t, rdb, policy)
			for range 20 {
				succeed(t, g, "ann@example.com", "198.51.100.1")
			}
			for range policy.EmailFailures - 1 {
				fail(t, g, "ann@example.com", "198.51.100.1")
			}
			succeed(t, g, "ann@example.com", "198.51.100.1")
			// The address starts afresh for the e-mail, which has four failures.
			fail(t, g, "ann@example.com", "198.51.100.1")
			refused(t, g, "ann@example.com", "198.51.100.1")
		})
	}
}

// Under a delay, attempts that arrive together when it passes get one try between
// them, not one each.
func TestConcurrentAttemptsGetOneTry(t *testing.T) {
	t.Parallel()
	for name, rdb := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, c, _ := newGuard(t, rdb, policy)
			for range policy.EmailFailures {
				fail(t, g, "ann@example.com", "198.51.100.1")
			}
			c.Advance(time.Second)
			var wg sync.WaitGroup
			var mu sync.Mutex
			admitted := 0
			for range 20 {
				wg.Go(func() {
					if _, err := g.Admit(context.Background(), "ann@example.com", addr("198.51.100.1")); err == nil {
						mu.Lock()
						admitted++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if admitted != 1 {
				t.Errorf("%d of 20 concurrent attempts admitted, want 1", admitted)
			}
		})
	}
}

// The state in Redis expires by itself, and keeps e-mail addresses out of its keys.
func TestRedisStateExpires(t *testing.T) {
	t.Parallel()
	rdb := backends(t)["redis"]
	g, _, _ := newGuard(t, rdb, policy)
	fail(t, g, "ann@example.com", "198.51.100.1")
	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatalf("keys: %v", err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys in Redis, want the state of the failure")
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, throttle.KeyPrefix) {
			t.Errorf("key %q, want the prefix %q", k, throttle.KeyPrefix)
		}
		if strings.Contains(k, "ann") {
			t.Errorf("key %q shows the e-mail address, want it hidden", k)
		}
		if strings.Contains(k, "198.51") {
			t.Errorf("key %q shows the client address, want it hidden", k)
		}
		if ttl := rdb.PTTL(context.Background(), k).Val(); ttl <= 0 || ttl > policy.Window+policy.MaxDelay {
			t.Errorf("key %q lives %v", k, ttl)
		}
	}
}

// Without Redis the rules still hold, in this process, and that is said in the log.
func TestWithoutRedisTheLimitsHoldInProcessAndItIsLogged(t *testing.T) {
	t.Parallel()
	g, _, logs := newGuard(t, backends(t)["in-process"], policy)
	for range policy.EmailFailures {
		fail(t, g, "ann@example.com", "198.51.100.1")
	}
	refused(t, g, "ann@example.com", "198.51.100.1")
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("logs %q have no warning, want level=WARN", logs.String())
	}
	if !strings.Contains(logs.String(), "in-process") {
		t.Errorf("logs %q do not say the limits moved in-process", logs.String())
	}
}
