package e2e

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// The storefront's pages, over plain HTTP: what a browser is given and what it must
// send back. e2e/browser clicks through the same pages in a real browser.

// browser is a client that keeps each answer as it is (no redirects followed) and
// carries cookies by hand, so that a test sees every Set-Cookie.
type browser struct {
	t       *testing.T
	base    string // the gateway
	origin  string // the Origin its forms are posted from; "" is the gateway's own
	cookies map[string]string
}

func newBrowser(t *testing.T) *browser {
	return &browser{t: t, base: baseURL, cookies: map[string]string{}}
}

var pageClient = &http.Client{
	Transport:     testhttp.Transport,
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// page is an answer with its body.
type page struct {
	*http.Response
	Body string
}

// send asks for path (a form post when form is not nil), keeping the cookies it is
// given; a 429 is waited out as its Retry-After asks.
func (b *browser) send(method, path string, form url.Values) page {
	b.t.Helper()
	for {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(b.t.Context(), method, b.base+path, body)
		if err != nil {
			b.t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			origin := b.origin
			if origin == "" {
				origin = b.base
			}
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Accept", "text/html")
		for k, v := range b.cookies {
			req.AddCookie(&http.Cookie{Name: k, Value: v})
		}
		resp, err := pageClient.Do(req)
		if err != nil {
			b.t.Fatalf("%s %s: %v", method, path, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.MaxAge < 0 {
				delete(b.cookies, c.Name)
			} else {
				b.cookies[c.Name] = c.Value
			}
		}
		p := page{resp, string(raw)}
		if wait, ok := retryAfter(response{Response: resp}); resp.StatusCode == http.StatusTooManyRequests && ok && mayWait(b.t.Context(), wait) {
			time.Sleep(wait) // the gateway's own answer says how long; not synchronisation
			continue
		}
		return p
	}
}

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// token is the CSRF token of the forms on p.
func (b *browser) token(p page) string {
	b.t.Helper()
	m := csrfInput.FindStringSubmatch(p.Body)
	if m == nil {
		b.t.Fatalf("%s has no form with a CSRF token", p.Request.URL.Path)
	}
	return m[1]
}

func TestShopPagesCarryAStrictPolicyAndCacheableAssets(t *testing.T) {
	setup(t)
	b := newBrowser(t)
	p := b.send("GET", "/", nil)
	if p.StatusCode != http.StatusOK {
		t.Fatalf("GET / → %d; want 200", p.StatusCode)
	}
	if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET / → Content-Type %s; want text/html", ct)
	}
	csp := p.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("the catalogue's policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("the catalogue's policy %q allows inline script or style ('unsafe-inline'); want it not to", csp)
	}
	if strings.Contains(p.Body, "<script>") {
		t.Error("the catalogue has an inline <script>; want none")
	}
	if strings.Contains(p.Body, " style=") {
		t.Error("the catalogue has an inline style= attribute; want none")
	}
	if p.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("a page's Cache-Control is %q, want no-store", p.Header.Get("Cache-Control"))
	}
	for _, asset := range regexp.MustCompile(`(?:href|src)="(/static/[^"]+)"`).FindAllStringSubmatch(p.Body, -1) {
		a := b.send("GET", strings.ReplaceAll(asset[1], "&amp;", "&"), nil)
		if a.StatusCode != http.StatusOK {
			t.Errorf("%s → %d; want 200", asset[1], a.StatusCode)
		}
		if cc := a.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s → Cache-Control %q; want immutable", asset[1], cc)
		}
	}
}

func TestShopFormsWithoutTheBrowsersCSRFTokenAreRefused(t *testing.T) {
	setup(t)
	b := newBrowser(t)
	token := b.token(b.send("GET", "/login", nil))
	for name, form := range map[string]url.Values{
		"no token":      {"email": {"a@example.com"}, "password": {"whatever-1"}},
		"another token": {"email": {"a@example.com"}, "password": {"whatever-1"}, "csrf_token": {strings.Repeat("A", 43)}},
	} {
		p := b.send("POST", "/login", form)
		if p.StatusCode != http.StatusForbidden {
			t.Errorf("%s: POST /login → %d, want 403", name, p.StatusCode)
		}
		if !strings.Contains(p.Body, "did not come from this shop") {
			t.Errorf("%s: POST /login → a page without the message \"did not come from this shop\"; want it:\n%s", name, p.Body)
		}
	}
	// The right token posted from another site's page is refused before the form is
	// read (the same-origin check), and signs nobody in.
	b.origin = "https://evil.example"
	p := b.send("POST", "/login", url.Values{"csrf_token": {token}, "email": {"a@example.com"}, "password": {"whatever-1"}})
	if p.StatusCode != http.StatusForbidden {
		t.Errorf("a form from another origin: POST /login → %d, want 403", p.StatusCode)
	}
	if b.cookies["bazaar_session"] != "" {
		t.Error("a form from another origin: POST /login set a session cookie; want no session")
	}
	b.origin = ""
	// A token without the cookie it belongs to is refused too.
	stranger := newBrowser(t)
	p = stranger.send("POST", "/cart", url.Values{"csrf_token": {token}, "product_id": {"x"}, "quantity": {"1"}})
	if p.StatusCode != http.StatusForbidden {
		t.Errorf("a token from another browser: POST /cart → %d, want 403", p.StatusCode)
	}
}

