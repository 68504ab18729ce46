// Package ratelimit is the gateway's rate limiting (docs/contract.md, "The gateway"): GCRA
// limits. First, per client IP on every request before any token is looked at
// (PerAddress), kept in the process, so that a flood of forged or stale tokens is
// throttled before each costs a signature check, whatever state Redis is in. Then,
// kept in Redis with redis_rate and so shared by every replica: per user when the
// caller's token has been verified and per client IP otherwise (PerCaller), and
// tighter ones on log-in and sign-up, per client IP and per e-mail address (SignIn). A
// request over a limit is a 429 problem with Retry-After.
//
// The per-caller limits are decided in the process and reconciled with Redis in
// batches (shared.go), so that a request does not wait for Redis, within an error
// documented there; the sign-in limits, which stand between one address and a
// password-guessing run and cost a password hash anyway, ask Redis on every attempt.
//
// Limits protect the services, and must not turn off when Redis does (a flood can be
// what makes Redis slow). When a Redis check fails, the same limit is kept in this
// process instead (the same GCRA), and that is logged now and then: each replica then
// counts on its own, so the limits are at worst the configured ones times the number
// of replicas, for as long as Redis is out; never off. The per-address limit in front
// is in the process always.
//
// Every refusal is counted in gateway_rate_limit_rejections_total by the limit that
// refused it (see the Limit constants), so that an operator can tell a flood at the
// edge from a busy user or a password-guessing run.
package ratelimit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

// KeyPrefix starts every key the limiter keeps in Redis.
const KeyPrefix = "gateway:rl:"

// DefaultOpTimeout bounds each Redis call; past it the limit is checked in the process.
const DefaultOpTimeout = 100 * time.Millisecond

// DefaultSignInOpTimeout bounds each Redis call of the sign-in limits. It is longer:
// a log-in spends a password hash's time anyway, and these limits are what stands
// between one address and a password-guessing run, so they should leave Redis (for
// the process's count, which each replica keeps alone) only when Redis is really
// down, not when it is a little slow under a burst.
const DefaultSignInOpTimeout = time.Second

// warnEvery is the least time between two warnings about Redis failing.
const warnEvery = 5 * time.Second

// Limits are the configured rates. A zero rate (or burst) turns that limit off.
type Limits struct {
	// EdgeIP, EdgeIPBurst: per client IP on every request, before tokens are checked,
	// requests per second and burst (RATE_EDGE_IP, RATE_EDGE_IP_BURST). It must let
	// one signed-in user's own limit be reached first.
	EdgeIP, EdgeIPBurst int
	IP, IPBurst         int // per client IP, requests per second and burst (RATE_IP, RATE_IP_BURST)
	User, UserBurst     int // per user, requests per second and burst (RATE_USER, RATE_USER_BURST)
	AuthIPPerMin        int // log-ins and sign-ups per client IP a minute (RATE_AUTH_IP_PER_MIN)
	AuthEmailPerMin     int // log-ins and sign-ups per e-mail address a minute (RATE_AUTH_EMAIL_PER_MIN)
	// SyncInterval is how often the per-caller limits, decided in each replica, are
	// reconciled with Redis (RATE_SYNC_INTERVAL); zero is DefaultSyncInterval. The
	// limits' error across replicas grows with it (see shared).
	SyncInterval time.Duration
}

// The limits, as gateway_rate_limit_rejections_total names them in its limit label.
const (
	LimitEdgeIP    = "edge_ip"    // RATE_EDGE_IP: every request per client IP, in the process (PerAddress)
	LimitIP        = "ip"         // RATE_IP: an anonymous caller's API requests per client IP (PerCaller)
	LimitUser      = "user"       // RATE_USER: a signed-in user's API requests (PerCaller)
	LimitAuthIP    = "auth_ip"    // RATE_AUTH_IP_PER_MIN: log-ins and sign-ups per client IP (SignIn, SignInAttempt)
	LimitAuthEmail = "auth_email" // RATE_AUTH_EMAIL_PER_MIN: log-ins and sign-ups per e-mail address
)

// limitNames are every limit, so that each one's rejections are exported from the
// start, at zero: a rate over a series that appears only with its first refusal
// would miss that first one, and a dashboard would show no data rather than none.
var limitNames = []string{LimitEdgeIP, LimitIP, LimitUser, LimitAuthIP, LimitAuthEmail}

