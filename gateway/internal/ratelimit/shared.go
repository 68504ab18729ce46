package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// DefaultSyncInterval is how often the shared limits are reconciled with Redis.
const DefaultSyncInterval = 50 * time.Millisecond

// syncTimeout bounds one reconciliation. It is longer than a request's Redis call:
// nobody waits for it, and a batch of many keys takes longer than one.
const syncTimeout = time.Second

// maxBatch is the most keys one script call reconciles, so that a large batch does
// not hold Redis for long in one go.
const maxBatch = 256

// shared keeps the per-caller limits (PerCaller) the way they are kept in Redis, the
// same GCRA on the same keys, but decides each request in this process: a check is a
// map look-up instead of a Redis round trip, which under load was most of what a
// request cost the gateway. Every SyncInterval the requests a replica let through
// since the last time are added to Redis in one script call, and each key's state in
// Redis (every replica's requests) comes back and replaces the replica's own view.
//
// A key seen for the first time (or again after it went idle, when it is dropped) is
// checked in Redis itself, exactly as before, so a caller who spends a limit at one
// replica finds it spent at the others. A key stays in the process while its requests
// keep it busy, and is dropped at the first reconciliation that finds it idle (its
// bucket full and nothing to report): callers who send less than a request per
// interval or so are checked in Redis every time, hot ones in the process.
//
// The error (docs/benchmarks.md, docs/operations.md): between two reconciliations
// each replica judges a key by its own view, which lags Redis by up to the interval
// plus a round trip, T. Over any period, R replicas let through at most
// (R−1) × (burst + rate × T) requests of a key more than the limit allows, and only
// when all of them take the same caller's requests from a full bucket at once; what
// they let through is then owed, and refused until paid back, so in the long run the
// limit holds exactly.
//
// When Redis fails, the limits are kept in the process: each replica counts on its
// own (its requests since the last reconciliation are not added to Redis later), new
// keys are not looked up until a reconciliation succeeds again, and that is logged,
// as is the return. Never off.
type shared struct {
	rdb       *redis.Client
	rl        *redis_rate.Limiter
	opTimeout time.Duration
	interval  time.Duration
	log       *slog.Logger
	warn      func(context.Context, error)

	running atomic.Bool // Run is reconciling: without it the limiter asks Redis every time
	down    atomic.Bool // the last reconciliation failed

	mu      sync.Mutex
	buckets map[string]*bucket
	batch   []pending // reused by each reconciliation
}

// bucket is one key's limit as this process sees it.
type bucket struct {
	emission, tolerance time.Duration
	burst               int
	tat                 time.Time // theoretical arrival time, as of the last reconciliation plus unsent
	unsent              int       // requests let through here not yet added to Redis
}

// pending is a key in one reconciliation.
type pending struct {
	key string
	b   *bucket
	n   int
}

func newShared(rdb *redis.Client, rl *redis_rate.Limiter, opTimeout, interval time.Duration, log *slog.Logger, warn func(context.Context, error)) *shared {
	return &shared{rdb: rdb, rl: rl, opTimeout: opTimeout, interval: interval, log: log, warn: warn, buckets: map[string]*bucket{}}
}

func newBucket(limit redis_rate.Limit) *bucket {
	emission := limit.Period / time.Duration(limit.Rate)
	return &bucket{emission: emission, tolerance: emission * time.Duration(limit.Burst), burst: limit.Burst}
}

// allow counts one request for key against limit. A key the process holds is looked
// up without allocating.
func (s *shared) allow(ctx context.Context, keyBytes []byte, limit redis_rate.Limit) outcome {
	now := time.Now()
	s.mu.Lock()
	if b := s.buckets[string(keyBytes)]; b != nil && b.emission == limit.Period/time.Duration(limit.Rate) {
		o := b.allow(now)
		s.mu.Unlock()
		return o
	}
	s.mu.Unlock()
	key := string(keyBytes)

	if !s.down.Load() {
		cctx, cancel := context.WithTimeout(ctx, s.opTimeout)
		res, err := s.rl.Allow(cctx, key, limit)
		cancel()
		if err == nil {
			// Redis's verdict, and from now on its state (this request included) as
			// the key's view here: ResetAfter is how far its tat is ahead of now.
			tat := time.Now().Add(res.ResetAfter)
			s.mu.Lock()
			b := s.bucketOf(key, limit)
			if tat.After(b.tat) {
				b.tat = tat
			}
			s.mu.Unlock()
			return outcome{burst: res.Limit.Burst, remaining: res.Remaining,
				resetAfter: res.ResetAfter, retryAfter: res.RetryAfter, refused: res.Allowed == 0}
		}
		if ctx.Err() == nil {
			// Until a reconciliation gets through, new callers are limited in the
			// process at once rather than each waiting for Redis to fail again.
			s.down.Store(true)
			s.warn(ctx, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bucketOf(key, limit).allow(now)
}

// bucketOf is key's bucket, made for limit if there is none (or one for another
// limit, which a configuration never gives one key); s.mu is held.
func (s *shared) bucketOf(key string, limit redis_rate.Limit) *bucket {
	b := s.buckets[key]
	if b == nil || b.emission != limit.Period/time.Duration(limit.Rate) {
		b = newBucket(limit)
		s.buckets[key] = b
	}
	return b
}

// allow is GCRA on the bucket's view, counting a request let through as unsent.
func (b *bucket) allow(now time.Time) outcome {
	tat, o := gcra(b.tat, now, b.emission, b.tolerance, b.burst)
	if !o.refused {
		b.tat = tat
		b.unsent++
	}
	return o
}

// Run reconciles the limits with Redis every interval until ctx ends, then once more
// so that the last requests are counted. While it runs, allow decides in the
// process.
func (s *shared) Run(ctx context.Context) {
	s.running.Store(true)
	defer s.running.Store(false)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), syncTimeout)
			_ = s.sync(fctx)
			cancel()
			return
		case <-t.C:
			sctx, cancel := context.WithTimeout(ctx, syncTimeout)
			_ = s.sync(sctx)
			cancel()
		}
	}
}

