package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/internal/testkit/testclock"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// countingKeys is a key set that counts how often a key is asked for: once per token
// verified from scratch.
type countingKeys struct {
	StaticKeys
	asked atomic.Int32
}

func (c *countingKeys) Key(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	c.asked.Add(1)
	return c.StaticKeys.Key(ctx, kid)
}

type cacheFixture struct {
	keys   *countingKeys
	signer *Signer
	clock  *testclock.Clock
	revs   *fakeRevocations
	v      *Verifier
}

func newCacheFixture(t *testing.T, size int, recheck, ttl time.Duration) *cacheFixture {
	t.Helper()
	pub, priv := newKey(t)
	c := testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	f := &cacheFixture{
		keys:   &countingKeys{StaticKeys: StaticKeys{"k1": pub}},
		signer: NewSigner("k1", priv, ttl).WithClock(c.Now),
		clock:  c,
		revs:   &fakeRevocations{revoked: map[string]bool{}},
	}
	f.v = NewVerifier(f.keys).WithClock(c.Now).WithRevocations(f.revs).WithCache(size, recheck)
	return f
}

func (f *cacheFixture) sign(t *testing.T, sid string) string {
	t.Helper()
	tok, err := f.signer.Sign(Principal{UserID: uuid.New(), Role: RoleCustomer, SessionID: sid})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *cacheFixture) asked() int {
	f.revs.mu.Lock()
	defer f.revs.mu.Unlock()
	return len(f.revs.asked)
}

// A token presented again is taken from the cache: its key is not looked up again,
// the principal is the same. A token that differs from a cached one in its signature
// alone is verified, and refused.
func TestCachedTokensAreNotVerifiedAgain(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, 100, time.Second, 15*time.Minute)
	ctx := context.Background()
	tok := f.sign(t, "s1")
	first, err := f.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		p, err := f.v.Verify(ctx, tok)
		if err != nil || p != first {
			t.Fatalf("again: %+v, %v; want %+v", p, err, first)
		}
	}
	if n := f.keys.asked.Load(); n != 1 {
		t.Errorf("the key was looked up %d times for one token verified 6 times, want 1", n)
	}

	// The same header and claims under another signature.
	i := strings.LastIndexByte(tok, '.')
	sig := []byte(tok[i+1:])
	sig[3] ^= 1
	tampered := tok[:i+1] + string(sig)
	if _, err := f.v.Verify(ctx, tampered); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Fatalf("a tampered copy of a cached token: %v, want unauthorized", err)
	}
	// And a refused token is not remembered as good either.
	if _, err := f.v.Verify(ctx, tampered); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Fatalf("the tampered token again: %v, want unauthorized", err)
	}
}

// A cached token is refused once it has expired: the cache holds it until its exp at
// the latest, and verifying from scratch then applies the leeway as always.
func TestCachedTokensExpire(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, 100, time.Hour, 3*time.Minute) // past CacheMaxAge
	ctx := context.Background()
	tok := f.sign(t, "")
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// Past CacheMaxAge the token is verified again from scratch (the key looked up
	// again), and still good.
	f.clock.Advance(CacheMaxAge)
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatalf("after CacheMaxAge: %v", err)
	}
	if n := f.keys.asked.Load(); n != 2 {
		t.Errorf("key looked up %d times, want 2: once more after CacheMaxAge", n)
	}
	f.clock.Advance(3*time.Minute - CacheMaxAge + Leeway + time.Second)
	if _, err := f.v.Verify(ctx, tok); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Fatalf("after exp and the leeway: %v, want unauthorized", err)
	}
}

