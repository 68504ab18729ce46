package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// received is one request an upstream got.
type received struct {
	method, uri, body string
	header            http.Header
}

// upstream stands in for a service: it records every request it gets, body included,
// and answers with handle, or by default 200 {"answered_by": name}.
type upstream struct {
	URL    string
	mu     sync.Mutex
	got    []received
	handle http.HandlerFunc
}

func newUpstream(t *testing.T, name string, handle http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{handle: handle}
	if u.handle == nil {
		u.handle = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"answered_by":%q}`, name)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.got = append(u.got, received{r.Method, r.URL.RequestURI(), string(body), r.Header.Clone()})
		u.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		u.handle(w, r)
	}))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

func (u *upstream) calls() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.got...)
}

// callsTo counts the requests for uri.
func (u *upstream) callsTo(uri string) int {
	n := 0
	for _, c := range u.calls() {
		if c.uri == uri {
			n++
		}
	}
	return n
}

// send makes a request of the gateway with an optional body and bearer token.
func send(t *testing.T, method, url, body, token string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, req)
}

// Who may call a route.
const (
	anyone = "anyone"
	user   = "user"
	admin  = "admin"
)

func TestCatalogueOrdersAndPaymentsRoutesCheckAccessBeforeForwarding(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	inventory := newUpstream(t, "inventory", nil)
	orders := newUpstream(t, "orders", nil)
	payments := newUpstream(t, "payments", nil)
	notifications := newUpstream(t, "notifications", nil)
	gw := startGateway(t, map[string]string{
		"USERS_URL": users.URL, "INVENTORY_URL": inventory.URL, "ORDERS_URL": orders.URL, "PAYMENTS_URL": payments.URL,
		"NOTIFICATIONS_URL": notifications.URL,
	})
	tokens := map[string]string{
		"anonymous": "",
		"bad token": "not-a-jwt",
		"customer":  users.sign(t, 15*time.Minute),
		"admin":     signWith(t, users.key, auth.RoleAdmin, 15*time.Minute),
	}

	// Each path has {id} in it, made new for every request, so that no two
	// requests are the same (product reads would come from the cache).
	for _, rt := range []struct {
		method, path, body string
		up                 *upstream
		who                string
	}{
		{http.MethodGet, "/api/v1/products?limit=5&cursor={id}", "", inventory, anyone},
		{http.MethodGet, "/api/v1/products/{id}", "", inventory, anyone},
		{http.MethodPost, "/api/v1/products", `{"sku":"{id}","name":"Mug"}`, inventory, admin},
		{http.MethodPatch, "/api/v1/products/{id}", `{"stock":3}`, inventory, admin},
		{http.MethodPost, "/api/v1/orders", `{"items":[{"product_id":"{id}","quantity":1}],"payment_method":"pm_card_visa"}`, orders, user},
		{http.MethodGet, "/api/v1/orders?limit=2&cursor={id}", "", orders, user},
		{http.MethodGet, "/api/v1/orders/{id}", "", orders, user},
		{http.MethodPost, "/api/v1/orders/{id}/cancel", "", orders, user},
		{http.MethodGet, "/api/v1/orders/{id}/events", "", orders, user},
		{http.MethodGet, "/api/v1/admin/sagas?state=running&cursor={id}", "", orders, admin},
		{http.MethodPost, "/api/v1/admin/reports/sales?from=2026-01-01&to=2026-01-31&x={id}", "", orders, admin},
		{http.MethodGet, "/api/v1/payments?order_id={id}", "", payments, user},
		// The admin reads an order's story is told from.
		{http.MethodGet, "/api/v1/admin/orders/{id}", "", orders, admin},
		{http.MethodGet, "/api/v1/admin/reservations/{id}", "", inventory, admin},
		{http.MethodGet, "/api/v1/admin/payments?order_id={id}", "", payments, admin},
		{http.MethodGet, "/api/v1/admin/notifications?event_id={id}&event_id={id}", "", notifications, admin},
	} {
		for caller, tok := range tokens {
			id := uuid.NewString()
			path, body := strings.ReplaceAll(rt.path, "{id}", id), strings.ReplaceAll(rt.body, "{id}", id)
			want := http.StatusOK
			switch {
			case rt.who == anyone:
			case tok == "" || tok == "not-a-jwt":
				want = http.StatusUnauthorized
			case rt.who == admin && caller != "admin":
				want = http.StatusForbidden
			}
			name := fmt.Sprintf("%s %s as %s", rt.method, rt.path, caller)

			before := len(rt.up.calls())
			resp, respBody := send(t, rt.method, gw.URL+path, body, tok, nil)
			calls := rt.up.calls()[before:]
			if want != http.StatusOK {
				if d := decodeProblem(t, resp, respBody); resp.StatusCode != want || d.Status != want {
					t.Errorf("%s: got %d %+v, want %d", name, resp.StatusCode, d, want)
				}
				if len(calls) != 0 {
					t.Errorf("%s: the upstream got %d calls for a request the gateway refused", name, len(calls))
				}
				continue
			}
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(respBody), `"answered_by"`) {
				t.Errorf("%s: got %d %s, want the service's answer", name, resp.StatusCode, respBody)
				continue
			}
			if len(calls) != 1 {
				t.Errorf("%s: the upstream got %d calls, want 1", name, len(calls))
				continue
			}
			c := calls[0]
			if c.method != rt.method || c.uri != path || c.body != body {
				t.Errorf("%s: the upstream got %s %s %q, want it unchanged: %s %s %q", name, c.method, c.uri, c.body, rt.method, path, body)
			}
			if wantAuth := map[bool]string{true: "Bearer " + tok, false: ""}[tok != ""]; c.header.Get("Authorization") != wantAuth {
				t.Errorf("%s: the upstream got Authorization %q, want %q", name, c.header.Get("Authorization"), wantAuth)
			}
		}
	}
}

// catalogue stands in for the inventory service's product reads: the n-th read of a
// path answers a body that says n (readN), and one product does not exist.
func catalogue(missing uuid.UUID) http.HandlerFunc {
	var mu sync.Mutex
	reads := map[string]int{}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/products/"+missing.String() {
			w.Header().Set("Content-Type", problem.ContentType)
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"type":"urn:bazaar:problem:not_found","status":404}`)
			return
		}
		mu.Lock()
		reads[r.URL.RequestURI()]++
		n := reads[r.URL.RequestURI()]
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, readN(r.URL.RequestURI(), n))
	}
}

