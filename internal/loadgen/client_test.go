package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// testClient is a client of srv with a fake clock.
func testClient(srv *httptest.Server, clk clock, maxWaits int) *client {
	return &client{hc: srv.Client(), base: srv.URL, timeout: 5 * time.Second, clock: clk, maxWaits: maxWaits, stats: newStats()}
}

// answersInTurn serves the handlers in turn, one per request, the last one for good.
func answersInTurn(t *testing.T, hs ...http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		hs[min(i, len(hs)-1)](w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func tooMany(retryAfter string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"type":"urn:bazaar:problem:rate_limited","title":"Too Many Requests","status":429}`)
	}
}

func ok(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

var getX = call{endpoint: "x", method: http.MethodGet, path: "/x"}

func TestClientWaitsOutA429AsRetryAfterSaysAndSendsAgain(t *testing.T) {
	t.Parallel()
	srv, n := answersInTurn(t, tooMany("2"), ok(`{"fine":true}`))
	clk := newFakeClock()
	cl := testClient(srv, clk, 10)
	a, err := cl.do(t.Context(), getX)
	if err != nil {
		t.Fatalf("do: %v; want the 200", err)
	}
	if a.status != http.StatusOK {
		t.Fatalf("do = %d %s; want the 200", a.status, a.body)
	}
	if string(a.body) != `{"fine":true}` {
		t.Errorf("do: body %s; want the 200's, {\"fine\":true}", a.body)
	}
	if n.Load() != 2 {
		t.Errorf("%d requests; want 2", n.Load())
	}
	if got := clk.sleeps(); !slices.Equal(got, []time.Duration{2 * time.Second}) {
		t.Errorf("waited %v; want the 2s of Retry-After", got)
	}
	s := cl.stats.summary()
	if s.RateLimited != 1 || s.RateLimitedBy["x"] != 1 || len(s.Errors) != 0 || s.Requests["x"] != 2 {
		t.Errorf("counted rate limited %d (%v), errors %v, requests %v; want 1 waited out, no errors, 2 requests",
			s.RateLimited, s.RateLimitedBy, s.Errors, s.Requests)
	}
}

func TestClientGivesUpAfterMaxWaits(t *testing.T) {
	t.Parallel()
	srv, n := answersInTurn(t, tooMany("1"))
	clk := newFakeClock()
	cl := testClient(srv, clk, 3)
	_, err := cl.do(t.Context(), getX)
	if kindOf(err) != ErrRateLimited || !transient(err) {
		t.Fatalf("err = %v (kind %s); want a transient %s", err, kindOf(err), ErrRateLimited)
	}
	if n.Load() != 4 || len(clk.sleeps()) != 3 {
		t.Errorf("%d requests, %d waits; want 4 and 3", n.Load(), len(clk.sleeps()))
	}
	s := cl.stats.summary()
	if s.RateLimited != 3 || s.Errors[ErrRateLimited] != 1 {
		t.Errorf("rate limited %d, errors %v; want 3 waited out and one 429 error", s.RateLimited, s.Errors)
	}
}

func TestClientWaitsOutA429BeforeAStream(t *testing.T) {
	t.Parallel()
	srv, _ := answersInTurn(t, tooMany(""), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: status\ndata: {}\n\n")
	})
	clk := newFakeClock()
	cl := testClient(srv, clk, 10)
	resp, err := cl.open(t.Context(), getX)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "event: status\ndata: {}\n\n" {
		t.Errorf("stream %q", body)
	}
	if got := clk.sleeps(); !slices.Equal(got, []time.Duration{time.Second}) {
		t.Errorf("waited %v; want 1s (no Retry-After)", got)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		header string
		want   time.Duration
	}{
		{"3", 3 * time.Second},
		{" 7 ", 7 * time.Second},
		{"", time.Second},
		{"soon", time.Second},
		{"-2", time.Second},
		{"0", 100 * time.Millisecond},
		{"3600", time.Minute},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 100 * time.Millisecond},
	} {
		h := http.Header{}
		if c.header != "" {
			h.Set("Retry-After", c.header)
		}
		if got := retryAfter(h, now); got != c.want {
			t.Errorf("Retry-After %q: %s; want %s", c.header, got, c.want)
		}
	}
}

func TestClientClassifiesFailures(t *testing.T) {
	t.Parallel()
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer unavailable.Close()
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; the client gives up
	}))
	defer hanging.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	closed := closedport.URL(t)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, c := range []struct {
		name    string
		base    string
		timeout time.Duration
		ctx     context.Context
		kind    string // "" for no error
		counted bool
	}{
		{"5xx", unavailable.URL, time.Second, t.Context(), ErrServer, true},
		{"timeout", hanging.URL, 50 * time.Millisecond, t.Context(), ErrTimeout, true},
		{"network", closed, time.Second, t.Context(), ErrNetwork, true},
		{"interrupted", unavailable.URL, time.Second, cancelled, ErrInterrupted, false},
		{"4xx is the caller's", notFound.URL, time.Second, t.Context(), "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := &client{hc: &http.Client{Transport: testhttp.Transport}, base: c.base, timeout: c.timeout, clock: realClock{}, maxWaits: 1, stats: newStats()}
			a, err := cl.do(c.ctx, getX)
			if c.kind == "" {
				if err != nil || a.status != http.StatusNotFound {
					t.Fatalf("do = %d, %v; want the 404 and no error", a.status, err)
				}
			} else if kindOf(err) != c.kind {
				t.Fatalf("err = %v, kind %q; want kind %q", err, kindOf(err), c.kind)
			}
			errs := cl.stats.summary().Errors
			if want := map[string]int{c.kind: 1}; c.counted && !mapsEqual(errs, want) {
				t.Errorf("errors %v; want %v", errs, want)
			}
			if !c.counted && len(errs) != 0 {
				t.Errorf("errors %v; want none counted", errs)
			}
		})
	}
}

func TestStreamOpenTimesOutOnlyBeforeTheHeaders(t *testing.T) {
	t.Parallel()
	arrived := make(chan string, 2)
	proceed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		if r.URL.Path == "/silent" {
			<-r.Context().Done() // no headers, ever
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select { // the rest of the stream comes when the test says so
		case <-proceed:
			io.WriteString(w, "data: done\n\n")
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	clk := newFakeClock()
	cl := &client{hc: srv.Client(), base: srv.URL, timeout: time.Second, clock: clk, maxWaits: 1, stats: newStats()}

	// Headers in time: the time-out passing later does not cut the stream.
	resp, err := cl.open(t.Context(), getX)
	if err != nil {
		t.Fatal(err)
	}
	<-arrived
	clk.advance(time.Hour)
	close(proceed)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "data: done\n\n" {
		t.Errorf("stream after the time-out: %q, %v; want it whole", body, err)
	}

	// No headers: the time-out ends the request.
	errc := make(chan error, 1)
	go func() {
		_, err := cl.open(t.Context(), call{endpoint: "x", method: http.MethodGet, path: "/silent"})
		errc <- err
	}()
	<-arrived
	clk.advance(time.Second)
	if err := <-errc; kindOf(err) != ErrTimeout {
		t.Errorf("a stream without headers: %v (kind %s); want a time-out", err, kindOf(err))
	}
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	wrapped := fmt.Errorf("placing: %w", &requestError{ErrServer, 503, errors.New("down")})
	if got := kindOf(wrapped); got != ErrServer {
		t.Errorf("kindOf(%v) = %s, want %s", wrapped, got, ErrServer)
	}
	if !transient(wrapped) {
		t.Errorf("transient(%v) = false, want true", wrapped)
	}
	if got := kindOf(context.Canceled); got != ErrInterrupted {
		t.Errorf("a context's end is %s, want %s", got, ErrInterrupted)
	}
	if transient(context.Canceled) {
		t.Error("a context's end is transient, want not")
	}
	if kindOf(errors.New("eh")) != ErrNetwork {
		t.Error("an unknown error should count as network")
	}
	if transient(&requestError{ErrClient, 422, errors.New("bad")}) {
		t.Error("a 4xx is not transient")
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
