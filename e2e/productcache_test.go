package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Issue 9: 200 concurrent reads of a cold product reach inventory once; a client
// that has the product gets 304; and once a patch's event has been handled, no read
// that begins then, at any gateway, gets the product as it was.
//
// The reads go to a second gateway of the test's own whose inventory is behind a
// counter, in front of the stack's services and sharing its Redis, so that it is
// another replica of the stack's gateway: the same product cache, the same consumer
// group dropping copies on inventory's events.
func TestProductReadsAreCoalescedRevalidatedAndNeverStale(t *testing.T) {
	setup(t)
	needOwnStack(t)
	sh := sharedShop()
	p := sh.createProduct(t, 50, 1000)
	path := "/api/v1/products/" + p.ID

	inventory, err := url.Parse(stackURLs.Programs["inventory"])
	if err != nil {
		t.Fatal(err)
	}
	var reads atomic.Int64 // of the product, by a gateway, from inventory
	proxy := httputil.NewSingleHostReverseProxy(inventory)
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == path {
			reads.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counter.Close)
	gw := startEdgeGateway(t, map[string]string{
		"INVENTORY_URL": counter.URL,
		"REDIS_URL":     stackURLs.RedisURL,
		// 200 requests at once from one address.
		"RATE_EDGE_IP": "0", "RATE_IP": "0",
	})

	// The product's creation is an event that drops its copies too: it must have been
	// handled before the reads, or one of them could rightly ask inventory again. The
	// product cache counts each product's drops in Redis (productcache's generations).
	opt, err := redis.ParseURL(stackURLs.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	genKey := "gateway:products:product:" + p.ID + ":gen"
	drops := func() int64 {
		t.Helper()
		n, err := rdb.Get(t.Context(), genKey).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return n
	}
	waitDrops := func(after int64) time.Time {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); drops() <= after; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the gateways did not handle product %s's event within 30s", p.ID)
			}
		}
		return time.Now()
	}
	waitDrops(0)

	// 200 concurrent cold reads: one request to inventory.
	out := concurrently(t.Context(), 200, func(int) request { return request{Base: gw.base, Method: "GET", Path: path} })
	etag, body := "", ""
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("read %d: %v; want 200 (%s)", i, o.err, describeStatuses(out))
		}
		if o.resp.StatusCode != http.StatusOK {
			t.Fatalf("read %d: %s; want 200 (%s)", i, o.resp.Status, describeStatuses(out))
		}
		if i == 0 {
			etag, body = o.resp.Header.Get("ETag"), string(o.resp.Body)
		}
		if got := o.resp.Header.Get("ETag"); got != etag {
			t.Fatalf("read %d: ETag %s; read 0 had %s: concurrent reads of one product differ", i, got, etag)
		}
		if got := string(o.resp.Body); got != body {
			t.Fatalf("read %d: %s; read 0 had %s: concurrent reads of one product differ", i, got, body)
		}
	}
	if etag == "" {
		t.Fatal("the reads have no ETag")
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("200 concurrent cold reads asked inventory %d times; want once", n)
	}

	// A client that has it: 304, at this gateway and at the stack's (the same bytes
	// have the same tag on every replica).
	for _, base := range []string{gw.base, baseURL} {
		for _, inm := range []string{etag, "W/" + etag} {
			r := do(t, request{Base: base, Method: "GET", Path: path, Header: map[string]string{"If-None-Match": inm}})
			if r.StatusCode != http.StatusNotModified {
				t.Errorf("GET %s at %s, If-None-Match %s → %d; want 304", path, base, inm, r.StatusCode)
			}
			if got := r.Header.Get("ETag"); got != etag {
				t.Errorf("GET %s at %s, If-None-Match %s → ETag %s; want %s", path, base, inm, got, etag)
			}
			if len(r.Body) != 0 {
				t.Errorf("GET %s at %s, If-None-Match %s → %d bytes; want no body", path, base, inm, len(r.Body))
			}
		}
	}

	// Readers at both gateways while the product is patched.
	type seen struct {
		start time.Time
		stock int
		etag  string
		err   error
	}
	var mu sync.Mutex
	var log []seen
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		base := []string{gw.base, baseURL}[i%2]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := seen{start: time.Now()}
				var r response
				if r, s.err = send(t.Context(), request{Base: base, Method: "GET", Path: path}); s.err == nil {
					var doc productDoc
					s.err = json.Unmarshal(r.Body, &doc)
					s.stock, s.etag = doc.Stock, r.Header.Get("ETag")
				}
				mu.Lock()
				log = append(log, s)
				mu.Unlock()
			}
		})
	}
	startedAfter := func(at time.Time) (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range log {
			if s.start.After(at) {
				n++
			}
		}
		return n
	}
	before := drops()
	var patched productDoc
	decode(t, do(t, request{Method: "PATCH", Path: path, Token: sh.adminToken(t), Body: map[string]any{"stock": 7}}), http.StatusOK, &patched)
	handled := waitDrops(before)
	// Let the readers go on for a while after the event.
	for deadline := time.Now().Add(30 * time.Second); startedAfter(handled) < 40; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			break
		}
	}
	close(stop)
	wg.Wait()

	after := 0
	for _, s := range log {
		switch {
		case s.err != nil:
			t.Errorf("a read: %v", s.err)
		case s.start.After(handled):
			after++
			if s.stock != 7 || s.etag == etag {
				t.Errorf("a read begun %s after the patch's event was handled got stock %d (ETag %s); want 7, never the product as it was",
					s.start.Sub(handled), s.stock, s.etag)
			}
		}
	}
	if after == 0 {
		t.Fatal("no read began after the event; the test proved nothing")
	}
	// The old tag no longer matches: the client gets the product as patched.
	var now productDoc
	decode(t, do(t, request{Base: gw.base, Method: "GET", Path: path, Header: map[string]string{"If-None-Match": etag}}), http.StatusOK, &now)
	if now.Stock != 7 {
		t.Errorf("GET with the old ETag: stock %d; want 7", now.Stock)
	}
}
