package opsauth_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
)

func TestSameOriginRefusesCrossOriginWrites(t *testing.T) {
	t.Parallel()
	passed := false
	h := opsauth.SameOrigin(slog.New(slog.NewTextHandler(io.Discard, nil)))(
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { passed = true }))

	const host = "gateway.bazaar.test"
	for _, tc := range []struct {
		name   string
		method string
		header map[string]string
		want   bool // let through
	}{
		{"read from anywhere", http.MethodGet, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, true},
		{"a script: no browser headers", http.MethodPost, nil, true},
		{"fetch metadata, same origin", http.MethodPost, map[string]string{"Sec-Fetch-Site": "same-origin"}, true},
		{"fetch metadata, typed by the user", http.MethodPost, map[string]string{"Sec-Fetch-Site": "none"}, true},
		{"fetch metadata, cross-site", http.MethodPost, map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"fetch metadata, sibling subdomain", http.MethodDelete, map[string]string{"Sec-Fetch-Site": "same-site"}, false},
		{"fetch metadata wins over a matching origin", http.MethodPost, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://" + host}, false},
		{"origin, same host", http.MethodPost, map[string]string{"Origin": "https://" + host}, true},
		{"origin, other host", http.MethodPut, map[string]string{"Origin": "https://evil.example"}, false},
		{"origin, other port", http.MethodPost, map[string]string{"Origin": "https://" + host + ":8443"}, false},
		{"origin null (sandboxed page)", http.MethodPost, map[string]string{"Origin": "null"}, false},
		{"referer only, same host", http.MethodPost, map[string]string{"Referer": "https://" + host + "/ops/tasks/"}, true},
		{"referer only, other host", http.MethodDelete, map[string]string{"Referer": "https://evil.example/ops/tasks/"}, false},
		{"referer only, unparsable", http.MethodPost, map[string]string{"Referer": "://"}, false},
	} {
		passed = false
		req := httptest.NewRequest(tc.method, "https://"+host+"/ops/tasks/api/queues/default:pause", nil)
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if passed != tc.want {
			t.Errorf("%s: let through %t, want %t", tc.name, passed, tc.want)
		}
		if !tc.want && (rec.Code != http.StatusForbidden || rec.Header().Get("Content-Type") != "application/problem+json") {
			t.Errorf("%s: got %d %q, want a 403 problem", tc.name, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}
