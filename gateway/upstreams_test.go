package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bazaar-shop/bazaar/gateway/internal/systemhealth"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
)

// Each instance of a service is one entry of <NAME>_URL and one of <NAME>_INTERNAL_URL,
// in the same order; lists that do not pair stop the start naming both variables.
func TestUpstreamListsMustPairWithTheirInternalURLs(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"INVENTORY_URL":          "http://127.0.0.1:8082, http://127.0.0.1:8182",
		"INVENTORY_INTERNAL_URL": "http://127.0.0.1:9082",
		"PAYMENTS_URL":           "http://127.0.0.1:8083,http://u:hunter2@127.0.0.1:8183/api",
		"EJECT_AFTER":            "0",
		"EJECT_BACKOFF":          "soon",
	}
	_, err := loadConfig(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"INVENTORY_INTERNAL_URL", "INVENTORY_URL", "PAYMENTS_URL", "EJECT_AFTER", "EJECT_BACKOFF"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows a password:\n%v", err)
	}
}

// inventoryInstance answers the catalogue on its public listener and /readyz on its
// internal one, and counts the catalogue requests.
func inventoryInstance(t *testing.T) (public, internal string, served *atomic.Int32) {
	t.Helper()
	served = &atomic.Int32{}
	pub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Cache-Control", "no-store") // so that every read reaches an instance
		httpjson.Write(w, http.StatusOK, map[string]any{"items": []any{}})
	}))
	t.Cleanup(pub.Close)
	in := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, health.Report{Status: health.Healthy, Checks: map[string]health.Status{"postgres": health.Healthy}})
	}))
	t.Cleanup(in.Close)
	return pub.URL, in.URL, served
}

// A service of two instances: the gateway spreads the requests over both, and
// /health shows each, numbered, without its address.
func TestTheGatewayBalancesOverEachInstanceAndShowsThemInHealth(t *testing.T) {
	t.Parallel()
	pub1, in1, served1 := inventoryInstance(t)
	pub2, in2, served2 := inventoryInstance(t)
	gw := startGateway(t, map[string]string{
		"INVENTORY_URL":          pub1 + "," + pub2,
		"INVENTORY_INTERNAL_URL": in1 + "," + in2,
		"RATE_IP":                "0", "RATE_EDGE_IP": "0",
	})
	for range 60 {
		resp, body := get(t, gw.URL+"/api/v1/products?limit=5", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/v1/products: %d %s", resp.StatusCode, body)
		}
	}
	for i, n := range []int32{served1.Load(), served2.Load()} {
		if n < 10 {
			t.Errorf("instance %d served %d of 60 reads; want a share, at least 10", i+1, n)
		}
	}

	_, body := get(t, gw.URL+"/health", nil) // 503: the other services are down
	var rep systemhealth.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	inv := rep.Upstreams["inventory"]
	if len(inv.Instances) != 2 {
		t.Fatalf("inventory in /health: %+v; want its 2 instances", inv)
	}
	if inv.Breaker != "closed" {
		t.Errorf("inventory in /health: breaker %q; want closed", inv.Breaker)
	}
	for i, in := range inv.Instances {
		if in.Instance != i+1 || in.Status != health.Healthy || !in.InService {
			t.Errorf("instance %d: %+v; want healthy and in service", i+1, in)
		}
	}
	if rep.Services["inventory"].Status != health.Healthy {
		t.Errorf("inventory: %+v", rep.Services["inventory"])
	}
	for _, addr := range []string{pub1, pub2, in1, in2} {
		if strings.Contains(string(body), strings.TrimPrefix(addr, "http://")) {
			t.Errorf("/health shows the address %s: %s", addr, body)
		}
	}
}
