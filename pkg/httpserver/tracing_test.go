package httpserver

import (
	"net/http"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// Without an exporter the router still gives each request a trace: the caller's, from
// traceparent, so that its log lines carry the trace id the caller logged too.
func TestCallersTraceIsCarriedWithoutAnExporter(t *testing.T) {
	t.Parallel()
	srv, logs := newTestRouter(t)
	req, _ := http.NewRequest("POST", srv.URL+"/echo", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(logs.String(), `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) {
		t.Fatalf("the caller's trace is not in the logs: %s", logs.String())
	}
}
