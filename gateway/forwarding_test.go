package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/google/uuid"
)

// An upstream with UPSTREAM_MAX_IN_FLIGHT requests in flight gets no more: the next is
// answered at once, 503 with Retry-After, naming the service, rather than queued. The
// other upstreams are served meanwhile, and the bound frees up as answers come back.
func TestAnOverloadedUpstreamIsShedWith503AndRetryAfter(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	entered, release := make(chan struct{}, 10), make(chan struct{})
	orders := newUpstream(t, "orders", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"answered_by":"orders"}`)
	})
	inventory := newUpstream(t, "inventory", nil)
	gw := startGateway(t, map[string]string{
		"USERS_URL": users.URL, "ORDERS_URL": orders.URL, "INVENTORY_URL": inventory.URL,
		"UPSTREAM_MAX_IN_FLIGHT": "2",
	}).URL
	tok := users.sign(t, time.Hour)

	// Two calls fill the bound and wait in the upstream.
	statuses := make(chan int, 2)
	for range 2 {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, gw+"/api/v1/orders", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := testhttp.Client.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	for range 2 {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			close(release)
			t.Fatal("the first two calls did not reach orders")
		}
	}

	resp, body := send(t, http.MethodGet, gw+"/api/v1/orders", "", tok, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		close(release)
		t.Fatalf("a third call in flight: %d %s, want 503", resp.StatusCode, body)
	}
	d := decodeProblem(t, resp, body)
	if resp.Header.Get("Retry-After") != "1" || !strings.Contains(d.Detail, "orders") {
		t.Errorf("shed answer: Retry-After %q, problem %+v; want Retry-After 1 and the service named", resp.Header.Get("Retry-After"), d)
	}
	// Another upstream is not held up by orders' bound.
	if resp, body := get(t, gw+"/api/v1/products/"+uuid.NewString(), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("inventory while orders is full: %d %s", resp.StatusCode, body)
	}

	close(release)
	for range 2 {
		if s := <-statuses; s != http.StatusOK {
			t.Errorf("a call within the bound: %d", s)
		}
	}
	if resp, body := send(t, http.MethodGet, gw+"/api/v1/orders", "", tok, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("once the calls in flight are answered: %d %s", resp.StatusCode, body)
	}
	if n := orders.callsTo("/api/v1/orders"); n != 3 {
		t.Errorf("orders got %d calls, want 3: the shed one never reached it", n)
	}
}

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$`)

// Without an exporter the gateway still passes a trace on to the upstream: the
// caller's, under a span of the gateway's own, or one it starts.
func TestTheTraceIsPassedOnToTheUpstream(t *testing.T) {
	t.Parallel()
	inventory := newUpstream(t, "inventory", nil)
	gw := startGateway(t, map[string]string{"INVENTORY_URL": inventory.URL}).URL

	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if resp, body := get(t, gw+"/api/v1/products", http.Header{"Traceparent": {"00-" + traceID + "-" + callerSpan + "-01"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, gw+"/api/v1/products?limit=5", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	calls := inventory.calls()
	if len(calls) != 2 {
		t.Fatalf("inventory got %d calls, want 2", len(calls))
	}
	m := traceparentRE.FindStringSubmatch(calls[0].header.Get("Traceparent"))
	if m == nil {
		t.Errorf("with the caller's trace, inventory got traceparent %q; want trace %s under another span", calls[0].header.Get("Traceparent"), traceID)
	} else {
		if m[1] != traceID {
			t.Errorf("with the caller's trace, inventory got trace %s; want the caller's, %s", m[1], traceID)
		}
		if m[2] == callerSpan {
			t.Errorf("with the caller's trace, inventory got the caller's span %s; want another", m[2])
		}
	}
	m = traceparentRE.FindStringSubmatch(calls[1].header.Get("Traceparent"))
	if m == nil || m[1] == traceID {
		t.Errorf("without one, inventory got traceparent %q; want a new trace", calls[1].header.Get("Traceparent"))
	}
}
