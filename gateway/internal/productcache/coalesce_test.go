package productcache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/gateway/internal/productcache"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
)

// answer is a response as a test client saw it.
type answer struct {
	status             int
	xcache, etag, body string
	err                error
}

// send GETs path with the header given as name, value pairs.
func (f *fixture) send(ctx context.Context, path string, header ...string) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url+path, nil)
	if err != nil {
		return answer{err: err}
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, xcache: resp.Header.Get(productcache.Header), etag: resp.Header.Get("ETag"), body: string(b), err: err}
}

// lookups is how many lookups of kind had result so far.
func (f *fixture) lookups(t *testing.T, kind, result string) int {
	t.Helper()
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if mf.GetName() == "gateway_product_cache_lookups_total" && labels["kind"] == kind && labels["result"] == result {
				return int(m.GetCounter().GetValue())
			}
		}
	}
	return 0
}

// waitLookups polls until n lookups of kind had result.
func (f *fixture) waitLookups(t *testing.T, kind, result string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); f.lookups(t, kind, result) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d %s lookups with result %s after 10s; want %d", f.lookups(t, kind, result), kind, result, n)
		}
	}
}

// gate holds the upstream's first answer until it is opened, and says when that
// request has arrived.
type gate struct {
	arrived, open chan struct{}
	once          *sync.Once
}

// newGate is a closed gate. A test opens it at its end at the latest (t.Cleanup,
// registered after the fixture's server, so that it runs before the server waits for
// its requests to end), so that a failed test leaves nothing waiting.
func newGate() gate {
	return gate{arrived: make(chan struct{}), open: make(chan struct{}), once: &sync.Once{}}
}

// release opens the gate.
func (g gate) release() { g.once.Do(func() { close(g.open) }) }

// await waits for ch to be closed, and fails the test after ten seconds: a request
// that never gets where the test waits for it (one that skipped Redis because an
// earlier call timed out, say) must fail the test, not hang the package until go
// test's own timeout hides which test it was.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10s for %s", what)
	}
}

// hold is called by the upstream for its n-th request.
func (g gate) hold(n int) {
	if n == 1 {
		close(g.arrived)
		<-g.open
	}
}

// Issue 9: 200 concurrent reads of a cold product (or list page) reach inventory
// once; the others wait for that one answer, then the copy is kept.
func TestConcurrentColdReadsAskTheUpstreamOnce(t *testing.T) {
	t.Parallel()
	const n = 200
	path := "/api/v1/products/" + uuid.NewString()
	list := "/api/v1/products?limit=5"
	gates := map[string]gate{path: newGate(), list: newGate()}
	f := newFixture(t, redistest.New(t), func(w http.ResponseWriter, r *http.Request, n int) {
		gates[r.URL.RequestURI()].hold(n)
		listing(w, r, n)
	})
	for _, g := range gates {
		t.Cleanup(g.release)
	}
	for _, c := range []struct{ kind, path, body string }{
		{"product", path, listRead(path, 1)},
		{"list", list, listRead(list, 1)},
	} {
		t.Run(c.kind, func(t *testing.T) {
			g := gates[c.path]
			out := make([]answer, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { out[i] = f.send(t.Context(), c.path) })
			}
			await(t, g.arrived, "the first request to reach the upstream")
			// Every other request is waiting for the first one's answer before it
			// is let through.
			f.waitLookups(t, c.kind, "shared", n-1)
			g.release()
			wg.Wait()

			want := httpserver.ETag([]byte(c.body))
			for i, a := range out {
				if a.err != nil || a.status != http.StatusOK || a.xcache != productcache.Miss || a.body != c.body || a.etag != want {
					t.Fatalf("request %d: %+v; want 200 MISS %s with ETag %s", i, a, c.body, want)
				}
			}
			if calls := f.up.count(c.path); calls != 1 {
				t.Fatalf("%d concurrent cold reads asked the upstream %d times; want once", n, calls)
			}
			a := f.send(t.Context(), c.path)
			if a.xcache != productcache.Hit {
				t.Errorf("the read after them: %+v; want the shared answer kept (HIT)", a)
			}
			if a.body != c.body {
				t.Errorf("the read after them: body %s; want the shared answer's, %s", a.body, c.body)
			}
			if a.etag != want {
				t.Errorf("the read after them: ETag %s; want the shared answer's, %s", a.etag, want)
			}
			if got := f.lookups(t, c.kind, "miss"); got != 1 {
				t.Errorf("%d misses counted; want 1", got)
			}
		})
	}
}

