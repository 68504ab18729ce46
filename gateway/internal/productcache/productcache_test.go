package productcache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/gateway/internal/productcache"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

// upstream stands in for the inventory service: its answer to each request is
// whatever answer returns, and it counts the requests per path.
type upstream struct {
	mu     sync.Mutex
	calls  map[string]int
	answer func(w http.ResponseWriter, r *http.Request, n int)
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.calls[r.URL.RequestURI()]++
	n := u.calls[r.URL.RequestURI()]
	u.mu.Unlock()
	u.answer(w, r, n)
}

func (u *upstream) count(uri string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[uri]
}

// product answers the n-th read of a path with a body that says n.
func product(w http.ResponseWriter, r *http.Request, n int) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"path":%q,"read":%d}`, r.URL.RequestURI(), n)
}

// listing answers like product, and a page asked without a cursor hands out the
// cursor "abc" (next_cursor), as the inventory service's first page does.
func listing(w http.ResponseWriter, r *http.Request, n int) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, listRead(r.URL.RequestURI(), n))
}

func listRead(uri string, n int) string {
	if strings.Contains(uri, "cursor=") && !strings.Contains(uri, "cursor=&") && !strings.HasSuffix(uri, "cursor=") {
		return read(uri, n)
	}
	return fmt.Sprintf(`{"path":%q,"read":%d,"next_cursor":"abc"}`, uri, n)
}

// openRedis is a client as the gateway makes the cache's.
func openRedis(t *testing.T, url string) *redis.Client {
	t.Helper()
	// The gateway's client gives up at a call's deadline and after a second at most;
	// here the second goes, so that only the cache's OpTimeout bounds a call (the
	// fixture's 10s, or the 250ms a test of that bound sets).
	rdb, err := redisclient.OpenBounded(url, func(o *redis.Options) {
		o.ReadTimeout, o.WriteTimeout = 10*time.Second, 10*time.Second
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

type fixture struct {
	cache *productcache.Cache
	reg   *prometheus.Registry // the cache's metrics
	rdb   *redis.Client        // the cache's
	// events is the client the invalidator reads with, as in the gateway: one
	// without the cache's short time limits, since its reads block.
	events *redis.Client
	up     *upstream
	url    string
}

func newFixture(t *testing.T, redisURL string, answer func(http.ResponseWriter, *http.Request, int), tune ...func(*productcache.Options)) *fixture {
	t.Helper()
	rdb := openRedis(t, redisURL)
	log, err := logging.New(t.Output(), "debug", "gateway")
	if err != nil {
		t.Fatal(err)
	}
	events, err := redisclient.Open(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	reg := prometheus.NewRegistry()
	// A Redis call may take longer than the cache's 250 ms bound on a loaded machine
	// (make test's race detector, other packages' tests), and a lookup that times out
	// passes through: a MISS where a test wants a HIT, or a reader that does not
	// share. Only the tests about that bound set it (TestAHungRedisCostsAtMostTheTimeLimit).
	opts := productcache.Options{TTL: time.Minute, Log: log, Registerer: reg, OpTimeout: 10 * time.Second}
	for _, with := range tune {
		with(&opts)
	}
	f := &fixture{
		cache:  productcache.New(rdb, opts),
		reg:    reg,
		rdb:    rdb,
		events: events,
		up:     &upstream{calls: map[string]int{}, answer: answer},
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/products/{id}", f.cache.Product(f.up))
	mux.Handle("GET /api/v1/products", f.cache.List(f.up))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fixture) get(t *testing.T, path string) (status int, xcache, contentType, body string) {
	t.Helper()
	resp, err := testhttp.Client.Get(f.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get(productcache.Header), resp.Header.Get("Content-Type"), string(b)
}

// expect GETs path and checks the X-Cache header and the body.
func (f *fixture) expect(t *testing.T, path, xcache, body string) {
	t.Helper()
	status, x, _, b := f.get(t, path)
	if status != http.StatusOK || x != xcache || b != body {
		t.Fatalf("GET %s: %d %s %s; want 200 %s %s", path, status, x, b, xcache, body)
	}
}

func read(uri string, n int) string { return fmt.Sprintf(`{"path":%q,"read":%d}`, uri, n) }

func TestProductIsKeptUnderItsCanonicalID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), product)
	id := uuid.New()
	path := "/api/v1/products/" + id.String()

	f.expect(t, path, productcache.Miss, read(path, 1))
	status, x, ct, body := f.get(t, path)
	if status != http.StatusOK {
		t.Fatalf("second GET: %d %s; want 200", status, body)
	}
	if x != productcache.Hit {
		t.Fatalf("second GET: X-Cache %q; want the first answer from the cache, HIT", x)
	}
	if ct != "application/json" {
		t.Fatalf("second GET: Content-Type %q; want application/json", ct)
	}
	if want := read(path, 1); body != want {
		t.Fatalf("second GET: %s; want the first answer, %s", body, want)
	}
	// The same product spelled another way is the same copy: an event names the
	// product in canonical form, and must find it.
	upper := "/api/v1/products/" + strings.ToUpper(id.String())
	f.expect(t, upper, productcache.Hit, read(path, 1))
	if n := f.up.count(path) + f.up.count(upper); n != 1 {
		t.Fatalf("the upstream was asked %d times, want once", n)
	}

	if err := f.cache.Forget(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	f.expect(t, path, productcache.Miss, read(path, 2))
	f.expect(t, path, productcache.Hit, read(path, 2))

	// Not a UUID: passed through, never kept (the service answers it).
	f.expect(t, "/api/v1/products/not-an-id", productcache.Miss, read("/api/v1/products/not-an-id", 1))
	f.expect(t, "/api/v1/products/not-an-id", productcache.Miss, read("/api/v1/products/not-an-id", 2))
}

func TestAnswerReadBeforeAChangeIsNeverServedAfterIt(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	path := "/api/v1/products/" + id.String()
	var f *fixture
	f = newFixture(t, redistest.New(t), func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			// The product changes, and its event is handled, after the upstream
			// read it for this answer and before the gateway stores the answer.
			if err := f.cache.Forget(r.Context(), id); err != nil {
				t.Error(err)
			}
		}
		product(w, r, n)
	})

	f.expect(t, path, productcache.Miss, read(path, 1))
	f.expect(t, path, productcache.Miss, read(path, 2)) // not the stale first answer
	f.expect(t, path, productcache.Hit, read(path, 2))
}

func TestOnlyWhole200sAreKept(t *testing.T) {
	t.Parallel()
	// The case is named by the cursor: a list takes no parameter the API does not
	// define.
	f := newFixture(t, redistest.New(t), func(w http.ResponseWriter, r *http.Request, n int) {
		switch r.URL.Query().Get("cursor") {
		case "404":
			w.WriteHeader(http.StatusNotFound)
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "no-store":
			w.Header().Set("Cache-Control", "no-store")
		case "compressed":
			w.Header().Set("Content-Encoding", "br")
		case "large":
			w.Write(make([]byte, productcache.MaxBody+1))
			return
		}
		fmt.Fprintf(w, "read %d", n)
	})
	for _, c := range []string{"404", "503", "no-store", "compressed", "large"} {
		path := "/api/v1/products?cursor=" + c
		for range 2 {
			if _, x, _, _ := f.get(t, path); x != productcache.Miss {
				t.Errorf("%s: X-Cache %s, want MISS", c, x)
			}
		}
		if n := f.up.count(path); n != 2 {
			t.Errorf("%s: the upstream was asked %d times for 2 reads, want 2", c, n)
		}
	}
}

func TestListPagesAreKeptPerQueryAndDroppedTogether(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), listing)
	first, second := "/api/v1/products?limit=2", "/api/v1/products?limit=2&cursor=abc"

	f.expect(t, first, productcache.Miss, listRead(first, 1))
	f.expect(t, second, productcache.Miss, read(second, 1))
	f.expect(t, first, productcache.Hit, listRead(first, 1))
	f.expect(t, second, productcache.Hit, read(second, 1))
	// The order of the parameters does not make another page.
	f.expect(t, "/api/v1/products?cursor=abc&limit=2", productcache.Hit, read(second, 1))

	// Any product's change drops every page.
	if err := f.cache.Forget(context.Background(), uuid.New()); err != nil {
		t.Fatal(err)
	}
	f.expect(t, first, productcache.Miss, listRead(first, 2))
	f.expect(t, second, productcache.Miss, read(second, 2))
	f.expect(t, first, productcache.Hit, listRead(first, 2))
}

// Finding: a cursor is opaque, not secret. A client making up a new valid cursor for
// every request would make a copy of a page each time. Only the cursors kept pages
// handed out make copies; any other is answered and not kept.
func TestOnlyCursorsThePagesHandedOutAreKept(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), listing)
	for i := range 20 {
		crafted := fmt.Sprintf("/api/v1/products?limit=2&cursor=crafted%d", i)
		f.expect(t, crafted, productcache.Miss, read(crafted, 1))
		f.expect(t, crafted, productcache.Miss, read(crafted, 2))
	}
	if keys := f.listKeys(t); len(keys) != 0 {
		t.Fatalf("made-up cursors left %d copies", len(keys))
	}
	// The first page hands out "abc": that page is kept from then on.
	first, second := "/api/v1/products?limit=2", "/api/v1/products?limit=2&cursor=abc"
	f.expect(t, second, productcache.Miss, read(second, 1))
	f.expect(t, first, productcache.Miss, listRead(first, 1))
	f.expect(t, second, productcache.Miss, read(second, 2))
	f.expect(t, second, productcache.Hit, read(second, 2))
	if keys := f.listKeys(t); len(keys) != 2 {
		t.Errorf("%d copies, want the two pages: %v", len(keys), keys)
	}
}

// Finding: any text makes a search, so a client making up a new q for every request
// would make a copy each time. A search is answered by the service, never kept nor
// looked up, and counted as uncached; its next_cursor is not one a kept page handed
// out.
func TestSearchPagesAreNeverKept(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), listing)
	searches := []string{
		"/api/v1/products?q=mug",
		"/api/v1/products?limit=2&q=blue+mug",
		"/api/v1/products?q=%20", // blank: whether that is none is the service's to say
		"/api/v1/products?limit=2&cursor=abc&q=mug",
	}
	for _, path := range searches {
		for n := 1; n <= 2; n++ {
			f.expect(t, path, productcache.Miss, listRead(path, n)) // forwarded as it came
		}
	}
	for i := range 20 {
		path := fmt.Sprintf("/api/v1/products?q=made-up-%d", i)
		f.expect(t, path, productcache.Miss, listRead(path, 1))
	}
	if keys := f.listKeys(t); len(keys) != 0 {
		t.Fatalf("searches left copies: %v", keys)
	}
	if n := f.rdb.Exists(context.Background(), "gateway:products:cursors").Val(); n != 0 {
		t.Errorf("the next_cursor of a search was remembered as a kept page's")
	}
	got := lookupsCounted(t, f.reg)
	maps.DeleteFunc(got, func(_ string, v float64) bool { return v == 0 })
	if want := map[string]float64{"list/uncached": float64(2*len(searches) + 20)}; !maps.Equal(got, want) {
		t.Errorf("lookups counted %v, want %v", got, want)
	}

	// A search answer is tagged like any other, and revalidates: the upstream's
	// third answer to the first search is the one a client already has.
	req, err := http.NewRequest(http.MethodGet, f.url+searches[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("If-None-Match", httpserver.ETag([]byte(listRead(searches[0], 3))))
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified || resp.Header.Get(productcache.Header) != productcache.Miss {
		t.Errorf("a search with a matching If-None-Match: %d %s, want 304 MISS", resp.StatusCode, resp.Header.Get(productcache.Header))
	}
}

// Without q, or with an empty one, a page is kept as it always was.
func TestPagesWithoutASearchAreKeptAsBefore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), listing)
	first := "/api/v1/products?limit=2"
	f.expect(t, first, productcache.Miss, listRead(first, 1))
	f.expect(t, first, productcache.Hit, listRead(first, 1))
	f.expect(t, "/api/v1/products?q=&limit=2", productcache.Hit, listRead(first, 1))
	second := "/api/v1/products?limit=2&cursor=abc"
	f.expect(t, second, productcache.Miss, read(second, 1))
	f.expect(t, "/api/v1/products?cursor=abc&q=&limit=2", productcache.Hit, read(second, 1))
	if keys := f.listKeys(t); len(keys) != 2 {
		t.Errorf("%d copies, want the two pages: %v", len(keys), keys)
	}
	got := lookupsCounted(t, f.reg)
	maps.DeleteFunc(got, func(_ string, v float64) bool { return v == 0 })
	if want := map[string]float64{"list/miss": 2, "list/hit": 3}; !maps.Equal(got, want) {
		t.Errorf("lookups counted %v, want %v", got, want)
	}
	// q is one of the list's parameters, so given twice it is refused like the others.
	if status, d := problemOf(t, f, "/api/v1/products?q=a&q=b"); status != http.StatusUnprocessableEntity || len(d.Errors) != 1 || d.Errors[0].Field != "q" {
		t.Errorf("q twice: %d %+v, want 422 naming q", status, d)
	}
}

func TestCopiesExpireAfterTheTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), product)
	path := "/api/v1/products/" + uuid.NewString()
	f.expect(t, path, productcache.Miss, read(path, 1))
	keys, err := f.rdb.Keys(context.Background(), "gateway:products:product:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v (%v), want the one copy", keys, err)
	}
	if ttl := f.rdb.PTTL(context.Background(), keys[0]).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("the copy's TTL is %s, want up to PRODUCT_CACHE_TTL (1m)", ttl)
	}
}

func TestRedisDownIsAMissNeverAnError(t *testing.T) {
	t.Parallel()
	closed := "redis://" + closedport.Addr(t) + "/0"
	f := newFixture(t, closed, product)

	for _, path := range []string{"/api/v1/products/" + uuid.NewString(), "/api/v1/products?limit=3"} {
		for n := 1; n <= 3; n++ {
			f.expect(t, path, productcache.Miss, read(path, n))
		}
	}
	if err := f.cache.Forget(context.Background(), uuid.New()); err == nil {
		t.Error("Forget succeeded without Redis")
	}
}

func TestAHungRedisCostsAtMostTheTimeLimit(t *testing.T) {
	t.Parallel()
	// A Redis that accepts connections and never answers (a stopped process, a
	// network that drops packets) is worse than one that refuses them.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	f := newFixture(t, "redis://"+ln.Addr().String()+"/0", product,
		func(o *productcache.Options) { o.OpTimeout = productcache.DefaultOpTimeout })

	path := "/api/v1/products/" + uuid.NewString()
	for n := 1; n <= 3; n++ {
		start := time.Now()
		f.expect(t, path, productcache.Miss, read(path, n))
		// The limit is 250ms; go-redis's own read timeout, 3s, is what a client
		// without it would wait. Later requests skip the cache altogether.
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("request %d took %s with Redis hung", n, took)
		}
	}
}

// invalidation is a cache with its Invalidator running.
type invalidation struct {
	*fixture
	stop func()
	done chan struct{}
}

func startInvalidator(t *testing.T, f *fixture, name string) *invalidation {
	t.Helper()
	log, _ := logging.New(t.Output(), "debug", "gateway")
	inv := productcache.NewInvalidator(f.cache, f.events, productcache.InvalidatorOptions{
		Name: name, Block: 100 * time.Millisecond, Log: log,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := inv.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	i := &invalidation{fixture: f, stop: cancel, done: done}
	t.Cleanup(i.halt)
	return i
}

func (i *invalidation) halt() {
	i.stop()
	<-i.done
}

// waitForGroup waits until the gateway's group exists, so that an event added after
// it is certain to be read.
func waitForGroup(t *testing.T, rdb *redis.Client) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		groups, _ := rdb.XInfoGroups(context.Background(), productcache.Stream).Result()
		for _, g := range groups {
			if g.Name == productcache.Group {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway group never appeared")
		}
	}
}

func publish(t *testing.T, rdb *redis.Client, typ, subject string, data any) string {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	e := events.Envelope{ID: uuid.New(), Type: typ, Source: "inventory", Subject: subject, Time: time.Now(), Data: b}
	id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: productcache.Stream, Values: e.Fields()}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// eventually polls until GET path is a MISS with body, then expects it kept.
func (f *fixture) eventuallyMiss(t *testing.T, path, body string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		status, x, _, b := f.get(t, path)
		if status == http.StatusOK && x == productcache.Miss && b == body {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s still %s %s, want the copy dropped and %s", path, x, b, body)
		}
	}
	f.expect(t, path, productcache.Hit, body)
}

// pending is how many entries the group holds unacknowledged.
func pending(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	p, err := rdb.XPending(context.Background(), productcache.Stream, productcache.Group).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func TestEventsDropWhatTheyChange(t *testing.T) {
	t.Parallel()
	i := startInvalidator(t, newFixture(t, redistest.New(t), product), "gw-1")
	waitForGroup(t, i.rdb)
	a, b := uuid.New(), uuid.New()
	pa, pb, list := "/api/v1/products/"+a.String(), "/api/v1/products/"+b.String(), "/api/v1/products"
	for _, p := range []string{pa, pb, list} {
		i.expect(t, p, productcache.Miss, read(p, 1))
		i.expect(t, p, productcache.Hit, read(p, 1))
	}

	// product.updated is about its subject.
	publish(t, i.rdb, "product.updated", a.String(), map[string]any{"id": a, "stock": 3})
	i.eventuallyMiss(t, pa, read(pa, 2))
	i.eventuallyMiss(t, list, read(list, 2))
	i.expect(t, pb, productcache.Hit, read(pb, 1))

	// stock.* is about an order; the products are in its items.
	order := uuid.NewString()
	publish(t, i.rdb, "stock.reserved", order, map[string]any{"order_id": order,
		"items": []map[string]any{{"product_id": b, "quantity": 1}}})
	i.eventuallyMiss(t, pb, read(pb, 2))
	i.eventuallyMiss(t, list, read(list, 3))
	i.expect(t, pa, productcache.Hit, read(pa, 2))

	publish(t, i.rdb, "stock.released", order, map[string]any{"order_id": order,
		"items": []map[string]any{{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 1}}})
	i.eventuallyMiss(t, pa, read(pa, 3))
	i.eventuallyMiss(t, pb, read(pb, 3))
	i.eventuallyMiss(t, list, read(list, 4))

	// A poison entry and an event without items go to the DLQ at once; the events
	// after them are handled.
	if err := i.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: productcache.Stream, Values: map[string]any{"junk": "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, i.rdb, "stock.reserved", order, map[string]any{"order_id": order})
	publish(t, i.rdb, "product.created", uuid.NewString(), map[string]any{})
	i.eventuallyMiss(t, list, read(list, 5))
	for deadline := time.Now().Add(10 * time.Second); pending(t, i.rdb) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries still pending", pending(t, i.rdb))
		}
	}
	if dlq, err := events.ListDLQ(context.Background(), i.rdb, 10); err != nil || len(dlq) != 2 {
		t.Errorf("DLQ %+v (%v); want the poison entry and the event without items", dlq, err)
	}
}

func TestARestartedReplicaHandlesWhatItHadReadBeforeItStopped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), product)
	ctx := context.Background()
	id := uuid.New()
	path := "/api/v1/products/" + id.String()
	f.expect(t, path, productcache.Miss, read(path, 1))

	// The replica read the event and died before handling it.
	if err := f.rdb.XGroupCreateMkStream(ctx, productcache.Stream, productcache.Group, "$").Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, f.rdb, "product.updated", id.String(), map[string]any{"id": id})
	res, err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: productcache.Group, Consumer: "gw-1",
		Streams: []string{productcache.Stream, ">"}, Count: 1}).Result()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(res[0].Messages) != 1 {
		t.Fatalf("read %v; want the one event", res)
	}
	f.expect(t, path, productcache.Hit, read(path, 1))

	startInvalidator(t, f, "gw-1")
	f.eventuallyMiss(t, path, read(path, 2))
	if n := pending(t, f.rdb); n != 0 {
		t.Errorf("%d entries pending after the restart, want 0", n)
	}
}

func TestAnotherReplicasAbandonedEntriesAreTakenOver(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), product)
	ctx := context.Background()
	id := uuid.New()
	path := "/api/v1/products/" + id.String()
	f.expect(t, path, productcache.Miss, read(path, 1))

	if err := f.rdb.XGroupCreateMkStream(ctx, productcache.Stream, productcache.Group, "$").Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, f.rdb, "product.updated", id.String(), map[string]any{"id": id})
	if err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: productcache.Group, Consumer: "gone-for-good",
		Streams: []string{productcache.Stream, ">"}, Count: 1}).Err(); err != nil {
		t.Fatal(err)
	}

	log, _ := logging.New(t.Output(), "debug", "gateway")
	inv := productcache.NewInvalidator(f.cache, f.events, productcache.InvalidatorOptions{
		Name: "gw-2", Block: 50 * time.Millisecond, ClaimIdle: time.Millisecond, Log: log,
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); inv.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	f.eventuallyMiss(t, path, read(path, 2))
}

func TestInvalidatorStopsPromptly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), product)
	log, _ := logging.New(t.Output(), "debug", "gateway")
	inv := productcache.NewInvalidator(f.cache, f.events, productcache.InvalidatorOptions{Name: "gw-1", Log: log}) // default 2s block
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inv.Run(ctx) }()
	waitForGroup(t, f.rdb)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context ending")
	}
}

func TestLookupsAreCounted(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t, redistest.New(t))
	log, _ := logging.New(t.Output(), "debug", "gateway")
	reg := prometheus.NewRegistry()
	// As the fixture's: a lookup past a loaded machine's 250ms would be counted as
	// an error, not the hit or miss this test counts.
	cache := productcache.New(rdb, productcache.Options{TTL: time.Minute, Log: log, Registerer: reg, OpTimeout: 10 * time.Second})
	up := &upstream{calls: map[string]int{}, answer: product}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/products/{id}", cache.Product(up))
	mux.Handle("GET /api/v1/products", cache.List(up))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, path := range []string{"/api/v1/products/" + uuid.NewString(), "/api/v1/products/" + uuid.NewString(), "/api/v1/products"} {
		for range 2 {
			resp, err := testhttp.Client.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	// The other results are there too, at zero (the next test).
	got := lookupsCounted(t, reg)
	maps.DeleteFunc(got, func(_ string, v float64) bool { return v == 0 })
	want := map[string]float64{"product/miss": 2, "product/hit": 2, "list/miss": 1, "list/hit": 1}
	if !maps.Equal(got, want) {
		t.Errorf("lookups counted %v, want %v", got, want)
	}
}

// Every kind and result is there from the start, at zero, so that the hit ratio
// (hits over all lookups, a query: docs/observability.md) and its dashboard have
// series before the first lookup.
func TestLookupsAreExportedAtZeroFromTheStart(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t, redistest.New(t))
	reg := prometheus.NewRegistry()
	productcache.New(rdb, productcache.Options{TTL: time.Minute, Registerer: reg})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	resp, err := testhttp.Client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, kind := range []string{"product", "list"} {
		for _, result := range []string{"hit", "miss", "shared", "error", "bypassed"} {
			if line := `gateway_product_cache_lookups_total{kind="` + kind + `",result="` + result + `"} 0` + "\n"; !strings.Contains(string(body), line) {
				t.Errorf("a new cache's metrics lack %s", line)
			}
		}
	}
	if line := `gateway_product_cache_lookups_total{kind="list",result="uncached"} 0` + "\n"; !strings.Contains(string(body), line) {
		t.Errorf("a new cache's metrics lack %s", line)
	}
}

// lookupsCounted is every series of the lookups counter, by kind/result.
func lookupsCounted(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != "gateway_product_cache_lookups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["kind"]+"/"+labels["result"]] = m.GetCounter().GetValue()
		}
	}
	return got
}

// listKeys are the list pages kept in Redis.
func (f *fixture) listKeys(t *testing.T) []string {
	t.Helper()
	keys, err := f.rdb.Keys(context.Background(), "gateway:products:list:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(keys, func(k string) bool { return strings.HasSuffix(k, ":gen") })
}

// problemOf reads a problem+json answer.
func problemOf(t *testing.T, f *fixture, path string) (int, problem.Details) {
	t.Helper()
	status, x, ct, body := f.get(t, path)
	if ct != problem.ContentType {
		t.Fatalf("GET %s: %d %s %q, want a problem", path, status, ct, body)
	}
	if x != productcache.Miss {
		t.Errorf("GET %s: X-Cache %q", path, x)
	}
	var d problem.Details
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	return status, d
}

func TestListKeysAreMadeOnlyFromTheAPIsParameters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), listing)

	// Junk parameters are refused before the cache or the service is asked, so each
	// one cannot make a copy of its own.
	for i := range 30 {
		path := fmt.Sprintf("/api/v1/products?limit=2&junk%d=x", i)
		status, d := problemOf(t, f, path)
		if status != http.StatusUnprocessableEntity || len(d.Errors) != 1 || d.Errors[0].Field != fmt.Sprint("junk", i) {
			t.Fatalf("GET %s: %d %+v, want 422 naming junk%d", path, status, d, i)
		}
	}
	status, d := problemOf(t, f, "/api/v1/products?b=1&limit=2&a=2")
	if fields := []string{d.Errors[0].Field, d.Errors[1].Field}; status != http.StatusUnprocessableEntity || len(d.Errors) != 2 || !slices.Equal(fields, []string{"a", "b"}) {
		t.Errorf("two unknown parameters: %d %+v, want 422 naming a and b", status, d)
	}
	// One value each: which of two the service would read is not the gateway's guess.
	if status, d := problemOf(t, f, "/api/v1/products?limit=2&limit=3"); status != http.StatusUnprocessableEntity || len(d.Errors) != 1 || d.Errors[0].Field != "limit" {
		t.Errorf("limit twice: %d %+v, want 422 naming limit", status, d)
	}
	if status, _ := problemOf(t, f, "/api/v1/products?limit=%zz"); status != http.StatusBadRequest {
		t.Errorf("an unparsable query: %d, want 400", status)
	}
	if keys := f.listKeys(t); len(keys) != 0 {
		t.Fatalf("refused queries left copies: %v", keys)
	}
	if len(f.up.calls) != 0 {
		t.Fatalf("the service was asked %v", f.up.calls)
	}

	// Spellings of one query share one copy: any order, escaped or not, an empty
	// parameter the same as none (as the service reads them).
	whole := "/api/v1/products"
	f.expect(t, whole, productcache.Miss, listRead(whole, 1)) // hands out "abc"
	for _, same := range []string{"/api/v1/products?", "/api/v1/products?limit=&cursor="} {
		f.expect(t, same, productcache.Hit, listRead(whole, 1))
	}
	first := "/api/v1/products?limit=2&cursor=abc"
	f.expect(t, first, productcache.Miss, read(first, 1))
	for _, same := range []string{"/api/v1/products?cursor=abc&limit=2", "/api/v1/products?cursor=a%62c&limit=2", "/api/v1/products?limit=2&cursor=abc&"} {
		f.expect(t, same, productcache.Hit, read(first, 1))
	}
	if keys := f.listKeys(t); len(keys) != 2 {
		t.Errorf("%d copies for two queries: %v", len(keys), keys)
	}
}

func TestListParametersAreRefusedWithoutRedisToo(t *testing.T) {
	t.Parallel()
	closed := "redis://" + closedport.Addr(t) + "/0"
	f := newFixture(t, closed, product)
	status, d := problemOf(t, f, "/api/v1/products?utm_source=x")
	if status != http.StatusUnprocessableEntity {
		t.Errorf("got %d %+v, want 422: the API does not change with Redis's health", status, d)
	}
	if len(d.Errors) != 1 {
		t.Errorf("field errors %+v, want 1: the API does not change with Redis's health", d.Errors)
	}
}

func TestListParametersAreTheDocumentedOnes(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromFile("../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	op := doc.Paths.Find("/api/v1/products").Get
	var documented []string
	for _, p := range op.Parameters {
		if p.Value.In == openapi3.ParameterInQuery {
			documented = append(documented, p.Value.Name)
		}
	}
	slices.Sort(documented)
	if !slices.Equal(productcache.ListParams, documented) {
		t.Errorf("the cache keys lists on %v, docs/openapi.yaml documents %v for GET /api/v1/products", productcache.ListParams, documented)
	}
}
