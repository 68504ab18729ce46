package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/bazaar-shop/bazaar/gateway/internal/proxy"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// balanced is the balancer of a service with instances at urls, comma-separated.
func balanced(t *testing.T, name, urls string, s balancer.Settings) *balancer.Balancer {
	t.Helper()
	log, err := logging.New(t.Output(), "debug", "gateway")
	if err != nil {
		t.Fatal(err)
	}
	list, err := balancer.SplitURLs(urls)
	if err != nil {
		t.Fatal(err)
	}
	b, err := balancer.New(balancer.Options{Name: name, URLs: list, Settings: s, Log: log.With("upstream", name)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// newGateway is a gateway in miniature: the standard router and middleware (request
// ids, tracing, body limit) with every path proxied to upstream, the users service's
// instances (comma-separated URLs).
func newGateway(t *testing.T, upstream string, timeout time.Duration) http.Handler {
	t.Helper()
	return newBalancedGateway(t, balanced(t, "users", upstream, balancer.Settings{}), timeout)
}

func newBalancedGateway(t *testing.T, up *balancer.Balancer, timeout time.Duration) http.Handler {
	t.Helper()
	return newBalancedGatewayOn(t, false, up, timeout)
}

// forBothPaths runs a test of reads on both the paths a read can take: ReverseProxy,
// which a proxy whose calls are traced (Options.Tracing) sends them all through, and
// the direct path, which one whose calls are not traced takes for reads.
func forBothPaths(t *testing.T, test func(t *testing.T, direct bool)) {
	for _, direct := range []bool{false, true} {
		name := "traced"
		if direct {
			name = "direct"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, direct)
		})
	}
}

// serveGatewayOn runs newGateway, its proxy taking the direct path for reads or not.
func serveGatewayOn(t *testing.T, direct bool, upstream string, timeout time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newBalancedGatewayOn(t, direct, balanced(t, "users", upstream, balancer.Settings{}), timeout))
	t.Cleanup(srv.Close)
	return srv
}

// newBalancedGatewayOn is newBalancedGateway, its proxy's calls traced or (direct)
// not; untraced, the trace is passed on by the handler before the proxy, as the
// gateway's httpapi does.
func newBalancedGatewayOn(t *testing.T, direct bool, up *balancer.Balancer, timeout time.Duration) http.Handler {
	t.Helper()
	log, err := logging.New(t.Output(), "debug", "gateway")
	if err != nil {
		t.Fatal(err)
	}
	tracing, err := telemetry.Setup(context.Background(), "gateway", telemetry.Export{})
	if err != nil {
		t.Fatal(err)
	}
	opts := proxy.Options{Timeout: timeout, Log: log, Tracing: tracing}
	if direct {
		opts.Tracing = nil
	}
	p, err := proxy.New(up, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := httpserver.NewRouter(httpserver.Deps{Log: log, Metrics: metrics.New(), Tracing: tracing})
	if !direct {
		r.Handle("/*", p)
		return r
	}
	r.Handle("/*", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tracing.Propagator.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
		p.ServeHTTP(w, req)
	}))
	return r
}

// serveGateway runs newGateway on a real listener.
func serveGateway(t *testing.T, upstream string, timeout time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newGateway(t, upstream, timeout))
	t.Cleanup(srv.Close)
	return srv
}

// seen is what an upstream received.
type seen struct {
	method, requestURI, host, body string
	header                         http.Header
}

