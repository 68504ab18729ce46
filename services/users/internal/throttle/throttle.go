// Package throttle slows down password guessing at log-in, inside the users service, so
// that calling users directly (round the gateway's rate limits) gains nothing. It
// counts failed log-ins per e-mail, per (e-mail, client address) and per client
// address, and answers an attempt that comes too soon after failures with a delay to
// wait (429 with Retry-After) instead of checking its password.
//
// The rule (Policy has the numbers; the defaults are in brackets):
//
//   - Failures are counted per e-mail, per (e-mail, address) and per address. Each
//     count is remembered for Window [15 min] past its last failure's delay.
//   - Once an e-mail has EmailFailures [5] failures, each further attempt must wait
//     BaseDelay [1 s] × 2^(failures − 5) (1 s, 2 s, 4 s, …, capped at MaxDelay
//     [15 min]) after the last one. It applies to every address that has failed for that e-mail
//     before, and to each (e-mail, address) pair on its own count too.
//   - An address that has not failed for the e-mail is not made to wait: while the
//     e-mail is under a delay, such fresh addresses share a budget of FreshBudget [3]
//     attempts per Window. So an attacker guessing from many addresses gets the budget
//     and one guess per delay, not one guess per address; and the owner, from an
//     address of their own, gets in unless the attacker has spent the budget, and then
//     waits out one delay (at most MaxDelay), never a lock-out that anyone can keep up.
//   - An address with AddressFailures [20] failures, across any e-mails, is delayed the
//     same way: one source cannot spray guesses over many accounts.
//   - An attempt counts as a failure when it is admitted, and a success gives it back
//     (and forgets the address's failures for that e-mail), so that concurrent
//     attempts cannot all slip in before any is counted: under a delay, attempts that
//     arrive together when it passes get one try between them.
//   - A refused attempt is not counted, and it is refused before its password is
//     looked at, so a 429 says nothing about whether the password was right or the
//     account exists.
//   - IPv6 addresses count per /64, the block a single client is usually given.
//
// The counts live in Redis with time-to-live, so that every replica sees the same. When
// Redis cannot be reached they are kept in this process instead (never "no limits"),
// and that is logged: each replica then counts on its own until Redis is back.
package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

// KeyPrefix starts every Redis key of the throttle.
const KeyPrefix = "users:signin:"

// Policy is the numbers of the rule (see the package documentation).
type Policy struct {
	EmailFailures   int           // failures of an e-mail (or an e-mail and address) before delays
	AddressFailures int           // failures from an address, across e-mails, before delays
	FreshBudget     int           // attempts fresh addresses share per Window while an e-mail is delayed
	Window          time.Duration // how long failures are remembered past the last one's delay
	BaseDelay       time.Duration // the first delay, which doubles with each further failure
	MaxDelay        time.Duration // the longest delay
}

// DefaultPolicy is the rule's default numbers.
var DefaultPolicy = Policy{EmailFailures: 5, AddressFailures: 20, FreshBudget: 3,
	Window: 15 * time.Minute, BaseDelay: time.Second, MaxDelay: 15 * time.Minute}

// delay is how long after its last failure a count of n, whose delays start at
// threshold, makes the next attempt wait: 0 below the threshold, then BaseDelay,
// doubling, up to MaxDelay.
func (p Policy) delay(n, threshold int) time.Duration {
	if threshold <= 0 || n < threshold {
		return 0
	}
	d := p.BaseDelay
	for range n - threshold {
		if d >= p.MaxDelay {
			break
		}
		d *= 2
	}
	return min(d, p.MaxDelay)
}

// counter is one count: failures (each admitted attempt until given back), and when the
// last was admitted.
type counter struct {
	N  int
	At time.Time
}

// state is what one attempt is judged on.
type state struct {
	Email, Pair, Addr counter
	Fresh             int // the e-mail's fresh-address budget spent
}

