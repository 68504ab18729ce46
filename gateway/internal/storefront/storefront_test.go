package storefront

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

func TestCartCookieKeepsValidLinesOnly(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: cartCookie, Value: strings.Join([]string{
		a.String() + ":2",
		"not-a-uuid:1",
		b.String() + ":0",   // below 1
		b.String() + ":101", // above the API's bound
		a.String() + ":5",   // a product twice: the first line stands
		b.String() + ":3",
	}, "|")})
	c := readCart(r)
	if len(c) != 2 || c.quantity(a) != 2 || c.quantity(b) != 3 {
		t.Fatalf("cart = %+v, want %s×2 and %s×3", c, a, b)
	}
	if c.count() != 5 {
		t.Errorf("count = %d, want 5", c.count())
	}

	// Written and read back, it is the same cart.
	w := httptest.NewRecorder()
	c.write(w, r)
	back := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, ck := range w.Result().Cookies() {
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
			t.Errorf("cart cookie %+v: want HttpOnly and SameSite=Lax", ck)
		}
		back.AddCookie(ck)
	}
	got := readCart(back)
	if len(got) != 2 {
		t.Errorf("read back %+v, want 2 lines", got)
	}
	if n := got.quantity(a); n != 2 {
		t.Errorf("read back %d of a, want 2: %+v", n, got)
	}
	if n := got.quantity(b); n != 3 {
		t.Errorf("read back %d of b, want 3: %+v", n, got)
	}
}

func TestCartSetAddsChangesAndRemoves(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	c, _ := cart(nil).set(a, 1)
	c, _ = c.set(b, 2)
	c, _ = c.set(a, 4)
	if c[0].ProductID != a || c[0].Quantity != 4 || c[1].Quantity != 2 {
		t.Fatalf("cart = %+v, want a×4 first, then b×2", c)
	}
	c, _ = c.set(a, 0)
	if len(c) != 1 {
		t.Fatalf("after removing a: %+v, want one line", c)
	}
	if c[0].ProductID != b {
		t.Fatalf("after removing a: %+v, want b's line %s", c, b)
	}
	full := cart(nil)
	for range maxLines {
		full, _ = full.set(uuid.New(), 1)
	}
	if _, ok := full.set(uuid.New(), 1); ok {
		t.Errorf("a cart of %d lines took one more", maxLines)
	}
}

func TestCSRFTokenMustMatchTheBrowsersCookie(t *testing.T) {
	w := httptest.NewRecorder()
	page := httptest.NewRequest(http.MethodGet, "/", nil)
	token := csrfToken(w, page)
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Value != token || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("CSRF cookie %+v, want the token, HttpOnly, SameSite=Strict", cookies)
	}
	if again := csrfToken(httptest.NewRecorder(), withCookies(page, cookies)); again != token {
		t.Errorf("a browser with a token got another: %q, want %q", again, token)
	}
	for _, c := range []struct {
		name, form string
		cookie     bool
		ok         bool
	}{
		{"the browser's token", "csrf_token=" + token, true, true},
		{"no token", "quantity=1", true, false},
		{"another token", "csrf_token=" + strings.Repeat("A", 43), true, false},
		{"a token but no cookie", "csrf_token=" + token, false, false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/cart", strings.NewReader(c.form))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if c.cookie {
			r = withCookies(r, cookies)
		}
		if got := validCSRF(r); got != c.ok {
			t.Errorf("%s: valid = %v, want %v", c.name, got, c.ok)
		}
	}
}

func withCookies(r *http.Request, cs []*http.Cookie) *http.Request {
	r = r.Clone(context.Background())
	for _, c := range cs {
		r.AddCookie(c)
	}
	return r
}