// recordingUpstream answers 201 with a fixed body, echoing the request id as a
// service does, and hands each request it received to the returned channel.
func recordingUpstream(t *testing.T) (*httptest.Server, <-chan seen) {
	t.Helper()
	got := make(chan seen, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Host, string(body), r.Header.Clone()}
		w.Header().Set(httpserver.RequestIDHeader, r.Header.Get(httpserver.RequestIDHeader))
		w.Header().Set("X-Upstream", "users")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"answer":42}`)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func receive(t *testing.T, got <-chan seen) seen {
	t.Helper()
	select {
	case s := <-got:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream received no request")
		return seen{}
	}
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func decodeProblem(t *testing.T, resp *http.Response, body string) problem.Details {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("content type %q, want %q; body %s", ct, problem.ContentType, body)
	}
	var d problem.Details
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	return closedport.URL(t)
}

func TestForwardsPathBodyAndRequestIDUnchanged(t *testing.T) {
	t.Parallel()
	up, got := recordingUpstream(t)
	gw := serveGateway(t, up.URL, 5*time.Second)

	const path = "/api/v1/auth/a%2Fb/register?x=1&y=%20z"
	const body = `{"email":"ann@example.com","password":"secret-pass"}`
	req, _ := http.NewRequest(http.MethodPost, gw.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(httpserver.RequestIDHeader, "req-123")
	resp, respBody := do(t, req)

	s := receive(t, got)
	if s.method != http.MethodPost || s.requestURI != path || s.body != body {
		t.Errorf("upstream got %s %s %q; want POST %s %q", s.method, s.requestURI, s.body, path, body)
	}
	if id := s.header.Get(httpserver.RequestIDHeader); id != "req-123" {
		t.Errorf("upstream got request id %q, want req-123", id)
	}
	if ct := s.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("upstream got content type %q", ct)
	}
	if u, _ := url.Parse(up.URL); s.host != u.Host {
		t.Errorf("upstream got Host %q, want its own %q", s.host, u.Host)
	}

	if resp.StatusCode != http.StatusCreated {
		t.Errorf("client got %d; want the upstream's 201", resp.StatusCode)
	}
	if respBody != `{"answer":42}` {
		t.Errorf("client got body %q; want the upstream's {\"answer\":42}", respBody)
	}
	if got := resp.Header.Get("X-Upstream"); got != "users" {
		t.Errorf("client got X-Upstream %q; want the upstream's users", got)
	}
	if ids := resp.Header.Values(httpserver.RequestIDHeader); len(ids) != 1 || ids[0] != "req-123" {
		t.Errorf("client got X-Request-ID %q, want exactly [req-123]", ids)
	}
}

func TestRequestIDIsTheGatewaysWhenTheClientSendsNone(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		up, got := recordingUpstream(t)
		gw := serveGatewayOn(t, direct, up.URL, 5*time.Second)

		for _, clientID := range []string{"", "not a sane id!"} {
			req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
			if clientID != "" {
				req.Header.Set(httpserver.RequestIDHeader, clientID)
			}
			resp, _ := do(t, req)
			upstreamID := receive(t, got).header.Get(httpserver.RequestIDHeader)
			if upstreamID == "" || upstreamID == clientID {
				t.Errorf("client id %q: upstream got %q, want one the gateway made", clientID, upstreamID)
			}
			if ids := resp.Header.Values(httpserver.RequestIDHeader); len(ids) != 1 || ids[0] != upstreamID {
				t.Errorf("client id %q: response X-Request-ID %q, want exactly [%s]", clientID, ids, upstreamID)
			}
		}
	})
}

func TestForwardedHeadersAreTheGatewaysOwn(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		up, got := recordingUpstream(t)
		gw := serveGatewayOn(t, direct, up.URL, 5*time.Second)

		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("Forwarded", "for=6.6.6.6;proto=https")
		do(t, req)

		h := receive(t, got).header
		gwHost := strings.TrimPrefix(gw.URL, "http://")
		want := map[string]string{
			"X-Forwarded-For":   "127.0.0.1", // the peer the gateway saw, and nothing the client claimed
			"X-Forwarded-Host":  gwHost,
			"X-Forwarded-Proto": "http",
			"Forwarded":         "",
		}
		for name, v := range want {
			if got := strings.Join(h.Values(name), ", "); got != v {
				t.Errorf("upstream got %s %q, want %q", name, got, v)
			}
		}
	})
}

var traceparent = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$`)

