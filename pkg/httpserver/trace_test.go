package httpserver

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Finding: request spans were named by the raw path ("GET /orders/6f1c…"), a name per
// order. They are named by the route that served them, which is also their
// http.route; a request no route matched keeps the method alone.
func TestRequestSpansAreNamedByRoute(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tr := &telemetry.Tracing{Provider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
		Propagator: propagation.TraceContext{}, Exporting: true}
	log, _ := logging.New(&syncbuf.Buffer{}, "error", "test")
	r := NewRouter(Deps{Log: log, Metrics: metrics.New(), Tracing: tr})
	r.Get("/orders/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	for _, path := range []string{"/orders/6f1c2a", "/orders/77", "/nowhere/1"} {
		resp, err := testhttp.Client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var names, routes []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
		for _, a := range s.Attributes() {
			if a.Key == "http.route" {
				routes = append(routes, a.Value.AsString())
			}
		}
	}
	want := []string{"GET /orders/{id}", "GET /orders/{id}", "GET"}
	if len(names) != len(want) || names[0] != want[0] || names[1] != want[1] || names[2] != want[2] {
		t.Errorf("span names %q, want %q", names, want)
	}
	if len(routes) != 2 || routes[0] != "/orders/{id}" {
		t.Errorf("http.route attributes %q, want the pattern on the two matched requests", routes)
	}
}