// Options tune a Limiter.
type Options struct {
	Log *slog.Logger
	// Registerer, when set, gets the rejections counter
	// (gateway_rate_limit_rejections_total{limit}).
	Registerer prometheus.Registerer
	// OpTimeout bounds each Redis call; default DefaultOpTimeout.
	OpTimeout time.Duration
	// SignInOpTimeout bounds each Redis call of the sign-in limits; default
	// DefaultSignInOpTimeout.
	SignInOpTimeout time.Duration
}

// Open is a Redis client for the limiter at url: bounded like every client a waiting
// request uses (redisclient.OpenBounded), with enough connections, some kept open,
// that a burst of requests does not queue for one past OpTimeout: a check that times
// out is counted in the process alone, so a pool too small would multiply the very
// limit meant for a parallel flood of log-ins by the number of replicas.
func Open(url string) (*redis.Client, error) {
	return redisclient.OpenBounded(url, func(o *redis.Options) {
		o.PoolSize = poolSize
		o.MinIdleConns = minIdleConns
	})
}

// The limiter's Redis connections: at most poolSize, minIdleConns kept ready.
const (
	poolSize     = 128
	minIdleConns = 16
)

// Limiter checks requests against Limits. Its middleware are safe for concurrent use.
type Limiter struct {
	rl        *redis_rate.Limiter
	edge      *local // nil when the per-address limit is off
	limits    Limits
	log       *slog.Logger
	opTimeout time.Duration
	// signInOpTimeout replaces opTimeout for the sign-in limits.
	signInOpTimeout time.Duration
	lastWarn        atomic.Int64 // unix nanoseconds of the last warning

	// fallback holds the limits kept in this process while Redis fails, one GCRA per
	// distinct limit (rate, burst, period), each keyed as in Redis.
	fallbackMu sync.Mutex
	fallback   map[redis_rate.Limit]*local

	// shared decides the per-caller limits in the process while Run runs.
	shared *shared

	// rejected counts the requests refused, by the limit that refused them.
	rejected *prometheus.CounterVec
}

// New is a Limiter keeping its counters in rdb.
func New(rdb *redis.Client, limits Limits, opts Options) *Limiter {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	if opts.SignInOpTimeout <= 0 {
		opts.SignInOpTimeout = DefaultSignInOpTimeout
	}
	if limits.SyncInterval <= 0 {
		limits.SyncInterval = DefaultSyncInterval
	}
	l := &Limiter{
		rl:        redis_rate.NewLimiter(prefixed{rdb}),
		edge:      newLocal(limits.EdgeIP, limits.EdgeIPBurst, time.Second),
		limits:    limits,
		log:       opts.Log,
		opTimeout: opts.OpTimeout,

		signInOpTimeout: opts.SignInOpTimeout,
		fallback:        map[redis_rate.Limit]*local{},

		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_rate_limit_rejections_total",
			Help: "Requests answered 429 by a rate limit, by the limit that refused them: edge_ip (RATE_EDGE_IP), ip (RATE_IP), user (RATE_USER), auth_ip (RATE_AUTH_IP_PER_MIN) or auth_email (RATE_AUTH_EMAIL_PER_MIN).",
		}, []string{"limit"}),
	}
	for _, name := range limitNames {
		l.rejected.WithLabelValues(name)
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(l.rejected)
	}
	l.shared = newShared(rdb, l.rl, opts.OpTimeout, limits.SyncInterval, opts.Log, l.warn)
	return l
}

// Run reconciles the per-caller limits with Redis every Limits.SyncInterval until ctx ends;
// while it runs they are decided in the process (see shared). Without it every
// per-caller check asks Redis, as the sign-in limits do. It returns nil when ctx ends.
func (l *Limiter) Run(ctx context.Context) error {
	l.shared.Run(ctx)
	return nil
}