// readN is the catalogue's n-th answer to uri. A list's first page hands out the
// cursor "abc" (next_cursor), as the inventory service's does: the gateway keeps the
// pages of handed-out cursors only.
func readN(uri string, n int) string {
	if strings.HasPrefix(uri, "/api/v1/products?") && !strings.Contains(uri, "cursor=") {
		return fmt.Sprintf(`{"uri":%q,"read":%d,"next_cursor":"abc"}`, uri, n)
	}
	return fmt.Sprintf(`{"uri":%q,"read":%d}`, uri, n)
}

// cacheStack is a gateway in front of a fake catalogue, with the Redis database it
// keeps its cache in and reads inventory events from.
type cacheStack struct {
	gw        string
	inventory *upstream
	rdb       *redis.Client
	missing   uuid.UUID
}

func startCacheStack(t *testing.T) *cacheStack {
	t.Helper()
	redisURL := redistest.New(t)
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	s := &cacheStack{rdb: rdb, missing: uuid.New()}
	s.inventory = newUpstream(t, "inventory", catalogue(s.missing))
	s.gw = startGateway(t, map[string]string{"INVENTORY_URL": s.inventory.URL, "REDIS_URL": redisURL}).URL

	// An event added before the gateway's group exists would never reach it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		groups, _ := rdb.XInfoGroups(context.Background(), "events.inventory").Result()
		if len(groups) == 1 && groups[0].Name == "gateway" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway's consumer group on events.inventory never appeared: %+v", groups)
		}
	}
	return s
}

// read GETs uri and returns the status, X-Cache and body.
func (s *cacheStack) read(t *testing.T, uri string) (int, string, string) {
	t.Helper()
	resp, body := get(t, s.gw+uri, nil)
	return resp.StatusCode, resp.Header.Get("X-Cache"), string(body)
}

