package productcache_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/gateway/internal/productcache"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
)

// lookupHook counts the cache's lookups in Redis (the pipelines that read a copy)
// and can hold the first one it sees, once Redis has answered it, until released.
type lookupHook struct {
	n       atomic.Int64
	hold    atomic.Bool
	arrived chan struct{}
	gate    gate
}

func newLookupHook() *lookupHook {
	return &lookupHook{arrived: make(chan struct{}), gate: newGate()}
}

func (h *lookupHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *lookupHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *lookupHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "hmget" }) {
			h.n.Add(1)
			if h.hold.CompareAndSwap(true, false) {
				close(h.arrived)
				<-h.gate.open
			}
		}
		return err
	}
}

// waiters counts the requests that wait for a shared lookup.
func waiters(f *fixture) *atomic.Int64 {
	var n atomic.Int64
	productcache.OnLookupWait(f.cache, func() { n.Add(1) })
	return &n
}

func waitFor(t *testing.T, what string, n *atomic.Int64, want int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); n.Load() < want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d %s after 10s; want %d", n.Load(), what, want)
		}
	}
}

// A crowd reading one product costs Redis a lookup or two, not one each: past the
// pool's connections the lookups would wait, time out, and turn the cache off for
// everyone, sending the crowd to inventory.
func TestACrowdSharesItsLookups(t *testing.T) {
	t.Parallel()
	const n = 100
	f := newFixture(t, redistest.New(t), product)
	hook := newLookupHook()
	f.rdb.AddHook(hook)
	t.Cleanup(hook.gate.release)
	waiting := waiters(f)
	path := "/api/v1/products/" + uuid.NewString()

	hook.hold.Store(true)
	out := make([]answer, n)
	var wg sync.WaitGroup
	wg.Go(func() { out[0] = f.send(t.Context(), path) })
	await(t, hook.arrived, "the first lookup in Redis") // the first request's lookup is under way
	for i := 1; i < n; i++ {
		wg.Go(func() { out[i] = f.send(t.Context(), path) })
	}
	waitFor(t, "requests waiting for a lookup", waiting, n-1)
	hook.gate.release()
	wg.Wait()

	for i, a := range out {
		if a.status != http.StatusOK || a.body != read(path, 1) {
			t.Fatalf("request %d: %+v; want 200 %s", i, a, read(path, 1))
		}
	}
	if got := hook.n.Load(); got != 2 {
		t.Errorf("%d requests made %d lookups; want 2 (the first, then one for all that came while it ran)", n, got)
	}
	if calls := f.up.count(path); calls != 1 {
		t.Errorf("the upstream was asked %d times; want once", calls)
	}
}

// The race lookups must not lose: a lookup under way may have found the copy from
// before a change; a request that comes after the change's event was handled must not
// be given what it found.
func TestALookupUnderWayIsNotSharedWithARequestThatCameAfterAChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), product)
	hook := newLookupHook()
	f.rdb.AddHook(hook)
	t.Cleanup(hook.gate.release)
	waiting := waiters(f)
	id := uuid.New()
	path := "/api/v1/products/" + id.String()
	stale, fresh := read(path, 1), read(path, 2)
	f.expect(t, path, productcache.Miss, stale) // the copy from before the change

	hook.hold.Store(true)
	var wg sync.WaitGroup
	var before, after answer
	wg.Go(func() { before = f.send(t.Context(), path) })
	await(t, hook.arrived, "the first lookup in Redis") // its lookup has found the copy
	if err := f.cache.Forget(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { after = f.send(t.Context(), path) })
	waitFor(t, "requests waiting for a lookup", waiting, 1)
	hook.gate.release()
	wg.Wait()

	if before.status != http.StatusOK || before.xcache != productcache.Hit || before.body != stale {
		t.Errorf("the read begun before the change: %+v; want the copy it found (HIT %s)", before, stale)
	}
	if after.status != http.StatusOK {
		t.Errorf("the read begun after the change's event: %+v; want 200", after)
	}
	if after.body != fresh {
		t.Errorf("the read begun after the change's event: body %s; want the product as changed, %s", after.body, fresh)
	}
	if want := httpserver.ETag([]byte(fresh)); after.etag != want {
		t.Errorf("the read begun after the change's event: ETag %s; want the changed product's, %s", after.etag, want)
	}
}
