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
// catalogue's, however it is read. A page of a search (a q that is not empty) is never
// kept, nor looked up: every search string would otherwise make a copy of its own,
// and a client could fill Redis by making them up; searches are answered by the
// service (MISS) and counted as uncached. Every copy expires after the TTL, a safety
// net for an event the gateway never sees. Every answer says where it came from in
// X-Cache: HIT or MISS.
//
// # ETags and conditional reads
//
// Every 200 answer carries a strong ETag, the SHA-256 of its body (httpserver.ETag),
// kept with the copy and computed for a MISS too, which is why an answer is held
// until it is whole before it is sent (one over MaxBody is let through untagged). A
// request whose If-None-Match matches the answer it would get is answered 304 Not
// Modified, with the ETag and no body, from a copy or after asking the upstream
// alike. The tag is of the bytes, so every replica gives the same one, and a change
// to the product (its stock, its updated_at) gives a new one.
//
// # Coalescing
//
// Requests for a copy that is not kept wait for one request to the upstream instead
// of each making its own: the first of them asks (a "miss"), the others arriving
// while it does ("shared") are given its answer once it has been kept. So a crowd
// reading a cold product costs inventory one request per gateway process. Only an
// answer that may be kept is shared; after an error, or an answer that may not be
// kept, each waiting request asks for itself, as it would have without coalescing,
// and gets its own answer (a problem names its own request). The upstream request
// is not cancelled when its client leaves, since others may be waiting for it; the
// proxy's UPSTREAM_TIMEOUT bounds it. A request whose client leaves while it waits
// stops waiting. A flight that brought an answer stays findable for a moment after
// it has landed (flightLinger), for the requests that looked up just before the copy
// was kept.
//
// The lookups in Redis are shared too (sharedLookup): a crowd reading one product
// would otherwise make one lookup each, and past the pool's connections they wait,
// time out and turn the cache off for a second, sending the crowd to inventory. A
// request shares only a lookup sent after it arrived (one under way may have read the
// generation before a change's event), so one that finds a lookup under way waits for
// the next, sent when that one is done for every request that came meanwhile: a
// crowd costs Redis about two lookups.
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
// stale stock for a whole TTL.) A copy is also written only while its generation is
// still the counter's (in one script), so a late stale answer does not write over a
// fresh copy either. The counters have no TTL: there is one per product that ever
// changed, and one for the lists.
//
// Coalescing keeps this: requests share an upstream request only when they read the
// same generation. A request that begins after a change's event was handled reads
// the new generation, so it never waits for a request that began before the change,
// and never gets that request's answer; it asks the upstream (or shares a request
// that, like it, began after the event). Requests that began before the event may
// get the answer from before the change, which is what they would have got a moment
// earlier without a cache; it is never kept as current, nor given to anyone later.
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
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
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

// Options tune a Cache.
type Options struct {
	// TTL is how long a copy lives at most (PRODUCT_CACHE_TTL). It must be positive.
	TTL time.Duration
	// OpTimeout bounds each Redis call made while a client waits; default
	// DefaultOpTimeout. A cache that waits is slower than none. go-redis honours the
	// limit fully only on a client made with redisclient.OpenBounded.
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

	mu sync.Mutex
	// flights are the requests to the upstream under way, by slot key and generation.
	flights map[string]*flight
	// batches are the lookups in Redis under way, and those waiting to be sent, by
	// slot key.
	batches map[string]*slotLookups
	// waiting, when set (by tests), is called when a request begins to wait for a
	// shared lookup.
	waiting func()
}

