package httpserver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	mux.HandleFunc("/empty", func(http.ResponseWriter, *http.Request) {})
	// What an upstream's answer copied through a reverse proxy may carry: its own
	// values must not add a second, conflicting one (browsers then ignore both).
	mux.HandleFunc("/upstream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Frame-Options", "SAMEORIGIN")
		w.Header().Add("Referrer-Policy", "unsafe-url")
		w.Header().Add("Strict-Transport-Security", "max-age=1")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the middleware: %v", err)
		}
	})
	h := SecurityHeaders(mux)
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	tls := httptest.NewTLSServer(h)
	t.Cleanup(tls.Close)

	check := func(name string, resp *http.Response, wantHSTS bool) {
		t.Helper()
		want := map[string]string{
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
			"X-Frame-Options":        "DENY",
		}
		for k, v := range want {
			if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s: %s = %q, want exactly %q", name, k, got, v)
			}
		}
		hsts := resp.Header.Values("Strict-Transport-Security")
		switch {
		case wantHSTS && (len(hsts) != 1 || hsts[0] != "max-age=31536000"):
			t.Errorf("%s: Strict-Transport-Security %q, want max-age=31536000", name, hsts)
		case !wantHSTS && len(hsts) != 0:
			t.Errorf("%s: Strict-Transport-Security %q over plain HTTP", name, hsts)
		}
	}
	for _, path := range []string{"/ok", "/status", "/empty", "/upstream", "/flush", "/not-found"} {
		resp, err := testhttp.Client.Get(plain.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		check("plain "+path, resp, false)

		resp, err = tls.Client().Get(tls.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		check("TLS "+path, resp, true)
	}

	// Behind a proxy that terminated TLS and says so.
	req, _ := http.NewRequest(http.MethodGet, plain.URL+"/ok", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	check("X-Forwarded-Proto https", resp, true)
}