// admit judges an attempt at now: how long it must wait (0: admitted), and the state
// after it, and whether it spent the fresh budget.
func (p Policy) admit(s state, now time.Time) (wait time.Duration, next state, fresh bool) {
	waitFor := func(c counter, threshold int) time.Duration {
		if d := p.delay(c.N, threshold); d > 0 && now.Before(c.At.Add(d)) {
			return c.At.Add(d).Sub(now)
		}
		return 0
	}
	if w := waitFor(s.Addr, p.AddressFailures); w > 0 {
		return w, s, false
	}
	if w := waitFor(s.Pair, p.EmailFailures); w > 0 {
		return w, s, false
	}
	if w := waitFor(s.Email, p.EmailFailures); w > 0 {
		if s.Pair.N > 0 || s.Fresh >= p.FreshBudget {
			return w, s, false
		}
		fresh = true
		s.Fresh++
	}
	for _, c := range []*counter{&s.Email, &s.Pair, &s.Addr} {
		c.N++
		c.At = now
	}
	return 0, s, fresh
}

// giveBack undoes what an admitted attempt counted, for one that was not a wrong guess:
// the address's failures for the e-mail are forgotten, the e-mail's and the address's
// lose the one.
func giveBack(s state, fresh bool) state {
	s.Pair = counter{}
	s.Email.N = max(0, s.Email.N-1)
	s.Addr.N = max(0, s.Addr.N-1)
	if fresh {
		s.Fresh = max(0, s.Fresh-1)
	}
	return s
}

// keys name an attempt's state.
type keys struct{ email, pair, addr, fresh string }

func keysOf(email string, from netip.Addr) keys {
	email = strings.ToLower(strings.TrimSpace(email))
	a := addressKey(from)
	return keys{
		email: KeyPrefix + "email:" + hashed(email),
		pair:  KeyPrefix + "pair:" + hashed(email+"\x00"+a),
		addr:  KeyPrefix + "addr:" + hashed(a),
		fresh: KeyPrefix + "fresh:" + hashed(email),
	}
}

// addressKey is the part of an address that names one client: the address, or the /64
// of an IPv6 one.
func addressKey(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is6():
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// hashed keeps e-mail addresses and client addresses out of Redis keys.
func hashed(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// store keeps the states. update runs f on the state of k and stores what it returns,
// atomically.
type store interface {
	update(ctx context.Context, k keys, now time.Time, f func(state) (state, bool)) error
}

// Options tune a Guard.
type Options struct {
	// Now tells the time; tests set it. Default time.Now.
	Now func() time.Time
	// Log receives the warnings about Redis. Default: discarded.
	Log *slog.Logger
	// Timeout bounds each Redis call; past it the in-process state is used. Default
	// DefaultTimeout. It can cut a call short only if the client honours context deadlines
	// (redis.Options.ContextTimeoutEnabled).
	Timeout time.Duration
}

// DefaultTimeout bounds each Redis call of a Guard unless Options says otherwise: a
// log-in should not wait long for a Redis that is down or hung, and the in-process
// count is the fallback.
const DefaultTimeout = 250 * time.Millisecond

// Guard applies a Policy. It is safe for concurrent use.
type Guard struct {
	policy  Policy
	now     func() time.Time
	log     *slog.Logger
	timeout time.Duration
	redis   *redisStore
	memory  *memoryStore
	warned  atomic.Int64 // unix nanoseconds of the last warning about Redis
	// skipRedisUntil (unix nanoseconds) is when Redis is tried again after it failed:
	// meanwhile the in-process state is used at once, rather than every log-in first
	// waiting for a Redis that is down.
	skipRedisUntil atomic.Int64
}

// redisRetryAfter is how long Redis is left alone after it failed.
const redisRetryAfter = 2 * time.Second

var _ user.Throttle = (*Guard)(nil)

// New keeps the state in rdb (in-process while it is unreachable).
func New(rdb redis.UniversalClient, p Policy, opts Options) *Guard {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Guard{policy: p, now: opts.Now, log: opts.Log, timeout: opts.Timeout,
		redis: &redisStore{rdb: rdb, p: p}, memory: newMemoryStore(p, memoryLimit)}
}

// Admit implements user.Throttle: it returns a *user.TooManyAttemptsError when the
// attempt must wait, and otherwise counts it as a failure until the release it returns
// is called.
func (g *Guard) Admit(ctx context.Context, email string, from netip.Addr) (func(context.Context), error) {
	k := keysOf(email, from)
	now := g.now()
	var wait time.Duration
	var fresh bool
	err := g.update(ctx, k, now, func(s state) (state, bool) {
		var next state
		wait, next, fresh = g.policy.admit(s, now)
		return next, wait == 0
	})
	if err != nil {
		return nil, err
	}
	if wait > 0 {
		return nil, &user.TooManyAttemptsError{RetryAfter: wait}
	}
	release := func(ctx context.Context) {
		// Given back even when the caller has gone: a success must not count.
		ctx = context.WithoutCancel(ctx)
		_ = g.update(ctx, k, g.now(), func(s state) (state, bool) { return giveBack(s, fresh), true })
	}
	return release, nil
}

// errBusy is a state that changed under every try: many attempts at once for the same
// e-mail or address. The attempt is refused (it can retry in a second) rather than let
// through uncounted.
var errBusy = errors.New("too many concurrent attempts")

// update runs f in Redis or, when Redis fails, in this process.
func (g *Guard) update(ctx context.Context, k keys, now time.Time, f func(state) (state, bool)) error {
	if time.Now().UnixNano() < g.skipRedisUntil.Load() {
		return g.memory.update(ctx, k, now, f)
	}
	rctx, cancel := context.WithTimeout(ctx, g.timeout)
	err := g.redis.update(rctx, k, now, f)
	cancel()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errBusy):
		return &user.TooManyAttemptsError{RetryAfter: time.Second}
	case ctx.Err() != nil:
		return ctx.Err()
	}
	g.skipRedisUntil.Store(time.Now().Add(redisRetryAfter).UnixNano())
	g.warn(ctx, err)
	return g.memory.update(ctx, k, now, f)
}