// The race coalescing must not lose: a read that began before a change's event was
// handled must not give its answer to a read that began after it, nor keep it as
// current. Here the product changes, and its event is handled, while the first read
// waits for the upstream.
func TestAReadBegunAfterAChangeNeverGetsTheAnswerOfOneBegunBeforeIt(t *testing.T) {
	t.Parallel()
	g := newGate()
	f := newFixture(t, redistest.New(t), func(w http.ResponseWriter, r *http.Request, n int) {
		g.hold(n)
		product(w, r, n)
	})
	t.Cleanup(g.release)
	id := uuid.New()
	path := "/api/v1/products/" + id.String()
	stale, fresh := read(path, 1), read(path, 2)

	var wg sync.WaitGroup
	var first, early answer
	wg.Go(func() { first = f.send(t.Context(), path) })
	await(t, g.arrived, "the first request to reach the upstream") // the upstream has read the product as it was
	// A read that begins before the change: it waits for the first.
	wg.Go(func() { early = f.send(t.Context(), path) })
	f.waitLookups(t, "product", "shared", 1)

	// The product changes; its event is handled.
	if err := f.cache.Forget(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	// A read that begins now must not wait for the first (nor get its answer): it
	// asks the upstream, which answers with the product as changed.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if a := f.send(ctx, path); a.status != http.StatusOK || a.xcache != productcache.Miss || a.body != fresh {
		t.Fatalf("the read after the event: %+v; want 200 MISS %s at once, not the answer of the read under way", a, fresh)
	}

	g.release()
	wg.Wait()
	// The reads that began before the change get its answer: they overlapped it.
	for name, a := range map[string]answer{"the first read": first, "the read that waited": early} {
		if a.status != http.StatusOK || a.body != stale {
			t.Errorf("%s: %+v; want 200 %s", name, a, stale)
		}
	}
	// The stale answer, stored last, was not kept over the fresh copy.
	if a := f.send(t.Context(), path); a.xcache != productcache.Hit || a.body != fresh {
		t.Errorf("the next read: %+v; want the fresh copy (HIT %s)", a, fresh)
	}
	if calls := f.up.count(path); calls != 2 {
		t.Errorf("the upstream was asked %d times; want 2", calls)
	}
}

// What may not be kept is not shared either: after a failed fetch each waiting read
// asks for itself, and gets its own answer.
func TestAFailedFetchIsNotShared(t *testing.T) {
	t.Parallel()
	const waiting = 5
	g := newGate()
	f := newFixture(t, redistest.New(t), func(w http.ResponseWriter, r *http.Request, n int) {
		g.hold(n)
		if n == 1 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		product(w, r, n)
	})
	t.Cleanup(g.release)
	path := "/api/v1/products/" + uuid.NewString()
	out := make([]answer, waiting)
	var wg sync.WaitGroup
	var first answer
	wg.Go(func() { first = f.send(t.Context(), path) })
	await(t, g.arrived, "the first request to reach the upstream")
	for i := range waiting {
		wg.Go(func() { out[i] = f.send(t.Context(), path) })
	}
	f.waitLookups(t, "product", "shared", waiting)
	g.release()
	wg.Wait()
	if first.status != http.StatusServiceUnavailable || first.etag != "" {
		t.Errorf("the first read: %+v; want the upstream's 503, untagged", first)
	}
	for i, a := range out {
		if a.status != http.StatusOK || a.xcache != productcache.Miss {
			t.Errorf("waiting read %d: %+v; want 200 MISS from a request of its own", i, a)
		}
	}
	if calls := f.up.count(path); calls != 1+waiting {
		t.Errorf("the upstream was asked %d times; want %d (the first, then each waiting read)", calls, 1+waiting)
	}
}

