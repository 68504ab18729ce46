// Package productcache keeps copies of the inventory service's answers to product reads
// (GET /api/v1/products/{id} and the pages of GET /api/v1/products) in Redis, and
// drops them when an inventory event says they have changed (invalidate.go).
//
// # What is kept
//
// Only an upstream's 200 answers, with their Content-Type, and only when they are
// under 1 MiB, not compressed and not marked no-store or private. A product is kept
// under its id (in canonical form, so that the id an event names finds it), a list
// page under a hash of its query in canonical form: the parameters the API defines
// (ListParams), each once, in a fixed order, empty ones left out. A list query with
// any other parameter is refused (422) before the cache or the service is asked, so
// that junk parameters cannot each make a copy of a page. A page after the first is
// kept only when its cursor is one a kept page handed out (its next_cursor): cursors
// are opaque but not secret, and a client crafting a new valid one for every request
// would otherwise make a copy per request. So the pages kept are at most the
// catalogue's, however it is read. Every copy expires after the TTL, a safety net for
// an event the gateway never sees. Every answer says where it came from in X-Cache:
// HIT or MISS.
//
// # Dropping, and the race it must not lose
//
// A copy is filed under a generation: one counter per product, one for all list pages.
// Dropping a product (Forget) increments its counter and deletes its copy; dropping
// the list pages increments theirs, which makes every page stale at once (the old
// copies expire by TTL). A lookup reads the counter with the copy and takes the copy
// only if its generation is current. That closes the classic read-through race: a
// read that fetched the product just before a change, and stores its answer just
// after the change's event was handled, stores it under the old generation, so the
// stale answer is never served. (Deleting a key alone would lose that race and serve
// stale stock for a whole TTL.) The counters have no TTL: there is one per product
// that ever changed, and one for the lists.
//
// # Redis down
//
// The cache is an optimisation, never a dependency: every Redis call is bounded by a
// short time limit, and when one fails the request is proxied as if nothing were
// cached (X-Cache: MISS) and nothing is stored. After a failure the cache stays out
// of the way for a second, so that requests during an outage do not each wait for
// Redis before going on.
package productcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// Header is the response header that says whether the answer came from the cache.
const Header = "X-Cache"

// The values of Header.
const (
	Hit  = "HIT"
	Miss = "MISS"
)

// keyPrefix begins every key the cache writes.
const keyPrefix = "gateway:products:"

// MaxBody is the largest answer the cache keeps; a bigger one is passed through.
const MaxBody = 1 << 20

// DefaultOpTimeout bounds each Redis call made while a client waits.
const DefaultOpTimeout = 250 * time.Millisecond

// bypassFor is how long the cache is left out after a Redis failure.
const bypassFor = time.Second

// Open is a Redis client for the cache at url (redis://[user:password@]host:port/db).
// It is not pkg/redisclient's: a call gives up at its context's deadline (without
// ContextTimeoutEnabled go-redis waits for its read timeout instead), its timeouts
// are short, and a refused connection is not dialled again within the same call.
func Open(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	opt.ContextTimeoutEnabled = true
	opt.DialTimeout = time.Second
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	opt.DialerRetries = 1
	return redis.NewClient(opt), nil
}

// Options tune a Cache.
type Options struct {
	// TTL is how long a copy lives at most (PRODUCT_CACHE_TTL). It must be positive.
	TTL time.Duration
	// OpTimeout bounds each Redis call made while a client waits; default
	// DefaultOpTimeout. A cache that waits is slower than none. go-redis honours the
	// limit fully only on a client made with Open.
	OpTimeout time.Duration
	// Log receives Redis failures. It is required.
	Log *slog.Logger
	// Registerer, when set, gets the cache's lookup counter.
	Registerer prometheus.Registerer
}

// Cache is the product read cache. Its methods are safe for concurrent use.
type Cache struct {
	rdb       *redis.Client
	ttl       time.Duration
	opTimeout time.Duration
	log       *slog.Logger
	lookups   *prometheus.CounterVec
	// downUntil is when, in Unix nanoseconds, the cache is used again after a Redis
	// failure.
	downUntil atomic.Int64
}

// New is a cache in the Redis rdb talks to.
func New(rdb *redis.Client, opts Options) *Cache {
	c := &Cache{rdb: rdb, ttl: opts.TTL, opTimeout: opts.OpTimeout, log: opts.Log}
	if c.opTimeout <= 0 {
		c.opTimeout = DefaultOpTimeout
	}
	c.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_product_cache_lookups_total",
		Help: "Product cache lookups by kind (product, list) and result: hit, miss, uncached (a list cursor no kept page handed out), error (Redis failed) or bypassed (skipped after a failure).",
	}, []string{"kind", "result"})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(c.lookups)
	}
	return c
}

