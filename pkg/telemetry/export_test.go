package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// collector stands for an OpenTelemetry Collector's OTLP/HTTP receiver (the outside
// world here): it records the path and headers of every export.
type collector struct {
	mu      sync.Mutex
	paths   []string
	headers []http.Header
	url     string
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.paths = append(c.paths, r.URL.Path)
		c.headers = append(c.headers, r.Header.Clone())
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

func (c *collector) got() ([]string, []http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.paths...), append([]http.Header(nil), c.headers...)
}

// exportOne sets tracing up from env, records one span and flushes it.
func exportOne(t *testing.T, env map[string]string) {
	t.Helper()
	tr, err := telemetry.Setup(context.Background(), "test", telemetry.ExportFromEnv(config.New(func(k string) string { return env[k] })))
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider.Tracer("t").Start(context.Background(), "op")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("flushing: %v", err)
	}
}

// Finding: OTEL_EXPORTER_OTLP_ENDPOINT was taken as the full URL, so the standard
// base URL (http://collector:4318) posted spans to / and the Collector refused them.
// As the OpenTelemetry specification has it, the base URL gets /v1/traces appended
// (after any path it has), and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as it is.
func TestTheOTLPEndpointIsABaseURLAndTheTracesEndpointAFullOne(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  func(base string) map[string]string
		want string
	}{
		{"base URL", func(b string) map[string]string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": b} }, "/v1/traces"},
		{"base URL with a slash", func(b string) map[string]string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": b + "/"} }, "/v1/traces"},
		{"base URL with a path", func(b string) map[string]string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": b + "/otel"} }, "/otel/v1/traces"},
		{"traces URL as it is", func(b string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": b + "/custom/spans"}
		}, "/custom/spans"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			col := newCollector(t)
			exportOne(t, c.env(col.url))
			if paths, _ := col.got(); len(paths) == 0 || paths[0] != c.want {
				t.Errorf("exported to %q, want %s", paths, c.want)
			}
		})
	}
}

// OTEL_EXPORTER_OTLP_HEADERS (and the traces-only variable, which wins) go with each
// export: a hosted collector's API key travels this way.
func TestOTLPHeadersGoWithEachExport(t *testing.T) {
	t.Parallel()
	col := newCollector(t)
	exportOne(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":       col.url,
		"OTEL_EXPORTER_OTLP_HEADERS":        "api-key=secret%20one,x-team=shop",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-team=orders",
	})
	_, headers := col.got()
	if len(headers) == 0 {
		t.Fatal("nothing exported")
	}
	if got := headers[0].Get("Api-Key"); got != "secret one" {
		t.Errorf("api-key = %q, want the decoded %q", got, "secret one")
	}
	if got := headers[0].Get("X-Team"); got != "orders" {
		t.Errorf("x-team = %q, want the traces variable's %q", got, "orders")
	}
}

// Nothing exports without an endpoint, or with OTEL_TRACES_EXPORTER=none or
// OTEL_SDK_DISABLED=true, whatever the endpoint says.
func TestNothingExportsUnlessAnEndpointIsSetAndExportIsOn(t *testing.T) {
	t.Parallel()
	col := newCollector(t)
	for _, env := range []map[string]string{
		{},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": col.url, "OTEL_TRACES_EXPORTER": "none"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": col.url, "OTEL_SDK_DISABLED": "true"},
	} {
		exp := telemetry.ExportFromEnv(config.New(func(k string) string { return env[k] }))
		if exp.URL != "" {
			t.Errorf("%v: exports to %s", env, exp.URL)
		}
		exportOne(t, env)
	}
	if paths, _ := col.got(); len(paths) != 0 {
		t.Errorf("exported %q", paths)
	}
}
