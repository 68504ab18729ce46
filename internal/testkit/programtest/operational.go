package programtest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// AssertOperational checks what every Bazaar service serves on its internal listener:
// /healthz, /readyz reporting healthy (polled until then, with a deadline) with the
// named checks healthy, /metrics counting requests, and problem+json for an unknown
// route; and that none of them, nor any /internal route, is on its public listener.
func AssertOperational(t testing.TB, prog *Program, checks ...string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/internal/anything"} {
		resp, err := testhttp.Client.Get(prog.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("public listener: GET %s = %d, want 404: it belongs on the internal listener only", path, resp.StatusCode)
		}
	}
	baseURL := prog.InternalURL()
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := testhttp.Client.Get(baseURL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	if resp, _ := get("/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %d", resp.StatusCode)
	}

	var rep health.Report
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, body := get("/readyz")
		rep = health.Report{}
		_ = json.Unmarshal(body, &rep)
		if resp.StatusCode == http.StatusOK && rep.Status == health.Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never healthy: %d %s", resp.StatusCode, body)
		}
	}
	// What a container's healthcheck runs says the same.
	if err := prog.Probe(); err != nil {
		t.Errorf("the probe (-probe) of a ready program: %v", err)
	}
	for _, c := range checks {
		if rep.Checks[c] != health.Healthy {
			t.Errorf("readiness check %s = %q, want healthy (%+v)", c, rep.Checks[c], rep)
		}
	}

	resp, body := get("/metrics")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `http_requests_total{code="200",method="GET",route="/readyz"}`) {
		t.Errorf("/metrics = %d, lacks the /readyz request count", resp.StatusCode)
	}

	resp, body = get("/no/such/route")
	var d problem.Details
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != problem.ContentType ||
		json.Unmarshal(body, &d) != nil || d.Status != http.StatusNotFound || d.RequestID == "" {
		t.Errorf("unknown route = %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