// The request to the upstream is not its first client's alone: when that client
// leaves, the answer still reaches the others and is kept.
func TestAReadWhoseClientLeavesStillAnswersTheOthers(t *testing.T) {
	t.Parallel()
	g := newGate()
	upstreamErr := make(chan error, 1)
	f := newFixture(t, redistest.New(t), func(w http.ResponseWriter, r *http.Request, n int) {
		g.hold(n)
		upstreamErr <- r.Context().Err()
		product(w, r, n)
	})
	t.Cleanup(g.release)
	path := "/api/v1/products/" + uuid.NewString()
	ctx, leave := context.WithCancel(t.Context())
	firstDone := make(chan answer, 1)
	go func() { firstDone <- f.send(ctx, path) }()
	await(t, g.arrived, "the first request to reach the upstream")
	var wg sync.WaitGroup
	var other answer
	wg.Go(func() { other = f.send(t.Context(), path) })
	f.waitLookups(t, "product", "shared", 1)
	leave()
	// The first client gives up at once; the upstream is not told to.
	select {
	case first := <-firstDone:
		if !errors.Is(first.err, context.Canceled) {
			t.Errorf("the first client: %+v; want it gone", first)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first client's request did not end within 10s of it leaving")
	}
	g.release()
	wg.Wait()
	if err := <-upstreamErr; err != nil {
		t.Errorf("the upstream's request ended with the first client: %v", err)
	}
	if other.status != http.StatusOK || other.body != read(path, 1) {
		t.Errorf("the other read: %+v; want 200 %s", other, read(path, 1))
	}
	if a := f.send(t.Context(), path); a.xcache != productcache.Hit {
		t.Errorf("the next read: %+v; want a HIT", a)
	}
}

// Issue 9: an ETag on every product read, from the cache or not, and 304 Not
// Modified without a body for a client that has it already.
func TestProductReadsHaveETagsAndAnswer304WhenTheyMatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), listing)
	id := uuid.New()
	path := "/api/v1/products/" + id.String()
	list := "/api/v1/products?limit=3"
	for _, p := range []string{path, list} {
		body := listRead(p, 1)
		etag := httpserver.ETag([]byte(body))
		// A MISS: already tagged, and 304 when the client has that answer.
		a := f.send(t.Context(), p, "If-None-Match", etag)
		if a.status != http.StatusNotModified {
			t.Errorf("GET %s with its ETag, cold: %+v; want 304", p, a)
		}
		if a.xcache != productcache.Miss {
			t.Errorf("GET %s with its ETag, cold: X-Cache %q; want MISS", p, a.xcache)
		}
		if a.etag != etag {
			t.Errorf("GET %s with its ETag, cold: ETag %s; want %s", p, a.etag, etag)
		}
		if a.body != "" {
			t.Errorf("GET %s with its ETag, cold: body %q; want none", p, a.body)
		}
		// A HIT: the tag kept with the copy.
		if a := f.send(t.Context(), p); a.status != http.StatusOK || a.xcache != productcache.Hit || a.etag != etag || a.body != body {
			t.Errorf("GET %s: %+v; want 200 HIT %s with ETag %s", p, a, body, etag)
		}
		for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
			a := f.send(t.Context(), p, "If-None-Match", inm)
			if a.status != http.StatusNotModified {
				t.Errorf("GET %s, If-None-Match %s: %+v; want 304", p, inm, a)
			}
			if a.etag != etag {
				t.Errorf("GET %s, If-None-Match %s: ETag %s; want %s", p, inm, a.etag, etag)
			}
			if a.body != "" {
				t.Errorf("GET %s, If-None-Match %s: body %q; want none", p, inm, a.body)
			}
			if a.xcache != productcache.Hit {
				t.Errorf("GET %s, If-None-Match %s: X-Cache %q; want HIT", p, inm, a.xcache)
			}
		}
		a = f.send(t.Context(), p, "If-None-Match", `"other"`)
		if a.status != http.StatusOK {
			t.Errorf("GET %s with another ETag: %+v; want 200", p, a)
		}
		if a.body != body {
			t.Errorf("GET %s with another ETag: body %q; want the answer, %s", p, a.body, body)
		}
	}

	// After a change the old tag no longer matches: the client gets the new answer.
	old := httpserver.ETag([]byte(listRead(path, 1)))
	if err := f.cache.Forget(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	a := f.send(t.Context(), path, "If-None-Match", old)
	if a.status != http.StatusOK {
		t.Errorf("GET after a change with the old ETag: %+v; want 200", a)
	}
	if want := listRead(path, 2); a.body != want {
		t.Errorf("GET after a change with the old ETag: body %s; want the new answer, %s", a.body, want)
	}
	if want := httpserver.ETag([]byte(listRead(path, 2))); a.etag != want {
		t.Errorf("GET after a change with the old ETag: ETag %s; want the new answer's, %s", a.etag, want)
	}

	// Answers that are not kept are tagged too (a made-up cursor); errors are not.
	crafted := "/api/v1/products?cursor=made-up"
	if a := f.send(t.Context(), crafted, "If-None-Match", httpserver.ETag([]byte(read(crafted, 1)))); a.status != http.StatusNotModified || a.xcache != productcache.Miss {
		t.Errorf("GET %s with its ETag: %+v; want 304 MISS", crafted, a)
	}
	if a := f.send(t.Context(), "/api/v1/products?junk=1", "If-None-Match", "*"); a.status != http.StatusUnprocessableEntity || a.etag != "" {
		t.Errorf("a refused list query with If-None-Match *: %+v; want 422 without an ETag", a)
	}
}