func TestSessionsKeepTokensSealedAndEndOnDelete(t *testing.T) {
	rdb := redis.NewClient(mustParse(t, redistest.New(t)))
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()
	store := NewSessions(rdb, time.Hour)
	want := Session{UserID: uuid.New(), Role: auth.RoleCustomer, Name: "Ada", Email: "ada@example.com",
		Tokens: Tokens{Access: "access-token-value", Refresh: "refresh-token-value", AccessExpiry: time.Now().Add(time.Minute).Round(0)}}
	sess, err := store.Create(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Get(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != want.UserID || got.Role != want.Role || got.Tokens.Access != want.Tokens.Access ||
		got.Tokens.Refresh != want.Tokens.Refresh || !got.Tokens.AccessExpiry.Equal(want.Tokens.AccessExpiry) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	// Redis holds neither the id nor a token in the clear, and the session expires.
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		if strings.Contains(k, sess.ID) {
			t.Errorf("key %q holds the session id", k)
		}
		fields, _ := rdb.HGetAll(ctx, k).Result()
		for f, v := range fields {
			if strings.Contains(v, "token-value") {
				t.Errorf("field %s of %s holds a token in the clear: %q", f, k, v)
			}
		}
		if ttl, _ := rdb.TTL(ctx, k).Result(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("key %s expires in %v, want within the hour", k, ttl)
		}
	}

	// New tokens replace the old; a session that has ended is not brought back.
	next := Tokens{Access: "second-access", Refresh: "second-refresh", AccessExpiry: time.Now().Add(time.Hour)}
	if err := store.SetTokens(ctx, sess.ID, next); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Get(ctx, sess.ID); got.Tokens.Access != "second-access" {
		t.Errorf("after SetTokens the access token is %q", got.Tokens.Access)
	}
	if err := store.Delete(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	if err := store.SetTokens(ctx, sess.ID, next); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, sess.ID); err != errNoSession {
		t.Errorf("an ended session: err = %v, want errNoSession", err)
	}
	for _, id := range []string{"", "short", strings.Repeat("x", 43)} {
		if _, err := store.Get(ctx, id); err != errNoSession {
			t.Errorf("Get(%q): err = %v, want errNoSession", id, err)
		}
	}
}

func TestOnlyOneRequestHoldsASessionsRefreshLock(t *testing.T) {
	rdb := redis.NewClient(mustParse(t, redistest.New(t)))
	t.Cleanup(func() { _ = rdb.Close() })
	store := NewSessions(rdb, time.Hour)
	ctx := t.Context()
	if ok, err := store.Lock(ctx, "id", time.Minute); err != nil {
		t.Fatalf("first Lock: %v", err)
	} else if !ok {
		t.Fatal("first Lock = false, want the lock taken")
	}
	if ok, _ := store.Lock(ctx, "id", time.Minute); ok {
		t.Fatal("a second request took a held lock")
	}
	store.Unlock(ctx, "id")
	if ok, _ := store.Lock(ctx, "id", time.Minute); !ok {
		t.Fatal("the lock was not free after Unlock")
	}
}

func mustParse(t *testing.T, url string) *redis.Options {
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

func TestLocalPathKeepsTheSignInOnThisSite(t *testing.T) {
	for in, want := range map[string]string{
		"/checkout":            "/checkout",
		"/orders?cursor=x":     "/orders?cursor=x",
		"":                     "/",
		"https://evil.example": "/",
		"//evil.example/":      "/",
		"/\\evil.example":      "/",
		"javascript:alert(1)":  "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExplainSaysWhatWentWrongInWords(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		words  string
	}{
		{retryAfterError{apperr.E(apperr.RateLimited, "slow down"), 3 * time.Second}, 429, "Wait 3 seconds"},
		{apperr.E(apperr.Unavailable, "inventory is down"), 503, "not answering right now"},
		{apperr.E(apperr.NotFound, "no such product"), 404, "nothing here"},
		{apperr.E(apperr.Invalid, "the name is too long"), 422, "The name is too long."},
		{apperr.E(apperr.Internal, "a secret stack trace"), 500, "Something went wrong"},
	} {
		status, msg := explain(c.err)
		if status != c.status || !strings.Contains(msg, c.words) {
			t.Errorf("explain(%v) = %d %q, want %d and %q", c.err, status, msg, c.status, c.words)
		}
		if strings.Contains(msg, "secret") {
			t.Errorf("explain(%v) shows the internal message: %q", c.err, msg)
		}
	}
}

func TestParseMoneyReadsAmountsAsCents(t *testing.T) {
	for in, want := range map[string]int64{"12": 1200, "12.5": 1250, "12.50": 1250, "0.07": 7} {
		if got, ok := parseMoney(in); !ok || got != want {
			t.Errorf("parseMoney(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "12.505", "-1", "1,50", "abc", ".5"} {
		if _, ok := parseMoney(in); ok {
			t.Errorf("parseMoney(%q) took it", in)
		}
	}
}

func TestEveryPageRenders(t *testing.T) {
	p, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"catalogue", "product", "cart", "checkout", "signup", "login", "orders", "order", "inbox", "message",
		"admin_home", "admin_products", "admin_product", "admin_sagas", "admin_order"} {
		if _, ok := p.sets[name]; !ok {
			t.Errorf("no page %q", name)
		}
	}
}
