package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// instance is one instance of a service: while up it answers every request 200 and
// its /readyz 200; while down it drops each request's connection without a word and
// its /readyz answers 503.
type instance struct {
	*httptest.Server
	up     atomic.Bool
	served atomic.Int32 // requests answered, /readyz not counted
}

func newInstance(t *testing.T) *instance {
	t.Helper()
	in := &instance{}
	in.up.Store(true)
	in.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if !in.up.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		if !in.up.Load() {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		io.Copy(io.Discard, r.Body)
		in.served.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(in.Close)
	return in
}

func send(t *testing.T, gw, method string) (int, problem.Details, http.Header) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"name":"x"}`)
	}
	req, _ := http.NewRequest(method, gw+"/api/v1/users/me", body)
	resp, respBody := do(t, req)
	var d problem.Details
	if resp.StatusCode >= 400 {
		d = decodeProblem(t, resp, respBody)
	}
	return resp.StatusCode, d, resp.Header
}

func TestRequestsAreSpreadOverTheInstances(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		a, b := newInstance(t), newInstance(t)
		gw := serveGatewayOn(t, direct, a.URL+","+b.URL, 5*time.Second)
		for range 100 {
			if status, d, _ := send(t, gw.URL, http.MethodGet); status != http.StatusOK {
				t.Fatalf("got %d %+v", status, d)
			}
		}
		for name, inst := range map[string]*instance{"first": a, "second": b} {
			if n := inst.served.Load(); n < 20 {
				t.Errorf("the %s instance served %d of 100 requests; want a share, at least 20", name, n)
			}
		}
	})
}

// A dead instance (its port closed) costs no GET anything: nothing was sent, so the
// request goes to another instance. A POST whose body went out with the first attempt
// fails while the instance is still in service, and never once it is out.
func TestADeadInstanceIsTakenOutOfService(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		live := newInstance(t)
		dead := closedURL(t)
		gw := serveGatewayOn(t, direct, dead+","+live.URL, 5*time.Second)

		for i := range 50 {
			if status, d, _ := send(t, gw.URL, http.MethodGet); status != http.StatusOK {
				t.Fatalf("GET %d: %d %+v; want 200 from the live instance", i, status, d)
			}
		}
		failed := 0
		for range 50 {
			status, d, _ := send(t, gw.URL, http.MethodPost)
			switch {
			case status == http.StatusOK:
			case status == http.StatusBadGateway && failed < 3:
				failed++ // before the ejection; bodies are not sent twice
			default:
				t.Fatalf("POST: %d %+v", status, d)
			}
		}
		if n := live.served.Load(); n < 97 {
			t.Errorf("the live instance served %d of 100", n)
		}
	})
}

// Every instance down: after the failures that take them out, the answer is a 503
// at once, naming the service and no address.
func TestWhenEveryInstanceIsDownTheAnswerIsAnImmediate503NamingTheService(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		one, two := newInstance(t), newInstance(t)
		one.up.Store(false)
		two.up.Store(false)
		up := balanced(t, "users", one.URL+","+two.URL, balancer.Settings{EjectAfter: 2, EjectBackoff: 50 * time.Millisecond, BreakerCooldown: 100 * time.Millisecond})
		gw := httptest.NewServer(newBalancedGatewayOn(t, direct, up, 5*time.Second))
		t.Cleanup(gw.Close)

		var status int
		var d problem.Details
		var h http.Header
		for i := 0; status != http.StatusServiceUnavailable; i++ {
			if i == 10 {
				t.Fatalf("still %d %+v after 10 requests to dead instances", status, d)
			}
			status, d, h = send(t, gw.URL, http.MethodGet)
			if status != http.StatusServiceUnavailable && status != http.StatusBadGateway {
				t.Fatalf("got %d %+v; want 502 until the instances are out, then 503", status, d)
			}
		}
		start := time.Now()
		for range 20 {
			status, d, h = send(t, gw.URL, http.MethodGet)
			if status != http.StatusServiceUnavailable {
				t.Fatalf("got %d %+v; want 503", status, d)
			}
			if d.Type != problem.TypePrefix+"unavailable" {
				t.Fatalf("problem type %s; want %sunavailable", d.Type, problem.TypePrefix)
			}
			if ra := h.Get("Retry-After"); ra != "1" {
				t.Fatalf("Retry-After %q; want 1", ra)
			}
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("20 refusals took %s; want them at once", took)
		}
		for _, inst := range []*instance{one, two} {
			assertNamesOnlyTheService(t, d, d.Detail, inst.URL)
		}

		// Back up: their readiness checks put them back, and requests go through.
		one.up.Store(true)
		two.up.Store(true)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if status, _, _ = send(t, gw.URL, http.MethodGet); status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still %d 10s after the instances came back", status)
			}
		}
		one.served.Store(0)
		two.served.Store(0)
		for range 100 {
			if status, d, _ := send(t, gw.URL, http.MethodGet); status != http.StatusOK {
				t.Fatalf("after recovery: %d %+v", status, d)
			}
		}
		for name, inst := range map[string]*instance{"first": one, "second": two} {
			if n := inst.served.Load(); n < 20 {
				t.Errorf("after recovery the %s instance served %d of 100; want a share, at least 20", name, n)
			}
		}
	})
}

// An instance that stops answering (its connections dropped) is taken out; the other
// serves everything; back up, it gets requests again.
func TestAnInstanceBackInServiceGetsRequestsAgain(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		flaky, steady := newInstance(t), newInstance(t)
		up := balanced(t, "users", flaky.URL+","+steady.URL, balancer.Settings{EjectAfter: 3, EjectBackoff: 50 * time.Millisecond})
		gw := httptest.NewServer(newBalancedGatewayOn(t, direct, up, 5*time.Second))
		t.Cleanup(gw.Close)

		flaky.up.Store(false)
		bad := 0
		for range 60 {
			if status, _, _ := send(t, gw.URL, http.MethodGet); status != http.StatusOK {
				bad++
			}
		}
		if bad > 3 {
			t.Errorf("%d of 60 requests failed; want at most the 3 that take the instance out", bad)
		}
		before := steady.served.Load()
		for range 40 {
			if status, d, _ := send(t, gw.URL, http.MethodGet); status != http.StatusOK {
				t.Fatalf("with the instance out: %d %+v", status, d)
			}
		}
		if steady.served.Load()-before != 40 {
			t.Errorf("the instance in service served %d of 40", steady.served.Load()-before)
		}

		flaky.up.Store(true)
		for deadline := time.Now().Add(10 * time.Second); flaky.served.Load() == 0; time.Sleep(10 * time.Millisecond) {
			if status, d, _ := send(t, gw.URL, http.MethodGet); status != http.StatusOK {
				t.Fatalf("while the instance comes back: %d %+v", status, d)
			}
			if time.Now().After(deadline) {
				t.Fatal("the instance never got a request after it came back")
			}
		}
	})
}