// slot is where one answer is kept: its key, and the key of the generation counter
// it is filed under; for a list page after the first, the cursor it was asked with.
type slot struct {
	kind, key, gen string
	cursor         string
}

// cursorsKey is the set of the cursors kept list pages handed out (next_cursor): the
// only ones whose pages are kept. It expires with the pages, a TTL after the last one
// was stored, and is bounded by the catalogue (a cursor names a position in it).
const cursorsKey = keyPrefix + "cursors"

func productSlot(id uuid.UUID) slot {
	k := keyPrefix + "product:" + id.String()
	return slot{kind: "product", key: k, gen: k + ":gen"}
}

// ListParams are the query parameters of GET /api/v1/products, as docs/openapi.yaml
// defines them (a test holds the two together), sorted. A list page is kept under
// these alone.
var ListParams = []string{"cursor", "limit"}

// listGen is the generation of every list page.
const listGen = keyPrefix + "list:gen"

// listSlot is where the page of the canonical query (listQuery) is kept. Hashing
// bounds the key's length whatever the query.
func listSlot(canonical string) slot {
	sum := sha256.Sum256([]byte(canonical))
	q, _ := url.ParseQuery(canonical) // canonical: made by listQuery
	return slot{kind: "list", key: keyPrefix + "list:" + hex.EncodeToString(sum[:]), gen: listGen, cursor: q.Get("cursor")}
}

// listQuery is the canonical form of a list's raw query: its ListParams, each once, in
// a fixed order (url.Values.Encode sorts them), escaped one way, and an empty value
// left out, as the service reads it as absent. So ?limit=5&cursor=x, ?cursor=x&limit=5
// and ?cursor=%78&limit=5 are one page with one copy, and nothing else reaches the
// key. It fails with apperr.Malformed for a query that does not parse, and with
// apperr.Invalid naming every parameter the API does not define and every one given
// more than once (which of two values the service would read is not for the gateway
// to guess).
func listQuery(raw string) (string, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "", apperr.E(apperr.Malformed, "the query string cannot be parsed")
	}
	var f apperr.Fields
	for _, name := range slices.Sorted(maps.Keys(q)) {
		switch {
		case !slices.Contains(ListParams, name):
			f.Add(name, "is not a parameter of this list (it takes "+strings.Join(ListParams, " and ")+")")
		case len(q[name]) > 1:
			f.Add(name, "is given more than once")
		}
	}
	if err := f.Err(); err != nil {
		return "", err
	}
	canonical := url.Values{}
	for _, name := range ListParams {
		if v := q.Get(name); v != "" {
			canonical.Set(name, v)
		}
	}
	return canonical.Encode(), nil
}

// Product serves GET /api/v1/products/{id} through the cache, with next (the
// inventory proxy) behind it; the id is the route's "id" path value. An id that is
// not a UUID is passed through uncached: the service answers it (with a 404).
func (c *Cache) Product(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.PathValue("id"))
		if err != nil {
			w.Header().Set(Header, Miss)
			next.ServeHTTP(w, r)
			return
		}
		c.serve(w, r, productSlot(id), next)
	})
}

// List serves GET /api/v1/products (a page of the catalogue) through the cache, one
// copy per canonical query, with next (the inventory proxy) behind it; the request is
// forwarded as it came. A query with a parameter the API does not define, or one
// given twice, is a 422 problem, and one that does not parse a 400; neither reaches
// the cache or next, whether or not Redis is up.
func (c *Cache) List(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		canonical, err := listQuery(r.URL.RawQuery)
		if err != nil {
			w.Header().Set(Header, Miss)
			problem.Write(w, r, c.log, err)
			return
		}
		c.serve(w, r, listSlot(canonical), next)
	})
}

// Forget drops the copies of the products ids and every list page, so that the next
// read of any of them asks the inventory service. Dropping is idempotent. It fails
// only when Redis does.
func (c *Cache) Forget(ctx context.Context, ids ...uuid.UUID) error {
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			s := productSlot(id)
			p.Incr(ctx, s.gen)
			p.Del(ctx, s.key)
		}
		p.Incr(ctx, listGen)
		return nil
	})
	return err
}

// entry is a kept answer.
type entry struct {
	gen         int64
	contentType string
	body        []byte
}

