package inproc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/logging"
)

type leakKey struct{}

func TestACallCarriesWhatAClientWouldSendAndNothingElse(t *testing.T) {
	var got *http.Request
	c := Client{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"name":"lamp"}`))
	})}
	page := httptest.NewRequest(http.MethodGet, "/products/1", nil)
	page.RemoteAddr = "203.0.113.7:5555"
	ctx := context.WithValue(logging.WithRequestID(page.Context(), "req-1"), leakKey{}, "the page's")
	var out struct{ Name string }
	_, err := c.Do(WithCaller(ctx, page), Request{Method: http.MethodPost, Path: "/api/v1/things?x=1", Token: "tok",
		Body: map[string]int{"n": 1}, Header: http.Header{"Idempotency-Key": {"k"}}}, &out)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if out.Name != "lamp" {
		t.Fatalf("Do decoded %+v, want the name lamp", out)
	}
	for name, want := range map[string]string{"Authorization": "Bearer tok", "X-Request-ID": "req-1",
		"Content-Type": "application/json", "Idempotency-Key": "k", "Accept": "application/json"} {
		if v := got.Header.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	if got.RemoteAddr != page.RemoteAddr {
		t.Errorf("RemoteAddr %q, want the page's %q", got.RemoteAddr, page.RemoteAddr)
	}
	if got.URL.RawQuery != "x=1" {
		t.Errorf("query %q, want x=1", got.URL.RawQuery)
	}
	if got.Context().Value(leakKey{}) != nil {
		t.Error("the page's context values reached the call")
	}
}

func TestAnErrorAnswerIsTheProblemItDescribes(t *testing.T) {
	c := Client{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"type":"urn:bazaar:problem:rate_limited","title":"Too Many Requests","status":429,"detail":"slow down"}`))
	})}
	h, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/api/v1/products"}, nil)
	if apperr.CodeOf(err) != apperr.RateLimited {
		t.Errorf("err = %v, want rate_limited", err)
	} else if !strings.Contains(err.Error(), "slow down") {
		t.Errorf("err = %v, want the problem's detail, slow down", err)
	}
	if ra := h.Get("Retry-After"); ra != "3" {
		t.Errorf("Retry-After %q, want 3", ra)
	}
	var report struct{ Status string }
	_, err = (Client{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"degraded"}`))
	})}).Do(context.Background(), Request{Method: http.MethodGet, Path: "/health", AnyStatus: true}, &report)
	if err != nil {
		t.Errorf("AnyStatus: %v", err)
	} else if report.Status != "degraded" {
		t.Errorf("AnyStatus: decoded %+v, want the status degraded", report)
	}
}

func TestAnAnswerTooLargeIsRefused(t *testing.T) {
	c := Client{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(make([]byte, maxAnswer+1))
	})}
	if _, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/big"}, nil); apperr.CodeOf(err) != apperr.BadGateway {
		t.Errorf("err = %v, want bad_gateway", err)
	}
}

func TestACallEndsWithTheRequestItIsMadeFor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	c := Client{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel()
		<-r.Context().Done()
		close(ended)
	})}
	_, _ = c.Do(ctx, Request{Method: http.MethodGet, Path: "/slow"}, nil)
	<-ended
}