// New is a cache in the Redis rdb talks to.
func New(rdb *redis.Client, opts Options) *Cache {
	c := &Cache{rdb: rdb, ttl: opts.TTL, opTimeout: opts.OpTimeout, log: opts.Log, flights: map[string]*flight{}, batches: map[string]*slotLookups{}}
	if c.opTimeout <= 0 {
		c.opTimeout = DefaultOpTimeout
	}
	c.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_product_cache_lookups_total",
		Help: "Product cache lookups by kind (product, list) and result: hit, miss (asked the upstream), shared (waited for another request's miss of the same copy), uncached (a search, or a list cursor no kept page handed out), error (Redis failed) or bypassed (skipped after a failure).",
	}, []string{"kind", "result"})
	// Every kind and result is exported from the start, at zero: the hit ratio is a
	// query over this counter (hits over all lookups), and a rate over a series that
	// appears with its first lookup misses that lookup.
	for kind, results := range lookupResults {
		for _, result := range results {
			c.lookups.WithLabelValues(kind, result)
		}
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(c.lookups)
	}
	return c
}

// lookupResults are the results a lookup of each kind can be counted under: a search,
// or a list cursor no kept page handed out, is uncached; a product is always kept.
var lookupResults = map[string][]string{
	"product": {"hit", "miss", "shared", "error", "bypassed"},
	"list":    {"hit", "miss", "shared", "uncached", "error", "bypassed"},
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
// these alone, and only when searchParam is not among them.
var ListParams = []string{"cursor", "limit", searchParam}

// searchParam is the list's search (q): a page asked with it is never kept.
const searchParam = "q"

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
			f.Add(name, "is not a parameter of this list (it takes "+strings.Join(ListParams, ", ")+")")
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
// the cache or next, whether or not Redis is up. A search (a q that is not empty) is
// passed to next without asking Redis, counted as uncached, and not kept.
func (c *Cache) List(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		canonical, err := listQuery(r.URL.RawQuery)
		if err != nil {
			w.Header().Set(Header, Miss)
			problem.Write(w, r, c.log, err)
			return
		}
		if isSearch(canonical) {
			// Any text makes a search, so keeping them would let clients fill
			// Redis with a copy per string. Not even looked up: there is nothing
			// to find, and Redis is spared a round trip.
			w.Header().Set(Header, Miss)
			c.lookups.WithLabelValues("list", "uncached").Inc()
			passThrough(w, r, next)
			return
		}
		c.serve(w, r, listSlot(canonical), next)
	})
}

// isSearch reports whether a canonical list query (listQuery) asks for a search. Any
// q the canonical form keeps is one, blank ones included: whether "  " means none is
// the service's to say, and asking it costs only the copy a blank search would have
// shared with the whole list.
func isSearch(canonical string) bool {
	q, _ := url.ParseQuery(canonical) // canonical: made by listQuery
	return q.Get(searchParam) != ""
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
	etag        string // of body (httpserver.ETag)
	body        []byte
}

// flight is one request to the upstream for the copy of a slot at one generation.
// The requests for the same copy that arrive while it is under way wait for it and
// are given its answer instead of asking the upstream themselves (coalescing).
type flight struct {
	done chan struct{} // closed once shared is set, or will never be
	// shared is the answer for the waiting requests: one that may be kept; nil when
	// the request brought nothing that may be shared (an error, say).
	shared *entry
}

// flightLinger is how long a flight that brought an answer to share stays findable
// after it has landed. A request that looked the slot up just before the copy was
// kept, and so missed it, may reach the flights just after the flight landed: it is
// given the same answer rather than asking the upstream again. That is as right as
// joining the flight in time: it read the same generation.
const flightLinger = time.Second

// statusClientClosedRequest is what a request that stopped waiting for a flight
// because its client left is counted as, as the proxy does (nginx's 499).
const statusClientClosedRequest = 499