func (c *Cache) serve(w http.ResponseWriter, r *http.Request, s slot, next http.Handler) {
	if time.Now().UnixNano() < c.downUntil.Load() {
		c.lookups.WithLabelValues(s.kind, "bypassed").Inc()
		w.Header().Set(Header, Miss)
		next.ServeHTTP(w, r)
		return
	}
	e, gen, hit, known, err := c.lookup(r.Context(), s)
	switch {
	case err != nil:
		c.lookups.WithLabelValues(s.kind, "error").Inc()
		c.failed(r.Context(), "product cache unavailable; passing through", err)
		w.Header().Set(Header, Miss)
		next.ServeHTTP(w, r)
		return
	case hit:
		c.lookups.WithLabelValues(s.kind, "hit").Inc()
		h := w.Header()
		h.Set(Header, Hit)
		if e.contentType != "" {
			h.Set("Content-Type", e.contentType)
		}
		h.Set("Content-Length", strconv.Itoa(len(e.body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(e.body)
		return
	case !known:
		// A cursor no kept page handed out: answered, never kept.
		c.lookups.WithLabelValues(s.kind, "uncached").Inc()
		w.Header().Set(Header, Miss)
		next.ServeHTTP(w, r)
		return
	}
	c.lookups.WithLabelValues(s.kind, "miss").Inc()
	w.Header().Set(Header, Miss)
	rec := &recorder{ResponseWriter: w}
	next.ServeHTTP(rec, r)
	if !rec.keepable() {
		return
	}
	// Stored before the handler returns, so that by the time the client has the end
	// of a MISS, its next read is a HIT. It costs the MISS one round trip to Redis.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.opTimeout)
	defer cancel()
	if err := c.store(ctx, s, entry{gen: gen, contentType: rec.Header().Get("Content-Type"), body: rec.body.Bytes()}); err != nil {
		c.failed(r.Context(), "product cache not written", err)
	}
}

// failed logs a Redis failure and leaves the cache out for bypassFor.
func (c *Cache) failed(ctx context.Context, msg string, err error) {
	c.downUntil.Store(time.Now().Add(bypassFor).UnixNano())
	c.log.WarnContext(ctx, msg, "err", err, "bypass_for", bypassFor.String())
}

// lookup reads slot s: its copy when it is current (hit), and the generation to file
// a new copy under otherwise; known says whether s may be kept at all (a list page
// asked with a cursor no kept page handed out may not).
func (c *Cache) lookup(ctx context.Context, s slot) (e entry, gen int64, hit, known bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	var genCmd *redis.StringCmd
	var entryCmd *redis.SliceCmd
	var cursorCmd *redis.BoolCmd
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		genCmd = p.Get(ctx, s.gen)
		entryCmd = p.HMGet(ctx, s.key, "gen", "content_type", "body")
		if s.cursor != "" {
			cursorCmd = p.SIsMember(ctx, cursorsKey, s.cursor)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return entry{}, 0, false, false, err
	}
	known = cursorCmd == nil || cursorCmd.Val()
	gen, err = genCmd.Int64()
	if errors.Is(err, redis.Nil) {
		gen, err = 0, nil // never dropped
	}
	if err != nil {
		return entry{}, 0, false, false, err
	}
	v := entryCmd.Val()
	if len(v) != 3 || v[0] == nil || v[2] == nil {
		return entry{}, gen, false, known, nil
	}
	stored, _ := v[0].(string)
	if g, perr := strconv.ParseInt(stored, 10, 64); perr != nil || g != gen {
		return entry{}, gen, false, known, nil // filed before the last drop: stale
	}
	ct, _ := v[1].(string)
	body, _ := v[2].(string)
	return entry{gen: gen, contentType: ct, body: []byte(body)}, gen, true, known, nil
}

func (c *Cache) store(ctx context.Context, s slot, e entry) error {
	next := ""
	if s.kind == "list" {
		next = nextCursor(e.body)
	}
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.key, "gen", e.gen, "content_type", e.contentType, "body", e.body)
		p.PExpire(ctx, s.key, c.ttl)
		if next != "" {
			p.SAdd(ctx, cursorsKey, next)
			p.PExpire(ctx, cursorsKey, c.ttl)
		}
		return nil
	})
	return err
}

// nextCursor is a list page's next_cursor, "" when it has none or is not a page.
func nextCursor(body []byte) string {
	var page struct {
		NextCursor *string `json:"next_cursor"`
	}
	if json.Unmarshal(body, &page) != nil || page.NextCursor == nil {
		return ""
	}
	return *page.NextCursor
}

// recorder passes an answer through to the client and keeps a copy of it.
type recorder struct {
	http.ResponseWriter
	status   int
	body     bytes.Buffer
	overflow bool // over MaxBody: not kept
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if !r.overflow {
		if r.body.Len()+len(b) > MaxBody {
			r.overflow = true
			r.body = bytes.Buffer{}
		} else {
			r.body.Write(b)
		}
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// keepable reports whether the answer may be kept: a whole 200 that says nothing
// against it. (An answer cut off on its way, say by an upstream that died, never gets
// here: the proxy aborts the request.)
func (r *recorder) keepable() bool {
	h := r.Header()
	if r.status != http.StatusOK || r.overflow || h.Get("Content-Encoding") != "" || h.Get("Set-Cookie") != "" {
		return false
	}
	cc := strings.ToLower(strings.Join(h.Values("Cache-Control"), ","))
	return !strings.Contains(cc, "no-store") && !strings.Contains(cc, "private")
}
