package ratelimit

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

// slowLimit refills one request an hour: within a test only the burst counts, so
// what one replica lets through is all the others may not.
var slowLimit = redis_rate.Limit{Rate: 1, Period: time.Hour, Burst: 10}

// replica is one gateway's limiter on the Redis at url.
type replica struct {
	l    *Limiter
	logs *syncbuf.Buffer
}

func newReplica(t *testing.T, url string) *replica {
	t.Helper()
	rdb, err := Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	logs := &syncbuf.Buffer{}
	return &replica{l: New(rdb, Limits{}, Options{Log: slog.New(slog.NewTextHandler(logs, nil))}), logs: logs}
}

// take sends n requests for key and counts those let through.
func (r *replica) take(key string, n int) int {
	ok := 0
	for range n {
		if !r.l.shared.allow(context.Background(), []byte(key), slowLimit).refused {
			ok++
		}
	}
	return ok
}

func (r *replica) sync(t *testing.T) {
	t.Helper()
	if err := r.l.shared.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Two replicas on one Redis keep one limit. What one spent and reported, the other
// finds spent the first time it sees the caller (it asks Redis). When both take the
// same caller's requests at once, each from its own view, together they let through
// at most the documented error more than the limit — here (R−1) × burst, the refill
// being nil — and once they have reconciled both refuse, the excess owed in Redis.
func TestTwoReplicasShareOneLimit(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	a, b := newReplica(t, url), newReplica(t, url)

	if n := a.take("user:ann", 15); n != slowLimit.Burst {
		t.Fatalf("one replica let %d of 15 through, want the burst (%d)", n, slowLimit.Burst)
	}
	a.sync(t)
	if n := b.take("user:ann", 5); n != 0 {
		t.Fatalf("the other replica let %d through after the first spent the burst and reported it", n)
	}
	// Part spent at one, the rest at the other.
	if n := a.take("user:bob", 4); n != 4 {
		t.Fatalf("%d of 4", n)
	}
	a.sync(t)
	if n := b.take("user:bob", 10); n != slowLimit.Burst-4 {
		t.Fatalf("the other replica let %d through, want the %d left", n, slowLimit.Burst-4)
	}

	// Both busy with one caller at once: each has seen it (asked Redis), then judges
	// on its own until they reconcile.
	both := a.take("user:cy", 1) + b.take("user:cy", 1)
	both += a.take("user:cy", 20) + b.take("user:cy", 20)
	if both < slowLimit.Burst || both > 2*slowLimit.Burst {
		t.Fatalf("two replicas let %d through at once, want between the burst (%d) and the documented bound (%d)",
			both, slowLimit.Burst, 2*slowLimit.Burst)
	}
	a.sync(t)
	b.sync(t)
	if n := a.take("user:cy", 5) + b.take("user:cy", 5); n != 0 {
		t.Fatalf("after reconciling, %d more let through", n)
	}
	// What they let through is owed in Redis: the key's tat is ahead by all of it.
	rdb := a.l.shared.rdb
	if ttl := rdb.TTL(context.Background(), KeyPrefix+"user:cy").Val(); ttl < time.Duration(both-1)*time.Hour {
		t.Fatalf("the key lives %s in Redis, want the %d requests let through owed (%d hours)", ttl, both, both)
	}
}

// The per-caller limit never turns off with Redis: while Redis is unreachable each
// replica keeps the limit in its process alone (and says so), new callers included;
// when Redis is back the limit is shared again.
func TestSharedLimitsAreKeptInTheProcessWhileRedisIsDownAndSharedAgainAfter(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tcpproxy.New(opt.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	cut := newReplica(t, strings.Replace(url, opt.Addr, proxy.Addr(), 1)) // Redis through the proxy
	other := newReplica(t, url)

	if n := cut.take("user:ann", 1); n != 1 {
		t.Fatal("the first request was refused")
	}
	cut.sync(t)

	proxy.Cut()
	// The rest of the burst, then refusals: the limit holds in the process.
	if n := cut.take("user:ann", 20); n != slowLimit.Burst-1 {
		t.Fatalf("without Redis, %d of 20 more let through, want the %d left of the burst", n, slowLimit.Burst-1)
	}
	if err := cut.l.shared.sync(context.Background()); err == nil {
		t.Fatal("a reconciliation with Redis cut succeeded")
	}
	if !strings.Contains(cut.logs.String(), "rate limits kept in this process") {
		t.Fatalf("the fallback is not logged: %s", cut.logs.String())
	}
	// A caller first seen while Redis is down is limited too, without waiting for it.
	if n := cut.take("user:bob", 20); n != slowLimit.Burst {
		t.Fatalf("a new caller without Redis: %d of 20 let through, want the burst", n)
	}
	// Meanwhile the other replica counts alone: Redis knows of one request of ann's.
	if n := other.take("user:ann", 20); n != slowLimit.Burst-1 {
		t.Fatalf("the replica with Redis let %d of ann's through, want %d", n, slowLimit.Burst-1)
	}
	other.sync(t)

	proxy.Restore()
	cut.sync(t)
	if !strings.Contains(cut.logs.String(), "rate limits shared through redis again") {
		t.Fatalf("the return is not logged: %s", cut.logs.String())
	}
	// Shared again: a caller who spends the limit at one replica finds it spent at
	// the other, in both directions.
	if n := other.take("user:cy", 20); n != slowLimit.Burst {
		t.Fatalf("%d of 20", n)
	}
	other.sync(t)
	if n := cut.take("user:cy", 5); n != 0 {
		t.Fatalf("the replica that lost Redis let %d through of a limit spent at the other", n)
	}
	if n := cut.take("user:dee", 20); n != slowLimit.Burst {
		t.Fatalf("%d of 20", n)
	}
	cut.sync(t)
	if n := other.take("user:dee", 5); n != 0 {
		t.Fatalf("the other replica let %d through of a limit spent at the one that lost Redis", n)
	}
}

// A caller who goes quiet is dropped from the process at the next reconciliation
// (its next request is asked of Redis); a busy one is kept.
func TestIdleCallersAreDropped(t *testing.T) {
	t.Parallel()
	r := newReplica(t, redistest.New(t))
	// A request is paid back in 100ms: long enough that the first reconciliation
	// comes before quiet's is (a millisecond was not, on a loaded machine), short
	// enough to poll for.
	fast := redis_rate.Limit{Rate: 10, Period: time.Second, Burst: 1000}
	for _, k := range []string{"user:quiet", "user:busy"} {
		if r.l.shared.allow(context.Background(), []byte(k), fast).refused {
			t.Fatal("refused")
		}
	}
	r.sync(t)
	if n := r.l.shared.size(); n != 2 {
		t.Fatalf("%d keys kept, want 2", n)
	}
	// busy keeps sending; quiet's request has been paid back once 100ms have passed
	// on the clock (polled, not slept). busy sends every few milliseconds, as a
	// caller does: flat out, a fast machine spent its burst of 1000 (100ms of
	// payback each) before quiet's 100ms were up, and busy was refused.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if r.l.shared.allow(context.Background(), []byte("user:busy"), fast).refused {
			t.Fatal("refused")
		}
		r.sync(t)
		if r.l.shared.size() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys kept after quiet went idle, want 1", r.l.shared.size())
		}
	}
}