// The session of a cached token is asked about again once the verdict is older than
// the recheck time: a session ended meanwhile is refused from then on (the
// documented window), without the list being asked again.
func TestCachedTokensOfAnEndedSessionAreRefusedWithinTheRecheckTime(t *testing.T) {
	t.Parallel()
	const recheck = time.Second
	f := newCacheFixture(t, 100, recheck, 15*time.Minute)
	ctx := context.Background()
	tok, other := f.sign(t, "ending"), f.sign(t, "other")
	for _, tk := range []string{tok, other} {
		if _, err := f.v.Verify(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.asked(); n != 2 {
		t.Fatalf("the list was asked %d times for two new tokens, want 2", n)
	}

	f.revs.mu.Lock()
	f.revs.revoked["ending"] = true
	f.revs.mu.Unlock()
	// Within the recheck time the cached verdict stands, and the list is not asked.
	f.clock.Advance(recheck - time.Millisecond)
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatalf("within the recheck time: %v (the cached verdict stands)", err)
	}
	if n := f.asked(); n != 2 {
		t.Fatalf("the list was asked within the recheck time (%d asks)", n)
	}
	f.clock.Advance(time.Millisecond)
	if _, err := f.v.Verify(ctx, tok); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Fatalf("once the recheck time has passed: %v, want unauthorized", err)
	}
	// Refused from then on, without asking: an ended session never comes back.
	f.clock.Advance(10 * recheck)
	asked := f.asked()
	if _, err := f.v.Verify(ctx, tok); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Fatalf("later: %v, want unauthorized", err)
	}
	if n := f.asked() - asked; n != 0 {
		t.Fatalf("later: %d more asks of the list, want none", n)
	}
	// Another session is untouched.
	if _, err := f.v.Verify(ctx, other); err != nil {
		t.Fatalf("another session: %v", err)
	}

	// A token of a session already ended is refused when it is first seen, and the
	// refusal is remembered too.
	f.revs.mu.Lock()
	f.revs.revoked["ended"] = true
	f.revs.mu.Unlock()
	ended := f.sign(t, "ended")
	for range 2 {
		if _, err := f.v.Verify(ctx, ended); apperr.CodeOf(err) != apperr.Unauthorized {
			t.Fatalf("a token of an ended session: %v, want unauthorized", err)
		}
	}
}

// With a recheck time of zero the list is asked for every request, as without a
// cache: only the signature is not checked again.
func TestZeroRecheckAsksForEveryRequest(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, 100, 0, 15*time.Minute)
	tok := f.sign(t, "s")
	for range 3 {
		if _, err := f.v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	f.revs.mu.Lock()
	f.revs.revoked["s"] = true
	f.revs.mu.Unlock()
	if _, err := f.v.Verify(context.Background(), tok); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Fatalf("after the session ended: %v, want unauthorized at once", err)
	}
	if n, k := f.asked(), f.keys.asked.Load(); n != 4 || k != 1 {
		t.Errorf("%d asks of the list and %d key look-ups for 4 requests, want 4 and 1", n, k)
	}
}

// While the list cannot be read a cached token is accepted (revocation fails open,
// as without a cache, and it is logged), and the list is tried again once per
// recheck time, not for every request.
func TestCachedTokensWhileTheListCannotBeRead(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, 100, time.Second, 15*time.Minute)
	var logs syncbuf.Buffer
	f.v.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	tok := f.sign(t, "s")
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	f.revs.mu.Lock()
	f.revs.err = errors.New("redis: connection refused")
	f.revs.mu.Unlock()
	f.clock.Advance(time.Second)
	for range 5 {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatalf("with the list unreadable: %v", err)
		}
	}
	if n := f.asked(); n != 2 {
		t.Errorf("the list was asked %d times, want 2: at first sight, then once after the recheck time", n)
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the failure is not logged: %q", logs.String())
	}
	// Readable again, and the session ended meanwhile: refused after the recheck time.
	f.revs.mu.Lock()
	f.revs.err = nil
	f.revs.revoked["s"] = true
	f.revs.mu.Unlock()
	f.clock.Advance(time.Second)
	if _, err := f.v.Verify(ctx, tok); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Fatalf("after the list came back: %v, want unauthorized", err)
	}
}

// The cache never holds more than its size, however many tokens come.
func TestTokenCacheIsBounded(t *testing.T) {
	t.Parallel()
	const size = 50
	f := newCacheFixture(t, size, time.Second, 15*time.Minute)
	toks := make([]string, 3*size)
	for i := range toks {
		toks[i] = f.sign(t, fmt.Sprint("s", i))
		if _, err := f.v.Verify(context.Background(), toks[i]); err != nil {
			t.Fatal(err)
		}
		if n := f.v.cache.len(); n > size {
			t.Fatalf("%d tokens cached after %d, want at most %d", n, i+1, size)
		}
	}
	// An evicted token is simply verified again.
	if _, err := f.v.Verify(context.Background(), toks[0]); err != nil {
		t.Fatalf("an evicted token: %v", err)
	}
}

// Require hands the cached principal to the handler the same as a fresh one, and
// concurrent requests with one token share the cache safely (run with -race).
func TestRequireWithACache(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, 100, 0, 15*time.Minute)
	tok := f.sign(t, "s")
	want, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	h := f.v.Require(slog.New(slog.DiscardHandler))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got, ok := FromContext(r.Context()); !ok || got != want {
			t.Errorf("principal %+v, %v; want %+v", got, ok, want)
		}
	}))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					t.Errorf("status %d: %s", rec.Code, rec.Body)
					return
				}
			}
		})
	}
	wg.Wait()
}