// PerAddress limits each client IP across everything it asks, and runs before any
// token is verified. Without it a request refused with 401 is never counted (the
// per-user limit needs a verified user), so forged or stale tokens could be sent as
// fast as the gateway can check signatures, and a token with an unknown key id sends
// the gateway to the users service's key set.
//
// It is kept in this process, not in Redis: it costs a map look-up, and it cannot be
// made to wait, neither by Redis being down nor by the flood it is there for
// (thousands of parallel checks would queue for Redis connections past their time
// limit). The price is that each replica counts on its own.
func (l *Limiter) PerAddress(next http.Handler) http.Handler {
	if l.edge == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [64]byte
		if !l.answer(w, r, LimitEdgeIP, l.edge.allow(append(append(buf[:0], "edge-ip:"...), clientIP(r)...), time.Now())) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// PerCaller limits each caller: the user whose verified token is in the request's
// context (auth.Verifier.Require must run first), else the client IP. Routes that do
// not verify tokens are therefore limited per IP, token or not.
func (l *Limiter) PerCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The key is built on the stack: a caller the process already limits is
		// looked up without allocating.
		var buf [64]byte
		key := buf[:0]
		var limit redis_rate.Limit
		name := LimitIP
		if p, ok := auth.FromContext(r.Context()); ok {
			key, limit, name = appendUUID(append(key, "user:"...), p.UserID), perSecond(l.limits.User, l.limits.UserBurst), LimitUser
		} else {
			key, limit = append(append(key, "ip:"...), clientIP(r)...), perSecond(l.limits.IP, l.limits.IPBurst)
		}
		switch {
		case limit.IsZero():
		case l.shared.running.Load():
			if !l.answer(w, r, name, l.shared.allow(r.Context(), key, limit)) {
				return
			}
		case !l.check(w, r, checkOf(name, string(key), limit)):
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SignIn is the tighter limit of log-in and sign-up, per client IP and per e-mail
// address (the "email" of the JSON body). It reads the body, which the router has
// already bounded, and gives it back unchanged to the handlers after it.
func (l *Limiter) SignIn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		email := ""
		if l.limits.AuthEmailPerMin > 0 {
			email = peekEmail(r)
		}
		if !l.check(w, r, l.signInChecks(r, email)...) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SignInAttempt counts one attempt to sign in as email from r's client against the
// same limits, and the same counters, as SignIn: a sign-in form elsewhere (the
// operations pages) must not double the guesses an address or an account gets. When
// the attempt is over a limit it reports false and how long to wait; the caller
// answers. Like every limit it is kept in the process while Redis fails.
func (l *Limiter) SignInAttempt(r *http.Request, email string) (retryAfter time.Duration, ok bool) {
	o, refusedBy := l.run(r.Context(), l.signInChecks(r, email)...)
	if refusedBy != "" {
		l.rejected.WithLabelValues(refusedBy).Inc()
		return max(time.Second, o.retryAfter), false
	}
	return 0, true
}

// signInChecks are the limits of one sign-in attempt as email ("" for none known).
// Addresses are compared without regard to case or surrounding space, as users does.
func (l *Limiter) signInChecks(r *http.Request, email string) []check {
	checks := []check{checkOf(LimitAuthIP, "auth-ip:"+clientIP(r), perMinute(l.limits.AuthIPPerMin))}
	if email = strings.ToLower(strings.TrimSpace(email)); email != "" {
		checks = append(checks, checkOf(LimitAuthEmail, "auth-email:"+hashed(email), perMinute(l.limits.AuthEmailPerMin)))
	}
	for i := range checks {
		checks[i].timeout = l.signInOpTimeout
	}
	return checks
}

type check struct {
	name    string // which limit, one of the Limit constants
	key     string
	limit   redis_rate.Limit
	timeout time.Duration // 0: the limiter's OpTimeout
}

func checkOf(name, key string, limit redis_rate.Limit) check {
	return check{name: name, key: key, limit: limit}
}

func perSecond(rate, burst int) redis_rate.Limit {
	if rate <= 0 || burst <= 0 {
		return redis_rate.Limit{}
	}
	return redis_rate.Limit{Rate: rate, Burst: burst, Period: time.Second}
}

func perMinute(rate int) redis_rate.Limit {
	if rate <= 0 {
		return redis_rate.Limit{}
	}
	return redis_rate.PerMinute(rate)
}

// check runs the checks in order, skipping those turned off, until one refuses; then
// it answers the 429 and reports false. The last result sets the RateLimit headers.
func (l *Limiter) check(w http.ResponseWriter, r *http.Request, checks ...check) bool {
	o, refusedBy := l.run(r.Context(), checks...)
	if o == nil {
		return true // every limit off
	}
	return l.answer(w, r, refusedBy, *o)
}

// outcome is a limit's verdict on a request.
type outcome struct {
	burst, remaining       int
	resetAfter, retryAfter time.Duration
	refused                bool
}

// answer sets the RateLimit headers of o and, when o refused the request, counts the
// refusal under limit (the limit o is the verdict of), answers the 429 and reports
// false.
func (l *Limiter) answer(w http.ResponseWriter, r *http.Request, limit string, o outcome) bool {
	// Set by their canonical keys, which Header.Set would work out (and allocate)
	// each time, and with the three values in one allocation.
	h := w.Header()
	v := make([]string, 3)
	v[0], v[1], v[2] = strconv.Itoa(o.burst), strconv.Itoa(o.remaining), strconv.Itoa(ceilSeconds(o.resetAfter))
	h[headerLimit], h[headerRemaining], h[headerReset] = v[0:1:1], v[1:2:2], v[2:3:3]
	if o.refused {
		l.rejected.WithLabelValues(limit).Inc()
		h.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(o.retryAfter))))
		problem.Write(w, r, l.log, apperr.E(apperr.RateLimited, "too many requests; retry later"))
		return false
	}
	return true
}