func (c *Cache) serve(w http.ResponseWriter, r *http.Request, s slot, next http.Handler) {
	w.Header().Set(Header, Miss)
	if time.Now().UnixNano() < c.downUntil.Load() {
		c.lookups.WithLabelValues(s.kind, "bypassed").Inc()
		passThrough(w, r, next)
		return
	}
	res := c.sharedLookup(r.Context(), s)
	if r.Context().Err() != nil {
		w.WriteHeader(statusClientClosedRequest) // the client left while it waited
		return
	}
	e, gen, hit, known, err := res.e, res.gen, res.hit, res.known, res.err
	switch {
	case err != nil:
		c.lookups.WithLabelValues(s.kind, "error").Inc()
		passThrough(w, r, next)
		return
	case hit:
		c.lookups.WithLabelValues(s.kind, "hit").Inc()
		send(w, r, e, Hit)
		return
	case !known:
		// A cursor no kept page handed out: answered, never kept.
		c.lookups.WithLabelValues(s.kind, "uncached").Inc()
		passThrough(w, r, next)
		return
	}

	// A miss. One request per copy and generation goes to the upstream; the others
	// for the same copy wait for its answer. The generation is part of what they
	// share: a request that looked the slot up after a change's event was handled has
	// read the new generation, so it never joins a request that began before the
	// change, and never gets its answer.
	key := s.key + "@" + strconv.FormatInt(gen, 10)
	c.mu.Lock()
	if f, ok := c.flights[key]; ok {
		c.mu.Unlock()
		c.lookups.WithLabelValues(s.kind, "shared").Inc()
		select {
		case <-f.done:
		case <-r.Context().Done():
			w.WriteHeader(statusClientClosedRequest)
			return
		}
		if f.shared != nil {
			send(w, r, *f.shared, Miss)
			return
		}
		// Nothing to share: each waiting request asks for itself, as it would have
		// without coalescing, and gets its own answer (a problem names its request).
		passThrough(w, r, next)
		return
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()
	c.lookups.WithLabelValues(s.kind, "miss").Inc()
	c.lead(w, r, s, gen, next, key, f)
}

// lead asks next for slot s's copy at generation gen, for its own client and for the
// requests waiting on f (filed under key): it keeps the answer when it may be kept,
// shares it, and answers its own client. The flight ends once the answer is kept (so
// that a request arriving after that finds the copy) and before this client is
// written to (so that a slow client delays nobody else), or when next panics (the
// proxy aborts an answer cut off on its way), which then goes on.
func (c *Cache) lead(w http.ResponseWriter, r *http.Request, s slot, gen int64, next http.Handler, key string, f *flight) {
	landed := false
	land := func() {
		landed = true
		close(f.done)
		if f.shared != nil {
			time.AfterFunc(flightLinger, func() { c.forget(key, f) })
			return
		}
		c.forget(key, f)
	}
	defer func() {
		if !landed {
			land()
		}
	}()
	// The upstream request is not cancelled when this client leaves: others may be
	// waiting for its answer. The proxy bounds it by UPSTREAM_TIMEOUT all the same.
	cp := newCapture(w)
	next.ServeHTTP(cp, r.WithContext(context.WithoutCancel(r.Context())))
	if cp.keepable() {
		e := entry{gen: gen, contentType: cp.header.Get("Content-Type"), etag: httpserver.ETag(cp.body.Bytes()), body: cp.body.Bytes()}
		// Kept before the flight lands and before this client has its answer, so
		// that by the time any client has the end of this MISS, the next read is a
		// HIT. It costs the MISS one round trip to Redis.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.opTimeout)
		if err := c.store(ctx, s, e); err != nil {
			c.failed(r.Context(), "product cache not written", err)
		}
		cancel()
		f.shared = &e
	}
	land()
	cp.send(w, r)
}

// forget removes flight f, filed under key.
func (c *Cache) forget(key string, f *flight) {
	c.mu.Lock()
	if c.flights[key] == f {
		delete(c.flights, key)
	}
	c.mu.Unlock()
}

// passThrough answers r with next as it answers, an ETag added to a 200.
func passThrough(w http.ResponseWriter, r *http.Request, next http.Handler) {
	cp := newCapture(w)
	next.ServeHTTP(cp, r)
	cp.send(w, r)
}

// send answers r with a kept or shared copy, or 304 Not Modified when r already has
// it (If-None-Match). xcache says where it came from.
func send(w http.ResponseWriter, r *http.Request, e entry, xcache string) {
	h := w.Header()
	h.Set(Header, xcache)
	h.Set("ETag", e.etag)
	if httpserver.NoneMatch(r, e.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if e.contentType != "" {
		h.Set("Content-Type", e.contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(e.body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.body)
}

// failed logs a Redis failure and leaves the cache out for bypassFor.
func (c *Cache) failed(ctx context.Context, msg string, err error) {
	c.downUntil.Store(time.Now().Add(bypassFor).UnixNano())
	c.log.WarnContext(ctx, msg, "err", err, "bypass_for", bypassFor.String())
}

// lookupResult is what lookup found.
type lookupResult struct {
	e          entry
	gen        int64
	hit, known bool
	err        error
}

// batch is one lookup of a slot that requests share.
type batch struct {
	done chan struct{} // closed once res is set
	res  lookupResult
}

// slotLookups are a slot's shared lookups: the one under way, and the next, which
// collects the requests that arrive meanwhile and is sent when the first is done.
type slotLookups struct {
	running, next *batch
}

// sharedLookup is lookup(s) for r, shared with the other requests for the same slot,
// so that a crowd reading one product costs Redis a lookup or two rather than one
// each (which, past the pool's connections, would time out, and turn the cache off
// for everyone). A request shares only a lookup sent after it arrived: one already
// under way may have read the generation before a change's event was handled, and
// this request may have begun after it. So a request that finds a lookup under way
// waits for the next one, which is sent when that one is done, for every request
// that came meanwhile.
func (c *Cache) sharedLookup(ctx context.Context, s slot) lookupResult {
	c.mu.Lock()
	st := c.batches[s.key]
	if st == nil {
		st = &slotLookups{}
		c.batches[s.key] = st
	}
	if st.running == nil {
		b := &batch{done: make(chan struct{})}
		st.running = b
		c.mu.Unlock()
		return c.runLookup(ctx, s, st, b)
	}
	b, lead := st.next, false
	if b == nil {
		b, lead = &batch{done: make(chan struct{})}, true
		st.next = b
	}
	running := st.running
	c.mu.Unlock()
	if c.waiting != nil {
		c.waiting()
	}
	if lead {
		// Sent for everyone waiting on b, so not given up when this client leaves;
		// the lookup under way is bounded by opTimeout.
		<-running.done
		return c.runLookup(ctx, s, st, b)
	}
	select {
	case <-b.done:
		return b.res
	case <-ctx.Done():
		return lookupResult{err: ctx.Err()}
	}
}

// runLookup makes b's lookup of slot s (of st) and shares its result. The next batch,
// if any, becomes the one under way: its first request sends it.
func (c *Cache) runLookup(ctx context.Context, s slot, st *slotLookups, b *batch) lookupResult {
	var res lookupResult
	res.e, res.gen, res.hit, res.known, res.err = c.lookup(context.WithoutCancel(ctx), s)
	if res.err != nil {
		c.failed(ctx, "product cache unavailable; passing through", res.err)
	}
	c.mu.Lock()
	b.res = res
	close(b.done)
	st.running, st.next = st.next, nil
	if st.running == nil {
		delete(c.batches, s.key)
	}
	c.mu.Unlock()
	return res
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
		entryCmd = p.HMGet(ctx, s.key, "gen", "content_type", "body", "etag")
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
	if len(v) != 4 || v[0] == nil || v[2] == nil {
		return entry{}, gen, false, known, nil
	}
	stored, _ := v[0].(string)
	if g, perr := strconv.ParseInt(stored, 10, 64); perr != nil || g != gen {
		return entry{}, gen, false, known, nil // filed before the last drop: stale
	}
	ct, _ := v[1].(string)
	body, _ := v[2].(string)
	etag, _ := v[3].(string)
	if etag == "" {
		etag = httpserver.ETag([]byte(body)) // kept by a gateway from before ETags
	}
	return entry{gen: gen, contentType: ct, etag: etag, body: []byte(body)}, gen, true, known, nil
}

// storeScript keeps a copy (KEYS[1]) filed under generation ARGV[1], but only while
// that is still its generation counter's (KEYS[2]) value: a copy fetched before a
// drop is not written over one fetched after it. It also remembers the page's
// next_cursor (ARGV[6], "" for none) in the set KEYS[3]. Both expire after ARGV[5]
// milliseconds. It returns 1 when it kept the copy, 0 when the copy was stale.
var storeScript = redis.NewScript(`
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'content_type', ARGV[2], 'etag', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return 1
`)

// store keeps e in slot s unless a drop has made it stale since it was fetched.
func (c *Cache) store(ctx context.Context, s slot, e entry) error {
	next := ""
	if s.kind == "list" {
		next = nextCursor(e.body)
	}
	return storeScript.Run(ctx, c.rdb, []string{s.key, s.gen, cursorsKey},
		strconv.FormatInt(e.gen, 10), e.contentType, e.etag, e.body, c.ttl.Milliseconds(), next).Err()
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

// capture holds next's answer until it is whole, so that its ETag (of the whole body)
// can head it and it can be kept and shared. An answer that grows past MaxBody is let
// through to the client from then on instead, and is neither tagged nor kept.
type capture struct {
	w        http.ResponseWriter // the client's
	header   http.Header
	status   int
	body     bytes.Buffer
	streamed bool // past MaxBody: the header and body go on to w
}

func newCapture(w http.ResponseWriter) *capture {
	return &capture{w: w, header: http.Header{}}
}

func (c *capture) Header() http.Header {
	if c.streamed {
		return c.w.Header()
	}
	return c.header
}

func (c *capture) WriteHeader(code int) {
	if code < 200 {
		return // an informational answer (103 Early Hints) is not worth passing on
	}
	if c.status == 0 {
		c.status = code
	}
}

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if !c.streamed && c.body.Len()+len(b) > MaxBody {
		c.stream()
	}
	if c.streamed {
		return c.w.Write(b)
	}
	return c.body.Write(b)
}

// FlushError holds the answer until it is whole, unless it is already let through;
// the proxy flushes an answer of unknown length after every read.
func (c *capture) FlushError() error {
	if c.streamed {
		return http.NewResponseController(c.w).Flush()
	}
	return nil
}

// stream sends what has been held and lets the rest through.
func (c *capture) stream() {
	c.streamed = true
	h := c.w.Header()
	for k, v := range c.header {
		h[k] = v
	}
	c.w.WriteHeader(c.status)
	_, _ = c.w.Write(c.body.Bytes()) // a failure shows again in the next write
	c.body = bytes.Buffer{}
}

// send answers the client with what was held, with every header next set: a 200
// tagged with its ETag, or 304 Not Modified when r already has it.
func (c *capture) send(w http.ResponseWriter, r *http.Request) {
	if c.streamed {
		return
	}
	h := w.Header()
	for k, v := range c.header {
		h[k] = v
	}
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.status == http.StatusOK {
		etag := httpserver.ETag(c.body.Bytes())
		h.Set("ETag", etag)
		if httpserver.NoneMatch(r, etag) {
			h.Del("Content-Type")
			h.Del("Content-Length")
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if c.status != http.StatusNoContent && c.status != http.StatusNotModified {
		h.Set("Content-Length", strconv.Itoa(c.body.Len()))
	}
	w.WriteHeader(c.status)
	_, _ = w.Write(c.body.Bytes())
}

// keepable reports whether the answer may be kept and shared: a whole 200 that says
// nothing against it. (An answer cut off on its way, say by an upstream that died,
// never gets here: the proxy aborts the request.)
func (c *capture) keepable() bool {
	h := c.header
	if c.streamed || c.status != http.StatusOK || h.Get("Content-Encoding") != "" || h.Get("Set-Cookie") != "" {
		return false
	}
	cc := strings.ToLower(strings.Join(h.Values("Cache-Control"), ","))
	return !strings.Contains(cc, "no-store") && !strings.Contains(cc, "private")
}