// warnEvery is the least time between two warnings about Redis.
const warnEvery = 5 * time.Second

func (g *Guard) warn(ctx context.Context, err error) {
	now := time.Now().UnixNano()
	last := g.warned.Load()
	if now-last < int64(warnEvery) || !g.warned.CompareAndSwap(last, now) {
		return
	}
	g.log.WarnContext(ctx, "log-in throttling cannot reach Redis; counting failures in-process, per replica, until it is back", "err", err)
}

// ttl is how long a count must be kept: Window past its delay.
func (p Policy) ttl(c counter, threshold int, now time.Time) time.Duration {
	return c.At.Add(p.delay(c.N, threshold) + p.Window).Sub(now)
}

// redisStore keeps the states in Redis: one hash (n, at in Unix nanoseconds) per count, and a counter for
// the fresh budget, each with a time to live; WATCH makes update atomic.
type redisStore struct {
	rdb redis.UniversalClient
	p   Policy
}

// maxTries bounds the optimistic retries of one update.
const maxTries = 8

func (r *redisStore) update(ctx context.Context, k keys, now time.Time, f func(state) (state, bool)) error {
	for range maxTries {
		err := r.rdb.Watch(ctx, func(tx *redis.Tx) error {
			s, freshTTL, err := r.read(ctx, tx, k)
			if err != nil {
				return err
			}
			next, write := f(s)
			if !write {
				return nil
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				r.writeCounter(ctx, p, k.email, next.Email, r.p.EmailFailures, now)
				r.writeCounter(ctx, p, k.pair, next.Pair, r.p.EmailFailures, now)
				r.writeCounter(ctx, p, k.addr, next.Addr, r.p.AddressFailures, now)
				switch {
				case next.Fresh == s.Fresh:
				case next.Fresh == 0:
					p.Del(ctx, k.fresh)
				case freshTTL > 0:
					p.Set(ctx, k.fresh, next.Fresh, redis.KeepTTL)
				default:
					p.Set(ctx, k.fresh, next.Fresh, r.p.Window)
				}
				return nil
			})
			return err
		}, k.email, k.pair, k.addr, k.fresh)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return errBusy
}

