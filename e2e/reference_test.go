package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/bazaar-shop/bazaar/docs"
)

// Issue 9: the gateway serves its API's document and a readable page made from it,
// with everything the page needs coming from the gateway and a policy that lets
// nothing else load or run. (Every answer here is also checked against the document
// it serves, as every answer in the suite is.)
func TestTheGatewayServesItsAPIReference(t *testing.T) {
	setup(t)
	r := do(t, request{Method: "GET", Path: "/openapi.yaml"})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.yaml → %d; want 200", r.StatusCode)
	}
	if !bytes.Equal(r.Body, docs.OpenAPI) {
		t.Fatalf("GET /openapi.yaml → %d bytes that differ from docs/openapi.yaml (%d bytes); want it as it is", len(r.Body), len(docs.OpenAPI))
	}
	doc, err := openapi3.NewLoader().LoadFromData(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, request{Method: "GET", Path: "/openapi.yaml", Header: map[string]string{"If-None-Match": r.Header.Get("ETag")}}); r.StatusCode != http.StatusNotModified {
		t.Errorf("GET /openapi.yaml with its ETag → %d; want 304", r.StatusCode)
	}

	page := do(t, request{Method: "GET", Path: "/docs", Header: map[string]string{"Accept": "text/html"}})
	if page.StatusCode != http.StatusOK {
		t.Fatalf("GET /docs → %d; want 200 and the page", page.StatusCode)
	}
	if ct := page.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET /docs → Content-Type %q; want the page, text/html", ct)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !bytes.Contains(page.Body, []byte(`<article id="op-`+op.OperationID+`">`)) {
				t.Errorf("the page does not show %s %s", method, path)
			}
		}
	}
	for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
		if got := page.Header.Get(h); got != want {
			t.Errorf("GET /docs: %s = %q; want %q", h, got, want)
		}
	}
	csp := page.Header.Get("Content-Security-Policy")
	for _, d := range strings.Split(csp, ";") {
		switch d = strings.TrimSpace(d); {
		case strings.HasPrefix(d, "default-src") && d != "default-src 'none'",
			strings.HasPrefix(d, "style-src") && !strings.HasPrefix(d, "style-src 'sha256-"),
			strings.Contains(d, "unsafe"), strings.HasPrefix(d, "script-src"):
			t.Errorf("GET /docs: the policy allows more than the page's own stylesheet: %q", d)
		}
	}
	if !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("GET /docs: Content-Security-Policy %q; want frame-ancestors 'none'", csp)
	}
	for _, off := range []string{"<script", "<link", "src=", "@import", "url("} {
		if bytes.Contains(page.Body, []byte(off)) {
			t.Errorf("the page has %q: everything it needs must be in it", off)
		}
	}
}