func (s *cacheStack) expect(t *testing.T, uri, xcache, body string) {
	t.Helper()
	if status, x, b := s.read(t, uri); status != http.StatusOK || x != xcache || b != body {
		t.Fatalf("GET %s: %d %s %s; want 200 %s %s", uri, status, x, b, xcache, body)
	}
}

// eventuallyMiss polls uri until the cache has dropped it (a MISS with body), then
// checks that the new answer is kept.
func (s *cacheStack) eventuallyMiss(t *testing.T, uri, body string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		status, x, b := s.read(t, uri)
		if status == http.StatusOK && x == "MISS" && b == body {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s still %s %s, want it dropped and %s", uri, x, b, body)
		}
	}
	s.expect(t, uri, "HIT", body)
}

func (s *cacheStack) publish(t *testing.T, typ, subject string, data any) {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	e := events.Envelope{ID: uuid.New(), Type: typ, Source: "inventory", Subject: subject, Time: time.Now(), Data: b}
	if err := s.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: "events.inventory", Values: e.Fields()}).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestProductReadsAreCachedUntilAnInventoryEventSaysOtherwise(t *testing.T) {
	t.Parallel()
	s := startCacheStack(t)
	id, other := uuid.New(), uuid.New()
	item, otherItem := "/api/v1/products/"+id.String(), "/api/v1/products/"+other.String()

	s.expect(t, item, "MISS", readN(item, 1))
	s.expect(t, item, "HIT", readN(item, 1))
	s.expect(t, otherItem, "MISS", readN(otherItem, 1))
	if n := s.inventory.callsTo(item); n != 1 {
		t.Fatalf("inventory was asked %d times for two reads, want once", n)
	}

	// product.updated drops that product, and only that one.
	s.publish(t, "product.updated", id.String(), map[string]any{"id": id, "sku": "MUG", "stock": 4})
	s.eventuallyMiss(t, item, readN(item, 2))
	s.expect(t, otherItem, "HIT", readN(otherItem, 1))

	// stock.reserved is about an order; the product is in its items.
	order := uuid.NewString()
	s.publish(t, "stock.reserved", order, map[string]any{"order_id": order,
		"items": []map[string]any{{"product_id": other, "quantity": 2}}})
	s.eventuallyMiss(t, otherItem, readN(otherItem, 2))
	s.expect(t, item, "HIT", readN(item, 2))

	// A product that does not exist is asked for every time.
	missing := "/api/v1/products/" + s.missing.String()
	for range 2 {
		if status, x, _ := s.read(t, missing); status != http.StatusNotFound || x != "MISS" {
			t.Errorf("GET %s: %d %s, want 404 MISS", missing, status, x)
		}
	}
	if n := s.inventory.callsTo(missing); n != 2 {
		t.Errorf("inventory was asked %d times for a missing product read twice, want 2", n)
	}
}

func TestProductListPagesAreCachedAndDroppedOnAnyProductEvent(t *testing.T) {
	t.Parallel()
	s := startCacheStack(t)
	first, next := "/api/v1/products?limit=2", "/api/v1/products?limit=2&cursor=abc"

	s.expect(t, first, "MISS", readN(first, 1))
	s.expect(t, next, "MISS", readN(next, 1))
	s.expect(t, first, "HIT", readN(first, 1))
	s.expect(t, next, "HIT", readN(next, 1))

	id := uuid.New()
	s.publish(t, "product.created", id.String(), map[string]any{"id": id, "sku": "NEW"})
	s.eventuallyMiss(t, first, readN(first, 2))
	s.eventuallyMiss(t, next, readN(next, 2))

	order := uuid.NewString()
	s.publish(t, "stock.released", order, map[string]any{"order_id": order,
		"items": []map[string]any{{"product_id": uuid.New(), "quantity": 1}}})
	s.eventuallyMiss(t, first, readN(first, 3))
	s.eventuallyMiss(t, next, readN(next, 3))

	// A page the service refuses is never kept.
	bad := "/api/v1/products?limit=0"
	inventory422 := newUpstream(t, "inventory", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
	})
	gw := startGateway(t, map[string]string{"INVENTORY_URL": inventory422.URL}).URL
	for range 2 {
		if resp, _ := get(t, gw+bad, nil); resp.StatusCode != http.StatusUnprocessableEntity || resp.Header.Get("X-Cache") != "MISS" {
			t.Errorf("GET %s: %d %s, want 422 MISS", bad, resp.StatusCode, resp.Header.Get("X-Cache"))
		}
	}
	if n := inventory422.callsTo(bad); n != 2 {
		t.Errorf("inventory was asked %d times for a refused page read twice, want 2", n)
	}
}

