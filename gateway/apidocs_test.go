package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/docs"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// Issue 9: the gateway serves its OpenAPI document and a reference page made from it,
// anonymously, with the security headers of every answer and a strict policy, and
// limited per client address like the rest of the anonymous API.
func TestTheAPIReferenceIsServedAnonymouslyAndLimited(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, map[string]string{"RATE_IP": "1", "RATE_IP_BURST": "2"})
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := testhttp.Client.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}

	resp, body := get("/openapi.yaml")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.yaml: %d; want 200", resp.StatusCode)
	}
	if !bytes.Equal(body, docs.OpenAPI) {
		t.Fatalf("GET /openapi.yaml: %d bytes that differ from docs/openapi.yaml (%d bytes); want it as it is", len(body), len(docs.OpenAPI))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/yaml" {
		t.Fatalf("GET /openapi.yaml: Content-Type %q; want application/yaml", ct)
	}
	expectSecurityHeaders(t, "GET /openapi.yaml", resp, false)

	resp, body = get("/docs")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /docs: %d: %.200s; want 200", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET /docs: Content-Type %q; want text/html", ct)
	}
	if !bytes.Contains(body, []byte(`<article id="op-getProduct">`)) {
		t.Fatalf("GET /docs: %.200s; want the reference page, with <article id=\"op-getProduct\"> in it", body)
	}
	expectSecurityHeaders(t, "GET /docs", resp, false)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'sha256-", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("GET /docs: Content-Security-Policy %q; want %s in it", csp, want)
		}
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Error("GET /docs: no X-Request-ID")
	}

	// The burst (2) is spent: the third anonymous request from this address waits.
	resp, _ = get("/docs")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a third GET /docs at once: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