func TestTraceContextPropagated(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		up, got := recordingUpstream(t)
		gw := serveGatewayOn(t, direct, up.URL, 5*time.Second)

		const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
		req.Header.Set("traceparent", "00-"+traceID+"-"+clientSpan+"-01")
		do(t, req)
		m := traceparent.FindStringSubmatch(receive(t, got).header.Get("traceparent"))
		if m == nil {
			t.Errorf("upstream got no traceparent; want trace %s with the gateway's own span", traceID)
		} else {
			if m[1] != traceID {
				t.Errorf("upstream got trace %s; want the client's, %s", m[1], traceID)
			}
			if m[2] == clientSpan {
				t.Errorf("upstream got the client's span %s; want the gateway's own", m[2])
			}
		}

		// Without one from the client, the gateway starts the trace.
		req, _ = http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
		do(t, req)
		if tp := receive(t, got).header.Get("traceparent"); !traceparent.MatchString(tp) {
			t.Errorf("upstream got traceparent %q, want one the gateway started", tp)
		}
	})
}

func TestUpstreamAnswersPassThrough(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		const body = `{"type":"urn:bazaar:problem:unavailable","title":"Service Unavailable","status":503,"detail":"postgres is down"}` + "\n"
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", problem.ContentType)
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, body)
		}))
		t.Cleanup(up.Close)
		gw := serveGatewayOn(t, direct, up.URL, 5*time.Second)

		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
		resp, got := do(t, req)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("got %d; want the upstream's own 503", resp.StatusCode)
		}
		if got != body {
			t.Errorf("got body %q; want the upstream's own, unchanged: %q", got, body)
		}
	})
}

// assertNamesOnlyTheService checks that a failure names the upstream service but none
// of its addresses.
func assertNamesOnlyTheService(t *testing.T, d problem.Details, body, upstream string) {
	t.Helper()
	u, _ := url.Parse(upstream)
	if !strings.Contains(d.Detail, "users") {
		t.Errorf("detail %q does not name the users service", d.Detail)
	}
	for _, leak := range []string{u.Host, u.Port(), "127.0.0.1"} {
		if strings.Contains(body, leak) {
			t.Errorf("the answer leaks %q: %s", leak, body)
		}
	}
}

func TestRefusedUpstreamIsBadGateway(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		upstream := closedURL(t)
		gw := serveGatewayOn(t, direct, upstream, 5*time.Second)

		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
		resp, body := do(t, req)
		d := decodeProblem(t, resp, body)
		if resp.StatusCode != http.StatusBadGateway || d.Type != problem.TypePrefix+"bad_gateway" {
			t.Errorf("got %d %s, want 502 bad_gateway", resp.StatusCode, d.Type)
		}
		if d.RequestID == "" || d.RequestID != resp.Header.Get(httpserver.RequestIDHeader) {
			t.Errorf("problem request_id %q, header %q: want the same id", d.RequestID, resp.Header.Get(httpserver.RequestIDHeader))
		}
		assertNamesOnlyTheService(t, d, body, upstream)
	})
}

func TestSlowUpstreamIsGatewayTimeout(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		released := make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // answers only when the gateway gives up
			close(released)
		}))
		t.Cleanup(up.Close)
		gw := serveGatewayOn(t, direct, up.URL, 200*time.Millisecond)

		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
		resp, body := do(t, req)
		d := decodeProblem(t, resp, body)
		if resp.StatusCode != http.StatusGatewayTimeout || d.Type != problem.TypePrefix+"timeout" {
			t.Errorf("got %d %s, want 504 timeout", resp.StatusCode, d.Type)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the gateway answered after %s; its timeout is 200ms", took)
		}
		assertNamesOnlyTheService(t, d, body, up.URL)
		select { // the gateway hung up on the upstream rather than leave the call running
		case <-released:
		case <-time.After(5 * time.Second):
			t.Error("the upstream's request was never cancelled")
		}
	})
}