func TestETagsWithoutRedis(t *testing.T) {
	t.Parallel()
	closed := "redis://" + closedport.Addr(t) + "/0"
	f := newFixture(t, closed, product)
	path := "/api/v1/products/" + uuid.NewString()
	for n := 1; n <= 2; n++ {
		etag := httpserver.ETag([]byte(read(path, n)))
		a := f.send(t.Context(), path, "If-None-Match", etag)
		if a.status != http.StatusNotModified {
			t.Errorf("read %d without Redis, with its ETag: %+v; want 304", n, a)
		}
		if a.etag != etag {
			t.Errorf("read %d without Redis, with its ETag: ETag %s; want %s", n, a.etag, etag)
		}
		if a.xcache != productcache.Miss {
			t.Errorf("read %d without Redis, with its ETag: X-Cache %q; want MISS", n, a.xcache)
		}
	}
}

func TestLargeAnswersAreLetThroughUntagged(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.New(t), func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"read":%d,"pad":"`, n)
		for range productcache.MaxBody/1000 + 1 {
			fmt.Fprint(w, strings.Repeat("x", 1000))
		}
		fmt.Fprint(w, `"}`)
	})
	path := "/api/v1/products/" + uuid.NewString()
	for range 2 {
		a := f.send(t.Context(), path, "If-None-Match", "*")
		if a.status != http.StatusOK {
			t.Fatalf("a large answer: %d (%v); want 200", a.status, a.err)
		}
		if a.etag != "" {
			t.Errorf("a large answer: ETag %q; want it untagged", a.etag)
		}
		if len(a.body) <= productcache.MaxBody {
			t.Errorf("a large answer: %d bytes; want it whole, more than %d", len(a.body), productcache.MaxBody)
		}
		if a.xcache != productcache.Miss {
			t.Errorf("a large answer: X-Cache %q; want a MISS", a.xcache)
		}
	}
}
