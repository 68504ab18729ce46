package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/go-chi/chi/v5"
)

func TestMiddlewareCountsByRoutePattern(t *testing.T) {
	t.Parallel()
	reg := New()
	r := chi.NewRouter()
	r.Use(reg.Middleware)
	r.Get("/users/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	r.Handle("/metrics", reg.Handler())
	srv := httptest.NewServer(r)
	defer srv.Close()

	for _, p := range []string{"/users/1", "/users/2", "/nowhere"} {
		resp, err := testhttp.Client.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := testhttp.Client.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`http_requests_total{code="404",method="GET",route="/users/{id}"} 2`,
		`http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`http_request_duration_seconds_bucket{code="404",method="GET",route="/users/{id}",le="10"} 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