func TestProductReadsWorkWithoutRedis(t *testing.T) {
	t.Parallel()
	inventory := newUpstream(t, "inventory", catalogue(uuid.New()))
	closedRedis := "redis://" + strings.TrimPrefix(closedURL(t), "http://") + "/0"
	gw := startGateway(t, map[string]string{"INVENTORY_URL": inventory.URL, "REDIS_URL": closedRedis})

	for _, uri := range []string{"/api/v1/products/" + uuid.NewString(), "/api/v1/products?limit=3"} {
		for n := 1; n <= 3; n++ {
			resp, body := get(t, gw.URL+uri, nil)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != "MISS" || string(body) != readN(uri, n) {
				t.Errorf("GET %s without Redis: %d %s %s, want 200 MISS %s", uri, resp.StatusCode, resp.Header.Get("X-Cache"), body, readN(uri, n))
			}
		}
	}
}

func TestOrderStatusStreamIsFlushedAndOutlivesTheUpstreamTimeout(t *testing.T) {
	t.Parallel()
	const (
		timeout = 200 * time.Millisecond // UPSTREAM_TIMEOUT
		pause   = 3 * timeout            // between two frames
		frames  = 3
	)
	users := newFakeUsers(t)
	next := make(chan struct{})
	orders := newUpstream(t, "orders", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/events") {
			<-r.Context().Done() // every other orders route hangs
			return
		}
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		for i := 1; i <= frames; i++ {
			if i > 1 {
				// The next frame waits until the client has the last one, so a
				// frame held back on the way stalls the test instead of passing.
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
				time.Sleep(pause) // the silence the stream must survive, not synchronisation
			}
			fmt.Fprintf(w, "event: status\ndata: {\"order_id\":\"o1\",\"status\":\"s%d\"}\n\n", i)
			if rc.Flush() != nil {
				return
			}
		}
	})
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "ORDERS_URL": orders.URL, "UPSTREAM_TIMEOUT": timeout.String()})
	tok := users.sign(t, 15*time.Minute)
	events := gw.URL + "/api/v1/orders/" + uuid.NewString() + "/events"

	if resp, body := get(t, events, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous: got %d %s, want 401", resp.StatusCode, body)
	}
	if n := len(orders.calls()); n != 0 {
		t.Fatalf("orders got %d calls for an anonymous stream", n)
	}

	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, events, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("got %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	got := make(chan string)
	go func() {
		defer close(got)
		br := bufio.NewReader(resp.Body)
		var frame strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\n" {
				got <- frame.String()
				frame.Reset()
				continue
			}
			frame.WriteString(line)
		}
	}()
	for i := 1; i <= frames; i++ {
		want := fmt.Sprintf("event: status\ndata: {\"order_id\":\"o1\",\"status\":\"s%d\"}\n", i)
		select {
		case f, ok := <-got:
			if !ok {
				t.Fatalf("the stream ended before frame %d, after %s", i, time.Since(start))
			}
			if f != want {
				t.Fatalf("frame %d: %q, want %q", i, f, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("frame %d did not arrive", i)
		}
		if i < frames {
			next <- struct{}{}
		}
	}
	if took := time.Since(start); took < (frames-1)*pause {
		t.Fatalf("the stream lasted %s, want over %s: the test did not outlast UPSTREAM_TIMEOUT", took, (frames-1)*pause)
	}

	// The other orders routes keep UPSTREAM_TIMEOUT.
	resp2, body := send(t, http.MethodGet, gw.URL+"/api/v1/orders/"+uuid.NewString(), "", tok, nil)
	if d := decodeProblem(t, resp2, body); resp2.StatusCode != http.StatusGatewayTimeout || !strings.Contains(d.Detail, "orders") {
		t.Errorf("a hanging GET /orders/{id}: got %d %+v, want a 504 naming orders", resp2.StatusCode, d)
	}
}

func TestStoppingTheGatewayEndsOpenStreams(t *testing.T) {
	t.Parallel()
	// The client holds its stream until after the gateway has stopped: this cleanup
	// is registered before the gateway's, so it runs after it.
	var stream io.Closer
	t.Cleanup(func() {
		if stream != nil {
			stream.Close()
		}
	})
	users := newFakeUsers(t)
	orders := newUpstream(t, "orders", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: status\ndata: {}\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // an order that never reaches a terminal status
	})
	// programtest fails the test if run returns an error when stopped: a stream that
	// held up the server's graceful shutdown past its limit would make it one.
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "ORDERS_URL": orders.URL})

	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/orders/"+uuid.NewString()+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+users.sign(t, 15*time.Minute))
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	stream = resp.Body
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != http.StatusOK || line != "event: status\n" {
		t.Fatalf("got %d %q (%v), want the stream's first frame", resp.StatusCode, line, err)
	}
}