func (r *redisStore) read(ctx context.Context, tx *redis.Tx, k keys) (state, time.Duration, error) {
	var s state
	cmds, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, key := range []string{k.email, k.pair, k.addr} {
			p.HMGet(ctx, key, "n", "at")
		}
		p.Get(ctx, k.fresh)
		p.PTTL(ctx, k.fresh)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return state{}, 0, err
	}
	for i, c := range []*counter{&s.Email, &s.Pair, &s.Addr} {
		vals := cmds[i].(*redis.SliceCmd).Val()
		if len(vals) != 2 {
			return state{}, 0, fmt.Errorf("read log-in failures: HMGET answered %d values", len(vals))
		}
		n, _ := vals[0].(string)
		at, _ := vals[1].(string)
		c.N, _ = strconv.Atoi(n)
		ns, _ := strconv.ParseInt(at, 10, 64)
		c.At = time.Unix(0, ns)
	}
	s.Fresh, _ = strconv.Atoi(cmds[3].(*redis.StringCmd).Val())
	return s, cmds[4].(*redis.DurationCmd).Val(), nil
}

func (r *redisStore) writeCounter(ctx context.Context, p redis.Pipeliner, key string, c counter, threshold int, now time.Time) {
	ttl := r.p.ttl(c, threshold, now)
	if c.N == 0 || ttl <= 0 {
		p.Del(ctx, key)
		return
	}
	p.HSet(ctx, key, "n", c.N, "at", c.At.UnixNano())
	p.PExpire(ctx, key, ttl)
}

// memoryLimit bounds the in-process states, so that a flood of made-up e-mails while
// Redis is down cannot exhaust memory.
const memoryLimit = 100_000

// memoryStore keeps the states in this process, while Redis is unreachable.
type memoryStore struct {
	p     Policy
	limit int
	mu    sync.Mutex
	items map[string]memoryItem
}

type memoryItem struct {
	c       counter
	fresh   int
	expires time.Time
}

func newMemoryStore(p Policy, limit int) *memoryStore {
	return &memoryStore{p: p, limit: limit, items: map[string]memoryItem{}}
}

func (m *memoryStore) update(_ context.Context, k keys, now time.Time, f func(state) (state, bool)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	get := func(key string) memoryItem {
		it, ok := m.items[key]
		if !ok || !now.Before(it.expires) {
			return memoryItem{}
		}
		return it
	}
	fresh := get(k.fresh)
	s := state{Email: get(k.email).c, Pair: get(k.pair).c, Addr: get(k.addr).c, Fresh: fresh.fresh}
	next, write := f(s)
	if !write {
		return nil
	}
	m.prune(now)
	put := func(key string, c counter, threshold int) {
		ttl := m.p.ttl(c, threshold, now)
		if c.N == 0 || ttl <= 0 {
			delete(m.items, key)
			return
		}
		m.items[key] = memoryItem{c: c, expires: now.Add(ttl)}
	}
	put(k.email, next.Email, m.p.EmailFailures)
	put(k.pair, next.Pair, m.p.EmailFailures)
	put(k.addr, next.Addr, m.p.AddressFailures)
	switch {
	case next.Fresh == 0:
		delete(m.items, k.fresh)
	case fresh.expires.IsZero():
		m.items[k.fresh] = memoryItem{fresh: next.Fresh, expires: now.Add(m.p.Window)}
	default:
		m.items[k.fresh] = memoryItem{fresh: next.Fresh, expires: fresh.expires}
	}
	return nil
}

// prune drops expired states once the map is full and, if it is still full, arbitrary
// ones: forgetting some counts is better than running out of memory.
func (m *memoryStore) prune(now time.Time) {
	if len(m.items) < m.limit {
		return
	}
	for key, it := range m.items {
		if !now.Before(it.expires) {
			delete(m.items, key)
		}
	}
	for key := range m.items {
		if len(m.items) < m.limit*9/10 {
			break
		}
		delete(m.items, key)
	}
}

// String shows a policy in the settings log.
func (p Policy) String() string {
	return fmt.Sprintf("%d failures per e-mail, %d per address, %d fresh attempts, window %s, delays from %s to %s",
		p.EmailFailures, p.AddressFailures, p.FreshBudget, p.Window, p.BaseDelay, p.MaxDelay)
}