func TestShopSessionIsAnHttpOnlyCookieAndTheTokensStayOnTheServer(t *testing.T) {
	setup(t)
	email, password := newEmail(t), "shop-password-1"
	register(t, email, password, "Shop Session")
	b := newBrowser(t)
	token := b.token(b.send("GET", "/login", nil))
	p := b.send("POST", "/login", url.Values{"csrf_token": {token}, "email": {email}, "password": {password}, "next": {"/orders"}})
	if p.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/orders") {
		t.Fatalf("POST /login → %d to %q; want 303 to /orders\n%s", p.StatusCode, p.Header.Get("Location"), p.Body)
	}
	var session *http.Cookie
	for _, c := range p.Cookies() {
		if c.Name == "bazaar_session" {
			session = c
		}
		// No cookie carries a token: a JWT has two dots, a refresh token is long.
		if strings.Count(c.Value, ".") >= 2 || strings.HasPrefix(c.Value, "ey") {
			t.Errorf("cookie %s looks like a token: %q", c.Name, c.Value)
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" {
		t.Fatalf("session cookie %+v; want HttpOnly, SameSite=Lax, Path=/", session)
	}
	if session.Secure {
		t.Error("the session cookie is Secure over plain HTTP, so the browser would never send it")
	}
	if newToken := b.token(b.send("GET", "/orders", nil)); newToken == token {
		t.Error("the CSRF token stayed the same across the sign-in")
	}
	orders := b.send("GET", "/orders", nil)
	if orders.StatusCode != http.StatusOK {
		t.Fatalf("GET /orders signed in → %d; want 200", orders.StatusCode)
	}
	if !strings.Contains(orders.Body, "Signed in as Shop Session") {
		t.Fatalf("GET /orders signed in → a page without \"Signed in as Shop Session\"; want it:\n%s", orders.Body)
	}

	// Signing out ends the session: the same cookie no longer opens the orders.
	old := b.cookies["bazaar_session"]
	out := b.send("POST", "/logout", url.Values{"csrf_token": {b.token(orders)}})
	if out.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /logout → %d", out.StatusCode)
	}
	b.cookies["bazaar_session"] = old
	if again := b.send("GET", "/orders", nil); again.StatusCode != http.StatusSeeOther || !strings.HasPrefix(again.Header.Get("Location"), "/login") {
		t.Errorf("GET /orders with the ended session → %d to %q; want 303 to /login", again.StatusCode, again.Header.Get("Location"))
	}
}

func TestShopSaysInWordsWhenAServiceIsDown(t *testing.T) {
	setup(t)
	s := startStack(t, faultConfig{})
	b := &browser{t: t, base: s.URLs().Gateway, cookies: map[string]string{}}
	if p := b.send("GET", "/", nil); p.StatusCode != http.StatusOK {
		t.Fatalf("GET / → %d before the fault", p.StatusCode)
	}
	if err := s.StopProgram(t.Context(), "inventory"); err != nil {
		t.Fatal(err)
	}
	// Until the gateway has taken inventory out of service an answer may take a
	// moment; every answer is the page with the message, never a bare error.
	var last page
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		last = b.send("GET", "/", nil)
		if last.StatusCode == http.StatusServiceUnavailable {
			break
		}
	}
	if last.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("with inventory down, GET / → %d; want 503:\n%s", last.StatusCode, last.Body)
	}
	if ct := last.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("with inventory down, GET / → Content-Type %s; want the page, text/html:\n%s", ct, last.Body)
	}
	if !strings.Contains(last.Body, "Part of the shop is not answering right now") {
		t.Fatalf("with inventory down, GET / → a page without \"Part of the shop is not answering right now\"; want it:\n%s", last.Body)
	}
	for _, internal := range []string{"inventory", "urn:bazaar"} {
		if strings.Contains(last.Body, internal) {
			t.Errorf("the page shows internals, %q; want none:\n%s", internal, last.Body)
		}
	}
}