func TestOrderWithIdempotencyKeyIsSentOnceWhenOrdersDropsTheConnection(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	orders := newUpstream(t, "orders", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			io.WriteString(w, `{"items":[],"next_cursor":null}`) // leaves a kept-alive connection to reuse
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close() // orders dies after taking the order, without a word
	})
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "ORDERS_URL": orders.URL})
	tok := users.sign(t, 15*time.Minute)

	// A dropped reused connection is where Go's Transport re-sends a request it
	// deems replayable, and an Idempotency-Key header is one sign of that.
	const rounds = 3
	body := `{"items":[{"product_id":"` + uuid.NewString() + `","quantity":1}],"payment_method":"pm_card_visa"}`
	for i := range rounds {
		if resp, b := send(t, http.MethodGet, gw.URL+"/api/v1/orders", "", tok, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("warm-up: %d %s", resp.StatusCode, b)
		}
		resp, b := send(t, http.MethodPost, gw.URL+"/api/v1/orders", body, tok, http.Header{"Idempotency-Key": {fmt.Sprint("key-", i)}})
		if d := decodeProblem(t, resp, b); resp.StatusCode != http.StatusBadGateway || !strings.Contains(d.Detail, "orders") {
			t.Errorf("got %d %+v, want a 502 naming orders", resp.StatusCode, d)
		}
	}
	var posts []received
	for _, c := range orders.calls() {
		if c.method == http.MethodPost {
			posts = append(posts, c)
		}
	}
	if len(posts) != rounds {
		t.Fatalf("orders received %d POSTs for %d sent", len(posts), rounds)
	}
	for i, p := range posts {
		if p.body != body {
			t.Errorf("POST %d arrived as %q; want %q", i, p.body, body)
		}
		if got, want := p.header.Get("Idempotency-Key"), fmt.Sprint("key-", i); got != want {
			t.Errorf("POST %d arrived with key %q; want %q", i, got, want)
		}
	}
}

// taskResponse is GET /api/v1/admin/tasks/{id}'s answer, with every field a pointer
// or raw so that the test sees which are absent.
type taskResponse struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	State  string          `json:"state"`
	Result json.RawMessage `json:"result"`
	Error  *string         `json:"error"`
}

