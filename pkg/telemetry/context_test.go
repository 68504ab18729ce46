package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// A call through Transport carries the caller's trace to the program it calls, with
// or without an exporter; the traceparent helpers round-trip it.
func TestTransportPassesTheTraceOn(t *testing.T) {
	t.Parallel()
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.Header.Get("traceparent") }))
	t.Cleanup(srv.Close)
	tr, err := telemetry.Setup(context.Background(), "test", telemetry.Export{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tr.Provider.Tracer("t").Start(context.Background(), "request")
	defer span.End()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := (&http.Client{Transport: tr.Transport(testhttp.Transport)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back := telemetry.WithTraceParent(context.Background(), got)
	want := span.SpanContext().TraceID().String()
	if got == "" {
		t.Errorf("the call carried no traceparent; want the caller's trace %s", want)
	} else if telemetry.TraceParent(back) == "" {
		t.Errorf("the call carried traceparent %q, which does not parse; want the caller's trace %s", got, want)
	} else if got[3:35] != want {
		t.Errorf("the call carried traceparent %q, trace %s; want the caller's trace %s", got, got[3:35], want)
	}
	var nilTracing *telemetry.Tracing
	if rt := nilTracing.Transport(http.DefaultTransport); rt != http.DefaultTransport {
		t.Error("a nil Tracing wrapped the transport")
	}
}