// reconcile adds each key's unsent requests to its state in Redis and returns how
// far each key's tat is ahead of Redis's clock (0 when it is not), in KEYS order.
// The state is redis_rate's: the tat in seconds since 2017, which redis_rate's own
// checks read and write on the same keys. Each ARGV pair is a key's unsent count and
// emission interval in seconds.
var reconcile = redis.NewScript(`
redis.replicate_commands()
local jan_1_2017 = 1483228800
local t = redis.call("TIME")
local now = (t[1] - jan_1_2017) + (t[2] / 1000000)
local out = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[2 * i - 1])
  local emission = tonumber(ARGV[2 * i])
  local tat = redis.call("GET", key)
  if tat then tat = tonumber(tat) else tat = now end
  if tat < now then tat = now end
  if n > 0 then
    tat = tat + n * emission
    redis.call("SET", key, tat, "EX", math.ceil(tat - now))
  end
  out[i] = tostring(tat - now)
end
return out
`)

// sync is one reconciliation: it drops the keys that have gone idle, sends the rest
// with their unsent requests, and takes Redis's state of each as its view. When Redis
// fails the unsent requests are forgotten (this replica counted them alone) and the
// failure is logged.
func (s *shared) sync(ctx context.Context) error {
	now := time.Now()
	s.mu.Lock()
	batch := s.batch[:0]
	for k, b := range s.buckets {
		if b.unsent == 0 && !b.tat.After(now) {
			delete(s.buckets, k) // idle: its next request is checked in Redis
			continue
		}
		batch = append(batch, pending{key: k, b: b, n: b.unsent})
		b.unsent = 0
	}
	s.batch = batch
	s.mu.Unlock()

	ahead, err := s.send(ctx, batch)
	if err != nil {
		s.down.Store(true)
		if !errors.Is(err, context.Canceled) {
			s.warn(ctx, err)
		}
		return err
	}
	if s.down.Swap(false) {
		s.log.InfoContext(ctx, "rate limits shared through redis again")
	}
	at := time.Now()
	s.mu.Lock()
	for i, p := range batch {
		// Redis's state, and what was let through here since the batch was cut.
		p.b.tat = at.Add(ahead[i] + time.Duration(p.b.unsent)*p.b.emission)
	}
	s.mu.Unlock()
	clear(batch) // let go of the buckets
	return nil
}

// send runs reconcile over batch, maxBatch keys a call. With nothing to send it
// pings Redis, so that a return is noticed even when no key is busy.
func (s *shared) send(ctx context.Context, batch []pending) ([]time.Duration, error) {
	if len(batch) == 0 {
		if !s.down.Load() {
			return nil, nil
		}
		return nil, s.rdb.Ping(ctx).Err()
	}
	ahead := make([]time.Duration, 0, len(batch))
	keys := make([]string, 0, min(len(batch), maxBatch))
	args := make([]any, 0, 2*cap(keys))
	for start := 0; start < len(batch); start += maxBatch {
		keys, args = keys[:0], args[:0]
		for _, p := range batch[start:min(start+maxBatch, len(batch))] {
			keys = append(keys, KeyPrefix+p.key)
			args = append(args, p.n, strconv.FormatFloat(p.b.emission.Seconds(), 'g', -1, 64))
		}
		res, err := reconcile.Run(ctx, s.rdb, keys, args...).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("reconcile rate limits: %w", err)
		}
		if len(res) != len(keys) {
			return nil, fmt.Errorf("reconcile rate limits: %d answers for %d keys", len(res), len(keys))
		}
		for _, r := range res {
			sec, err := strconv.ParseFloat(r, 64)
			if err != nil {
				return nil, fmt.Errorf("reconcile rate limits: %q: %w", r, err)
			}
			ahead = append(ahead, time.Duration(sec*float64(time.Second)))
		}
	}
	return ahead, nil
}

// size is how many keys are kept in the process.
func (s *shared) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buckets)
}