func TestTaskStatusIsReadFromTheQueues(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	redisURL := redistest.New(t)
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "REDIS_URL": redisURL})
	adminTok := signWith(t, users.key, auth.RoleAdmin, 15*time.Minute)

	conn, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(conn)
	t.Cleanup(func() { client.Close() })
	const queue = "orders:default"
	report, err := client.Enqueue(asynq.NewTask("report:sales", []byte(`{"from":"2026-01-01","to":"2026-01-31"}`)),
		asynq.Queue(queue), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	broken, err := client.Enqueue(asynq.NewTask("report:broken", nil), asynq.Queue(queue), asynq.MaxRetry(0))
	if err != nil {
		t.Fatal(err)
	}

	status := func(id, tok string) (*http.Response, []byte, taskResponse) {
		t.Helper()
		resp, body := send(t, http.MethodGet, gw.URL+"/api/v1/admin/tasks/"+id, "", tok, nil)
		var tr taskResponse
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(body, &tr); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
		}
		return resp, body, tr
	}

	resp, body, tr := status(report.ID, adminTok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a pending task: %d %s; want 200", resp.StatusCode, body)
	}
	if tr.ID != report.ID {
		t.Errorf("a pending task: id %q; want %q", tr.ID, report.ID)
	}
	if tr.Type != "report:sales" {
		t.Errorf("a pending task: type %q; want report:sales", tr.Type)
	}
	if tr.State != "pending" {
		t.Errorf("a pending task: state %q; want pending", tr.State)
	}
	if tr.Result != nil {
		t.Errorf("a pending task: result %s; want none", tr.Result)
	}
	if tr.Error != nil {
		t.Errorf("a pending task: error %q; want none", *tr.Error)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	for name, tc := range map[string]struct {
		id, tok string
		want    int
	}{
		"unknown id": {"no-such-task", adminTok, http.StatusNotFound},
		"customer":   {report.ID, users.sign(t, 15*time.Minute), http.StatusForbidden},
		"anonymous":  {report.ID, "", http.StatusUnauthorized},
	} {
		resp, body, _ := status(tc.id, tc.tok)
		if d := decodeProblem(t, resp, body); resp.StatusCode != tc.want || d.Status != tc.want {
			t.Errorf("%s: got %d %+v, want %d", name, resp.StatusCode, d, tc.want)
		}
	}

	// A worker of the orders service runs both: one stores a result, one fails.
	mux := asynq.NewServeMux()
	mux.HandleFunc("report:sales", func(ctx context.Context, task *asynq.Task) error {
		_, err := task.ResultWriter().Write([]byte(`{"orders":3,"revenue_cents":4200}`))
		return err
	})
	mux.HandleFunc("report:broken", func(context.Context, *asynq.Task) error { return fmt.Errorf("the report broke") })
	worker := asynq.NewServer(conn, asynq.Config{Queues: map[string]int{queue: 1}, Concurrency: 1, LogLevel: asynq.ErrorLevel})
	if err := worker.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(worker.Shutdown)

	for id, check := range map[string]func(taskResponse) bool{
		report.ID: func(tr taskResponse) bool {
			return tr.State == "completed" && string(tr.Result) == `{"orders":3,"revenue_cents":4200}` && tr.Error == nil
		},
		broken.ID: func(tr taskResponse) bool {
			return tr.State == "failed" && tr.Type == "report:broken" && tr.Error != nil && *tr.Error == "the report broke" && tr.Result == nil
		},
	} {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, body, tr := status(id, adminTok)
			if resp.StatusCode == http.StatusOK && check(tr) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s: still %d %s", id, resp.StatusCode, body)
			}
		}
	}
}

func TestTaskStatusWithoutRedisIs503(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	closedRedis := "redis://" + strings.TrimPrefix(closedURL(t), "http://") + "/0"
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "REDIS_URL": closedRedis})

	resp, body := send(t, http.MethodGet, gw.URL+"/api/v1/admin/tasks/t1", "", signWith(t, users.key, auth.RoleAdmin, time.Minute), nil)
	if d := decodeProblem(t, resp, body); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(d.Detail, "task queue") {
		t.Errorf("got %d %+v, want a 503 naming the task queue", resp.StatusCode, d)
	}
}

func TestProductListRefusesParametersTheAPIDoesNotDefine(t *testing.T) {
	t.Parallel()
	s := startCacheStack(t)
	for i := range 20 {
		uri := fmt.Sprintf("/api/v1/products?limit=2&nocache=%d", i)
		resp, body := get(t, s.gw+uri, nil)
		d := decodeProblem(t, resp, body)
		if resp.StatusCode != http.StatusUnprocessableEntity || len(d.Errors) != 1 || d.Errors[0].Field != "nocache" {
			t.Fatalf("GET %s: %d %+v, want 422 naming nocache", uri, resp.StatusCode, d)
		}
	}
	if n := len(s.inventory.calls()); n != 0 {
		t.Errorf("inventory got %d calls", n)
	}
	keys, err := s.rdb.Keys(context.Background(), "gateway:products:list:*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("list keys %v (%v), want none", keys, err)
	}
}