// run runs the checks in order, skipping those turned off, until one refuses. A check
// Redis fails is made against the same limit kept in this process. It returns the
// last outcome, nil when none ran, and the name of the limit that refused ("" when
// none did).
func (l *Limiter) run(ctx context.Context, checks ...check) (*outcome, string) {
	var last *outcome
	for _, c := range checks {
		if c.limit.IsZero() {
			continue
		}
		timeout := c.timeout
		if timeout <= 0 {
			timeout = l.opTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		res, err := l.rl.Allow(cctx, c.key, c.limit)
		cancel()
		var o outcome
		if err != nil {
			if ctx.Err() == nil {
				l.warn(ctx, err)
			}
			o = l.local(c.limit).allow([]byte(c.key), time.Now())
		} else {
			o = outcome{burst: res.Limit.Burst, remaining: res.Remaining,
				resetAfter: res.ResetAfter, retryAfter: res.RetryAfter, refused: res.Allowed == 0}
		}
		last = &o
		if o.refused {
			return last, c.name
		}
	}
	return last, ""
}

// local is the in-process stand-in for limit, made on first use.
func (l *Limiter) local(limit redis_rate.Limit) *local {
	l.fallbackMu.Lock()
	defer l.fallbackMu.Unlock()
	lim, ok := l.fallback[limit]
	if !ok {
		lim = newLocal(limit.Rate, limit.Burst, limit.Period)
		l.fallback[limit] = lim
	}
	return lim
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// warn logs a Redis failure, at most once every warnEvery.
func (l *Limiter) warn(ctx context.Context, err error) {
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(warnEvery) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.log.WarnContext(ctx, "rate limits kept in this process: redis failed; each replica counts on its own until it is back", "err", err)
}

// The RateLimit headers (draft-ietf-httpapi-ratelimit-headers), as net/http spells
// them on the wire.
var (
	headerLimit     = http.CanonicalHeaderKey("RateLimit-Limit")
	headerRemaining = http.CanonicalHeaderKey("RateLimit-Remaining")
	headerReset     = http.CanonicalHeaderKey("RateLimit-Reset")
)

// appendUUID appends id in its usual text form (what id.String() returns).
func appendUUID(b []byte, id uuid.UUID) []byte {
	const digits = "0123456789abcdef"
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[c>>4], digits[c&0xf])
	}
	return b
}

// clientIP is the TCP peer's address. X-Forwarded-For and the like are not trusted:
// anyone can send them.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// peekEmail is the "email" of a JSON body, or "". The body is put back as it was, an
// error in reading it included, for the handler after.
func peekEmail(r *http.Request) string {
	if r.Body == nil || r.Body == http.NoBody {
		return ""
	}
	buf, err := io.ReadAll(r.Body)
	rest := io.Reader(bytes.NewReader(buf))
	if err != nil {
		rest = io.MultiReader(rest, errReader{err})
	}
	r.Body = readCloser{rest, r.Body}
	if err != nil {
		return ""
	}
	var body struct {
		Email string `json:"email"`
	}
	if json.Unmarshal(buf, &body) != nil {
		return ""
	}
	return body.Email
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// readCloser reads the restored body and closes the original one.
type readCloser struct {
	io.Reader
	io.Closer
}

// hashed keeps e-mail addresses out of Redis keys.
func hashed(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// libPrefix is what redis_rate puts before every key; prefixed swaps it for KeyPrefix.
const libPrefix = "rate:"

// prefixed is the Redis client as redis_rate sees it, with the keys it names moved
// under KeyPrefix.
type prefixed struct{ *redis.Client }

func rekey(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = KeyPrefix + strings.TrimPrefix(k, libPrefix)
	}
	return out
}

func (p prefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.Client.Eval(ctx, script, rekey(keys), args...)
}

func (p prefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalSha(ctx, sha1, rekey(keys), args...)
}

func (p prefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalRO(ctx, script, rekey(keys), args...)
}

func (p prefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalShaRO(ctx, sha1, rekey(keys), args...)
}

func (p prefixed) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return p.Client.Del(ctx, rekey(keys)...)
}