func TestPostIsSentOnceWhenTheUpstreamDropsTheConnection(t *testing.T) {
	t.Parallel()
	var posts atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			io.WriteString(w, "warm") // leaves a kept-alive connection for the POST to reuse
			return
		}
		posts.Add(1)
		io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close() // the upstream dies after taking the order, without a word
	}))
	t.Cleanup(up.Close)
	gw := serveGateway(t, up.URL, 5*time.Second)

	// A dropped reused connection is where Go's Transport retries a replayable
	// request: a GET, or a request with an Idempotency-Key header and no body. Each
	// round sets that up and checks that a POST is sent once, with a body or
	// without, with the header or without.
	for _, tc := range []struct {
		name, path, body string
		header           http.Header
	}{
		{"body", "/api/v1/auth/register", `{"email":"a@b.c"}`, nil},
		{"body and Idempotency-Key", "/api/v1/orders", `{"items":[]}`, http.Header{"Idempotency-Key": {"k1"}}},
		{"Idempotency-Key, no body", "/api/v1/orders/o1/cancel", "", http.Header{"Idempotency-Key": {"k2"}}},
		{"X-Idempotency-Key, no body", "/api/v1/orders/o1/cancel", "", http.Header{"X-Idempotency-Key": {"k3"}}},
	} {
		const rounds = 3
		before := posts.Load()
		for range rounds {
			warm, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/auth/warm", nil)
			if resp, _ := do(t, warm); resp.StatusCode != http.StatusOK {
				t.Fatalf("warm-up got %d", resp.StatusCode)
			}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(http.MethodPost, gw.URL+tc.path, body)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, respBody := do(t, req)
			if d := decodeProblem(t, resp, respBody); resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s: got %d %+v, want 502", tc.name, resp.StatusCode, d)
			}
		}
		if n := posts.Load() - before; n != rounds {
			t.Errorf("%s: the upstream received %d POSTs for %d sent", tc.name, n, rounds)
		}
	}
}

func TestBodylessWriteWithIdempotencyKeyArrivesUnchanged(t *testing.T) {
	t.Parallel()
	up, got := recordingUpstream(t)
	gw := serveGateway(t, up.URL, 5*time.Second)

	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/api/v1/orders/o1/cancel", nil)
	req.Header.Set("Idempotency-Key", "k1")
	if resp, body := do(t, req); resp.StatusCode != http.StatusCreated {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	s := receive(t, got)
	if s.method != http.MethodPost {
		t.Errorf("upstream got %s; want POST", s.method)
	}
	if s.requestURI != "/api/v1/orders/o1/cancel" {
		t.Errorf("upstream got %s; want /api/v1/orders/o1/cancel", s.requestURI)
	}
	if s.body != "" {
		t.Errorf("upstream got body %q; want none", s.body)
	}
	if got := s.header.Get("Idempotency-Key"); got != "k1" {
		t.Errorf("upstream got Idempotency-Key %q; want k1", got)
	}
}

func TestStreamedBodyOverTheLimitIsTooLarge(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // waits for the whole body, which never completes
	}))
	t.Cleanup(up.Close)
	gw := newGateway(t, up.URL, 5*time.Second)

	// A reader of unknown length is sent chunked, so only reading it finds the size.
	big := io.MultiReader(bytes.NewReader(make([]byte, httpserver.MaxBodyBytes)), strings.NewReader("one byte too many"))
	req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/register", big)
	rec := httptest.NewRecorder()
	gw.ServeHTTP(rec, req)
	d := decodeProblem(t, rec.Result(), rec.Body.String())
	if rec.Code != http.StatusRequestEntityTooLarge || d.Type != problem.TypePrefix+"too_large" {
		t.Errorf("got %d %+v, want 413 too_large", rec.Code, d)
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	t.Parallel()
	log, _ := logging.New(io.Discard, "info", "gateway")
	up := balanced(t, "users", "http://127.0.0.1:8081", balancer.Settings{})
	for name, tc := range map[string]struct {
		up   *balancer.Balancer
		opts proxy.Options
	}{
		"no upstream":          {nil, proxy.Options{Timeout: time.Second, Log: log}},
		"no time limit":        {up, proxy.Options{Log: log}},
		"negative idle period": {up, proxy.Options{Timeout: time.Second, IdleTimeout: -time.Second, Log: log}},
	} {
		if _, err := proxy.New(tc.up, tc.opts); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
