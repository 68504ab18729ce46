package main

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// expectSecurityHeaders checks the headers every gateway response carries.
func expectSecurityHeaders(t *testing.T, name string, resp *http.Response, overTLS bool) {
	t.Helper()
	for k, v := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"X-Frame-Options":        "DENY",
	} {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s = %q, want exactly %q", name, k, got, v)
		}
	}
	hsts := resp.Header.Values("Strict-Transport-Security")
	if overTLS != (len(hsts) == 1 && strings.HasPrefix(hsts[0], "max-age=")) {
		t.Errorf("%s: Strict-Transport-Security %q; want it only over TLS (%t)", name, hsts, overTLS)
	}
}

func TestEveryGatewayResponseCarriesSecurityHeaders(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)
	// An upstream that sets its own, weaker values: the gateway's win, once each.
	inventory := newUpstream(t, "inventory", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Header().Set("Referrer-Policy", "unsafe-url")
		w.Write([]byte(`{"items":[],"next_cursor":null}`))
	})
	gw := startGateway(t, map[string]string{"USERS_URL": s.accounts.URL, "INVENTORY_URL": inventory.URL, "RATE_IP": "1", "RATE_IP_BURST": "1"})

	c := s.signIn(t)
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
	}{
		{"a proxied answer", gw.URL + "/api/v1/products?limit=1", nil},
		{"a 429", gw.URL + "/api/v1/products?limit=2", nil},
		{"a 401", gw.URL + "/api/v1/users/me", bearer("not-a-jwt")},
		{"a 404", gw.URL + "/api/v1/nothing-here", nil},
		{"a 405", gw.URL + "/api/v1/users/me", http.Header{"X-Method": {http.MethodDelete}}},
		{"system health", gw.URL + "/health", nil},
		{"a probe", gw.URL + "/healthz", nil},
		{"the sign-in page", s.gw.URL + "/ops/login", htmlAccept},
		{"the task monitor", s.gw.URL + "/ops/tasks/", withCookie(c, htmlAccept)},
		{"the monitor's API", s.gw.URL + "/ops/tasks/api/queues", withCookie(c, apiAccept)},
		{"a redirect to sign in", s.gw.URL + "/ops/tasks/", htmlAccept},
	} {
		method := http.MethodGet
		if m := tc.header.Get("X-Method"); m != "" {
			method = m
		}
		for _, tls := range []bool{false, true} {
			req, _ := http.NewRequest(method, tc.url, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			if tls {
				req.Header.Set("X-Forwarded-Proto", "https") // a TLS-terminating proxy in front
			}
			resp, err := browser.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			expectSecurityHeaders(t, tc.name, resp, tls)
		}
	}
}

// cspDirectives parses a Content-Security-Policy into its directives.
func cspDirectives(t *testing.T, policy string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for d := range strings.SplitSeq(policy, ";") {
		f := strings.Fields(d)
		if len(f) == 0 {
			continue
		}
		if _, dup := out[f[0]]; dup {
			t.Errorf("directive %s twice in %q", f[0], policy)
		}
		out[f[0]] = f[1:]
	}
	return out
}

func TestOpsPagesHaveAContentSecurityPolicyTheMonitorWorksWith(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)
	c := s.signIn(t)

	resp, page := s.send(t, http.MethodGet, "/ops/tasks/", nil, withCookie(c, htmlAccept))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ops/tasks/: %d", resp.StatusCode)
	}
	csp := cspDirectives(t, resp.Header.Get("Content-Security-Policy"))
	if got := csp["frame-ancestors"]; !slices.Equal(got, []string{"'none'"}) {
		t.Errorf("frame-ancestors %q, want 'none'", got)
	}
	if got := csp["default-src"]; !slices.Equal(got, []string{"'none'"}) {
		t.Errorf("default-src %q, want 'none': whatever is not named is refused", got)
	}
	scripts := csp["script-src"]
	for _, bad := range []string{"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "https:"} {
		if slices.Contains(scripts, bad) {
			t.Errorf("script-src allows %s: %q", bad, scripts)
		}
	}
	// Every inline script of the page runs: its hash is allowed.
	inline := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(page, -1)
	if len(inline) == 0 {
		t.Fatalf("no inline script in the monitor's page; has asynqmon changed?\n%s", page)
	}
	for _, m := range inline {
		sum := sha256.Sum256([]byte(m[1]))
		if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !slices.Contains(scripts, h) {
			t.Errorf("script-src %q lacks %s, the hash of the inline script %.60q…", scripts, h, m[1])
		}
	}
	// Everything the page loads from the gateway is allowed by its directive, and is
	// there; nothing is loaded from elsewhere but what the policy refuses on purpose.
	refs := regexp.MustCompile(`<(script|link)\b[^>]*?\b(?:src|href)="([^"]+)"[^>]*>`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("found %d assets in the monitor's page, want its scripts, icons and manifest:\n%s", len(refs), page)
	}
	for _, m := range refs {
		tag, ref := m[1], m[2]
		u, err := url.Parse(ref)
		if err != nil {
			t.Fatal(err)
		}
		if u.Host != "" {
			// asynqmon links Google Fonts; the policy keeps the operator's browser
			// from fetching them (the page falls back to system fonts).
			if slices.ContainsFunc(csp["style-src"], func(src string) bool { return strings.Contains(src, u.Host) }) {
				t.Errorf("style-src allows the third-party %s", u.Host)
			}
			continue
		}
		directive := map[string]string{"script": "script-src"}[tag]
		if strings.Contains(m[0], `rel="manifest"`) {
			directive = "manifest-src"
		} else if tag == "link" {
			directive = "img-src" // icons
		}
		if !slices.Contains(csp[directive], "'self'") {
			t.Errorf("%s %q is loaded from the gateway, but %s is %q", tag, ref, directive, csp[directive])
		}
		resp, _ := s.send(t, http.MethodGet, ref, nil, withCookie(c, http.Header{"Accept": {"*/*"}}))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", ref, resp.StatusCode)
		}
	}
	// Its scripts call the API on the gateway, and style with injected <style>
	// elements (Material-UI's JSS), which needs inline styles.
	if !slices.Contains(csp["connect-src"], "'self'") || !slices.Contains(csp["style-src"], "'unsafe-inline'") {
		t.Errorf("connect-src %q, style-src %q: the monitor calls its API and injects styles", csp["connect-src"], csp["style-src"])
	}

	// The other operations answers are framed by nobody either.
	for name, path := range map[string]string{
		"the sign-in page":                   "/ops/login",
		"a redirect to sign in (no session)": "/ops/tasks/",
	} {
		resp, _ := s.send(t, http.MethodGet, path, nil, htmlAccept)
		if got := cspDirectives(t, resp.Header.Get("Content-Security-Policy"))["frame-ancestors"]; !slices.Equal(got, []string{"'none'"}) {
			t.Errorf("%s: frame-ancestors %q", name, got)
		}
	}
	// Bearer tokens work on the monitor's API, with the same headers.
	resp, _ = s.send(t, http.MethodGet, "/ops/tasks/api/queues", nil, bearer(signWith(t, s.accounts.key, auth.RoleAdmin, time.Minute)))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("monitor API with a bearer token: %d; want 200", resp.StatusCode)
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("monitor API with a bearer token: no Content-Security-Policy; want the same headers as the monitor's")
	}
}
