package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// The accounts fakeAccounts knows.
const (
	adminEmail    = "admin@bazaar.test"
	adminPassword = "admin-password"
	shopperEmail  = "shopper@bazaar.test"
	shopperPass   = "shopper-password"
)

// fakeAccounts stands in for the users service at sign-in: it publishes its key set,
// and answers POST /api/v1/auth/login with a token pair signed by that key for an
// admin and a shopper, and the users service's 401 for anything else.
type fakeAccounts struct {
	URL    string
	key    ed25519.PrivateKey
	logins atomic.Int32
	// forwardedFor is the X-Forwarded-For of the latest log-in.
	forwardedFor atomic.Value
}

func newFakeAccounts(t *testing.T) *fakeAccounts {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAccounts{key: priv}
	roles := map[[2]string]auth.Role{
		{adminEmail, adminPassword}: auth.RoleAdmin,
		{shopperEmail, shopperPass}: auth.RoleCustomer,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, auth.KeySet{Keys: []auth.JWK{auth.PublicJWK(kid, pub)}})
	})
	mux.HandleFunc("POST /api/v1/auth/login", func(w http.ResponseWriter, r *http.Request) {
		f.logins.Add(1)
		f.forwardedFor.Store(strings.Join(r.Header.Values("X-Forwarded-For"), "|"))
		var req struct{ Email, Password string }
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, nil, err)
			return
		}
		role, ok := roles[[2]string{req.Email, req.Password}]
		if !ok {
			problem.Write(w, r, nil, apperr.E(apperr.Unauthorized, "wrong e-mail or password"))
			return
		}
		tok, err := auth.NewSigner(kid, priv, 15*time.Minute).Sign(auth.Principal{UserID: uuid.New(), Role: role})
		if err != nil {
			problem.Write(w, r, nil, err)
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]any{
			"access_token": tok, "token_type": "Bearer", "expires_in": 900, "refresh_token": "opaque",
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// token is a bearer token for a new user with role.
func (f *fakeAccounts) token(t *testing.T, role auth.Role) string {
	t.Helper()
	return signWith(t, f.key, role, 15*time.Minute)
}

// opsStack is a gateway whose users service is a fakeAccounts, with the Redis
// database it keeps sessions in and reads task queues from.
type opsStack struct {
	gw       *programtest.Program
	accounts *fakeAccounts
	rdb      *redis.Client
	redisURL string
}

func startOps(t *testing.T, env map[string]string) *opsStack {
	t.Helper()
	accounts := newFakeAccounts(t)
	redisURL := redistest.New(t)
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	all := map[string]string{"USERS_URL": accounts.URL, "REDIS_URL": redisURL}
	maps.Copy(all, env)
	return &opsStack{gw: startGateway(t, all), accounts: accounts, rdb: rdb, redisURL: redisURL}
}

// browser is an HTTP client that, like a test should, shows redirects rather than
// following them, and keeps no cookies: each request carries what the test gives it.
var browser = &http.Client{Transport: testhttp.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send makes a request of the gateway and returns the response with its body read.
func (s *opsStack) send(t *testing.T, method, path string, body url.Values, header http.Header) (*http.Response, string) {
	t.Helper()
	var req *http.Request
	var err error
	if body != nil {
		req, err = http.NewRequest(method, s.gw.URL+path, strings.NewReader(body.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, err = http.NewRequest(method, s.gw.URL+path, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// login posts the sign-in form as a browser on the gateway's own page would.
func (s *opsStack) login(t *testing.T, email, password string, header http.Header) (*http.Response, string) {
	t.Helper()
	h := http.Header{"Origin": {s.gw.URL}}
	maps.Copy(h, header)
	return s.send(t, http.MethodPost, "/ops/login", url.Values{"email": {email}, "password": {password}}, h)
}

// signIn signs the admin in and returns the session cookie.
func (s *opsStack) signIn(t *testing.T) *http.Cookie {
	t.Helper()
	resp, body := s.login(t, adminEmail, adminPassword, nil)
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("admin sign-in: got %d, want 303: %s", resp.StatusCode, body)
	}
	if c == nil {
		t.Fatalf("admin sign-in: no session cookie in %q; want one", resp.Header.Values("Set-Cookie"))
	}
	if c.Value == "" {
		t.Fatalf("admin sign-in: session cookie %v without a value; want the session id", c)
	}
	return c
}

// sessionCookie is the session cookie resp sets, or nil.
func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "bazaar_ops" {
			return c
		}
	}
	return nil
}

func withCookie(c *http.Cookie, h http.Header) http.Header {
	out := http.Header{"Cookie": {c.Name + "=" + c.Value}}
	maps.Copy(out, h)
	return out
}

var (
	htmlAccept = http.Header{"Accept": {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}}
	apiAccept  = http.Header{"Accept": {"application/json, text/plain, */*"}} // what asynqmon's UI sends
)

// sessionKeys are the session records in Redis.
func (s *opsStack) sessionKeys(t *testing.T) []string {
	t.Helper()
	keys, err := s.rdb.Keys(context.Background(), "gateway:session:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// queueList is asynqmon's answer to GET /ops/tasks/api/queues.
type queueList struct {
	Queues []struct {
		Queue   string `json:"queue"`
		Size    int    `json:"size"`
		Pending int    `json:"pending"`
		Paused  bool   `json:"paused"`
	} `json:"queues"`
}

// queues is asynqmon's list of queues as the caller with header sees it.
func (s *opsStack) queues(t *testing.T, header http.Header) (*http.Response, queueList) {
	t.Helper()
	resp, body := s.send(t, http.MethodGet, "/ops/tasks/api/queues", nil, header)
	var l queueList
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			t.Fatalf("asynqmon's queue list: %v: %s", err, body)
		}
	}
	return resp, l
}

// enqueue puts a task on queue in the test's Redis database, as a service would.
func (s *opsStack) enqueue(t *testing.T, queue string) {
	t.Helper()
	opt, err := asynq.ParseRedisURI(s.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	c := asynq.NewClient(opt)
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask("email:send", []byte(`{"notification_id":"n1"}`)), asynq.Queue(queue)); err != nil {
		t.Fatal(err)
	}
}

func TestOpsAdminSignsInAndSeesTheTaskMonitor(t *testing.T) {
	t.Parallel()
	s := startOps(t, map[string]string{"OPS_SESSION_TTL": "2h"})

	resp, body := s.send(t, http.MethodGet, "/ops/login", nil, htmlAccept)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ops/login: %d, want 200\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{`<form method="post" action="/ops/login">`, `name="password" type="password"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("GET /ops/login: no %s in the page; want the sign-in form\n%s", want, body)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("sign-in page CSP %q; want %s in it", csp, want)
		}
	}

	resp, body = s.login(t, adminEmail, adminPassword, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ops/tasks/" {
		t.Fatalf("admin sign-in: got %d to %q, want 303 to /ops/tasks/: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	c := sessionCookie(resp)
	if c == nil {
		t.Fatalf("no session cookie in %q", resp.Header.Values("Set-Cookie"))
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ops" || c.Secure || c.MaxAge != 7200 {
		t.Errorf("cookie %q: want HttpOnly, SameSite=Strict, Path=/ops, Max-Age=7200, not Secure over plain HTTP", c.String())
	}
	if raw, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil || len(raw) != 32 {
		t.Errorf("session id %q is not 32 random bytes", c.Value)
	}

	// Redis holds the session under the id's hash, never the id, for the TTL.
	sum := sha256.Sum256([]byte(c.Value))
	key := "gateway:session:" + hex.EncodeToString(sum[:])
	if keys := s.sessionKeys(t); len(keys) != 1 || keys[0] != key {
		t.Fatalf("session keys %v, want [%s]", keys, key)
	}
	rec, err := s.rdb.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Errorf("session record: %v", err)
	}
	if rec["role"] != "admin" {
		t.Errorf("session record %v: role %q, want admin", rec, rec["role"])
	}
	if err := uuid.Validate(rec["user_id"]); err != nil {
		t.Errorf("session record %v: user_id %q, want a UUID: %v", rec, rec["user_id"], err)
	}
	if ttl := s.rdb.TTL(context.Background(), key).Val(); ttl <= 2*time.Hour-time.Minute || ttl > 2*time.Hour {
		t.Errorf("session TTL %s, want OPS_SESSION_TTL (2h)", ttl)
	}

	// The monitor's page, and its API, which its scripts call under the same root.
	resp, body = s.send(t, http.MethodGet, "/ops/tasks/", nil, withCookie(c, htmlAccept))
	script := regexp.MustCompile(`src="(/ops/tasks/static/js/main\.[^"]+\.js)"`).FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ops/tasks/: %d, want 200 and asynqmon's page:\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `window.FLAG_ROOT_PATH="\/ops\/tasks"`) {
		t.Fatalf("GET /ops/tasks/: no FLAG_ROOT_PATH of /ops/tasks; want asynqmon's page rooted there:\n%s", body)
	}
	if script == nil {
		t.Fatalf("GET /ops/tasks/: no main script /ops/tasks/static/js/main.*.js; want asynqmon's page:\n%s", body)
	}
	resp, _ = s.send(t, http.MethodGet, script[1], nil, withCookie(c, http.Header{"Accept": {"*/*"}}))
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "application/javascript") {
		t.Errorf("GET %s: %d %q, want the monitor's script", script[1], resp.StatusCode, ct)
	}
	s.enqueue(t, "critical")
	resp, list := s.queues(t, withCookie(c, apiAccept))
	if resp.StatusCode != http.StatusOK || len(list.Queues) != 1 || list.Queues[0].Queue != "critical" || list.Queues[0].Pending != 1 {
		t.Fatalf("GET /ops/tasks/api/queues: %d %+v, want the critical queue with one pending task", resp.StatusCode, list)
	}

	// The monitor's address without its slash leads there too.
	resp, _ = s.send(t, http.MethodGet, "/ops/tasks", nil, htmlAccept)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ops/tasks/" {
		t.Errorf("GET /ops/tasks: %d to %q, want a redirect to /ops/tasks/", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Signed in, the sign-in page offers the way on and signing out instead.
	resp, body = s.send(t, http.MethodGet, "/ops/login", nil, withCookie(c, htmlAccept))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ops/login signed in: %d, want 200\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `action="/ops/logout"`) {
		t.Errorf("GET /ops/login signed in: no sign-out form (action=\"/ops/logout\"); want one\n%s", body)
	}
	if strings.Contains(body, `name="password"`) {
		t.Errorf("GET /ops/login signed in: a password field; want none\n%s", body)
	}
}

func TestOpsSessionCookieIsSecureBehindTLS(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)
	resp, body := s.login(t, adminEmail, adminPassword, http.Header{"X-Forwarded-Proto": {"https"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("got %d, want 303: %s", resp.StatusCode, body)
	}
	c := sessionCookie(resp)
	if c == nil {
		t.Fatalf("no session cookie in %q; want a Secure one", resp.Header.Values("Set-Cookie"))
	}
	if !c.Secure {
		t.Fatalf("cookie %v; want it Secure", c)
	}
}

func TestOpsSignInRefusals(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)

	for _, tc := range []struct {
		name, email, password string
		want                  int
		message               string
		askUsers              bool
	}{
		// A customer's right password is answered like a wrong one: the form is not
		// an oracle that confirms a guessed password.
		{"customer", shopperEmail, shopperPass, http.StatusUnauthorized, "Wrong e-mail address or password.", true},
		{"wrong password", adminEmail, "not-the-password", http.StatusUnauthorized, "Wrong e-mail address or password.", true},
		{"unknown e-mail", "nobody@bazaar.test", adminPassword, http.StatusUnauthorized, "Wrong e-mail address or password.", true},
		{"blank password", adminEmail, "", http.StatusBadRequest, "Enter your e-mail address and password.", false},
	} {
		before := s.accounts.logins.Load()
		resp, body := s.login(t, tc.email, tc.password, nil)
		if resp.StatusCode != tc.want || !strings.Contains(body, tc.message) || !strings.Contains(body, `<form method="post"`) {
			t.Errorf("%s: got %d, want %d and the form again with %q:\n%s", tc.name, resp.StatusCode, tc.want, tc.message, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: content type %q", tc.name, ct)
		}
		if c := sessionCookie(resp); c != nil {
			t.Errorf("%s: got a session cookie %v", tc.name, c)
		}
		if asked := s.accounts.logins.Load() > before; asked != tc.askUsers {
			t.Errorf("%s: users asked: %t, want %t", tc.name, asked, tc.askUsers)
		}
	}
	if keys := s.sessionKeys(t); len(keys) != 0 {
		t.Errorf("refused sign-ins left sessions: %v", keys)
	}
}

func TestOpsSignInWithUsersDownIsA503Page(t *testing.T) {
	t.Parallel()
	accounts := newFakeAccounts(t) // still publishes the keys
	gw := startGateway(t, map[string]string{"USERS_URL": closedURL(t), "JWKS_URL": accounts.URL + "/.well-known/jwks.json"})
	s := &opsStack{gw: gw, accounts: accounts}

	resp, body := s.login(t, adminEmail, adminPassword, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Signing in is not possible right now") ||
		!strings.Contains(body, `value="`+adminEmail+`"`) {
		t.Fatalf("got %d, want 503 and the form again:\n%s", resp.StatusCode, body)
	}
	if c := sessionCookie(resp); c != nil {
		t.Errorf("got a session cookie %v", c)
	}
}

func TestOpsMonitorRefusesWithoutAnAdmin(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)
	var forged [32]byte
	_, _ = rand.Read(forged[:])
	forgedCookie := &http.Cookie{Name: "bazaar_ops", Value: base64.RawURLEncoding.EncodeToString(forged[:])}

	for name, c := range map[string]*http.Cookie{
		"no cookie":     nil,
		"forged cookie": forgedCookie,
		"junk cookie":   {Name: "bazaar_ops", Value: "admin"},
	} {
		page, api := htmlAccept, apiAccept
		if c != nil {
			page, api = withCookie(c, htmlAccept), withCookie(c, apiAccept)
		}
		// A browser navigating is sent to sign in; the monitor's scripts get a 401.
		resp, body := s.send(t, http.MethodGet, "/ops/tasks/queues/critical", nil, page)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ops/login" {
			t.Errorf("%s, page: got %d to %q, want 303 to /ops/login: %s", name, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		resp, body = s.send(t, http.MethodGet, "/ops/tasks/api/queues", nil, api)
		if d := decodeProblem(t, resp, []byte(body)); resp.StatusCode != http.StatusUnauthorized || d.Status != http.StatusUnauthorized {
			t.Errorf("%s, API: got %d %+v, want a 401 problem", name, resp.StatusCode, d)
		}
		if c != nil {
			if dead := sessionCookie(resp); dead == nil || dead.MaxAge >= 0 {
				t.Errorf("%s: the dead cookie was not deleted (%v)", name, dead)
			}
		}
		// A state change is refused the same way, and changes nothing.
		resp, _ = s.send(t, http.MethodDelete, "/ops/tasks/api/queues/critical", nil, api)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s, DELETE: got %d, want 401", name, resp.StatusCode)
		}
	}

	// Bearer tokens, for scripts: an admin's works, a customer's is a 403, a bad one a 401.
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"admin token", bearer(s.accounts.token(t, auth.RoleAdmin)), http.StatusOK},
		{"customer token", bearer(s.accounts.token(t, auth.RoleCustomer)), http.StatusForbidden},
		{"bad token", bearer("not-a-jwt"), http.StatusUnauthorized},
		{"admin token, other key", bearer(signWith(t, otherKey(t), auth.RoleAdmin, time.Minute)), http.StatusUnauthorized},
	} {
		resp, body := s.send(t, http.MethodGet, "/ops/tasks/api/queues", nil, tc.header)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: got %d, want %d: %s", tc.name, resp.StatusCode, tc.want, body)
		}
		if tc.want != http.StatusOK {
			decodeProblem(t, resp, []byte(body))
		}
	}
}

func otherKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestOpsSignOutAndExpiryEndTheSession(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)

	c := s.signIn(t)
	if resp, _ := s.queues(t, withCookie(c, apiAccept)); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: got %d", resp.StatusCode)
	}
	resp, body := s.send(t, http.MethodPost, "/ops/logout", url.Values{}, withCookie(c, http.Header{"Origin": {s.gw.URL}}))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: got %d, want 303: %s", resp.StatusCode, body)
	}
	if loc := resp.Header.Get("Location"); loc != "/ops/login" {
		t.Fatalf("sign-out: to %q, want /ops/login", loc)
	}
	if dead := sessionCookie(resp); dead == nil {
		t.Error("sign-out did not delete the cookie: no cookie set")
	} else {
		if dead.MaxAge >= 0 {
			t.Errorf("sign-out did not delete the cookie: %v, Max-Age %d; want below 0", dead, dead.MaxAge)
		}
		if dead.Path != "/ops" {
			t.Errorf("sign-out did not delete the cookie: %v, path %q; want /ops", dead, dead.Path)
		}
	}
	// The browser may still send the old id (a copy, a stolen one): it opens nothing.
	if resp, _ := s.queues(t, withCookie(c, apiAccept)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after sign-out: got %d, want 401", resp.StatusCode)
	}
	if keys := s.sessionKeys(t); len(keys) != 0 {
		t.Errorf("sign-out left sessions: %v", keys)
	}

	// A session that reaches its TTL is gone the same way. Rather than wait out a TTL,
	// the test makes Redis expire this one now.
	c = s.signIn(t)
	keys := s.sessionKeys(t)
	if len(keys) != 1 {
		t.Fatalf("session keys %v", keys)
	}
	ctx := context.Background()
	if err := s.rdb.PExpire(ctx, keys[0], time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.rdb.Exists(ctx, keys[0]).Val() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the session did not expire")
		}
		time.Sleep(5 * time.Millisecond) // poll Redis's clock
	}
	resp, _ = s.send(t, http.MethodGet, "/ops/tasks/", nil, withCookie(c, htmlAccept))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ops/login" {
		t.Errorf("expired session: got %d to %q, want 303 to /ops/login", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestOpsRefusesCrossOriginWrites(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)
	c := s.signIn(t)
	s.enqueue(t, "critical")
	const pause = "/ops/tasks/api/queues/critical:pause"

	paused := func() bool {
		t.Helper()
		resp, list := s.queues(t, withCookie(c, apiAccept))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("queues: %d %+v; want 200", resp.StatusCode, list)
		}
		if len(list.Queues) != 1 {
			t.Fatalf("queues: %+v; want 1", list.Queues)
		}
		return list.Queues[0].Paused
	}

	for name, h := range map[string]http.Header{
		"other origin":              {"Origin": {"http://evil.example"}},
		"other site (fetch header)": {"Sec-Fetch-Site": {"cross-site"}},
		"same site, other origin":   {"Sec-Fetch-Site": {"same-site"}},
		"other referer, no origin":  {"Referer": {"http://evil.example/page"}},
	} {
		resp, body := s.send(t, http.MethodPost, pause, nil, withCookie(c, h))
		if d := decodeProblem(t, resp, []byte(body)); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: got %d %+v, want 403", name, resp.StatusCode, d)
		}
	}
	if paused() {
		t.Fatal("a cross-origin request paused the queue")
	}
	// Sign-in is guarded too: a forged one never reaches the users service.
	before := s.accounts.logins.Load()
	if resp, _ := s.login(t, adminEmail, adminPassword, http.Header{"Origin": {"http://evil.example"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin sign-in: got %d, want 403", resp.StatusCode)
	}
	if s.accounts.logins.Load() != before {
		t.Error("a cross-origin sign-in reached the users service")
	}

	// The monitor's own page, calling its API from the gateway's origin, may.
	resp, body := s.send(t, http.MethodPost, pause, nil, withCookie(c, http.Header{
		"Origin": {s.gw.URL}, "Sec-Fetch-Site": {"same-origin"}, "Referer": {s.gw.URL + "/ops/tasks/"}}))
	if resp.StatusCode != http.StatusNoContent || !paused() {
		t.Fatalf("same-origin pause: got %d %s, want 204 and the queue paused", resp.StatusCode, body)
	}
}

func TestOpsSignInDoesNotConfirmACustomersPassword(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)
	right, rightBody := s.login(t, shopperEmail, shopperPass, nil)
	wrong, wrongBody := s.login(t, shopperEmail, "not-the-password", nil)
	if right.StatusCode != wrong.StatusCode || rightBody != wrongBody || right.StatusCode != http.StatusUnauthorized {
		t.Errorf("a customer's right password: %d\n%s\nand a wrong one: %d\n%s\nwant the same 401 page", right.StatusCode, rightBody, wrong.StatusCode, wrongBody)
	}
	for _, h := range []string{"Content-Type", "Cache-Control", "Content-Security-Policy", "Set-Cookie", "Retry-After"} {
		if right.Header.Get(h) != wrong.Header.Get(h) {
			t.Errorf("%s: %q for the right password, %q for a wrong one", h, right.Header.Get(h), wrong.Header.Get(h))
		}
	}
	// The password was checked both times (the same work, so the same time class).
	if n := s.accounts.logins.Load(); n != 2 {
		t.Errorf("users asked %d times, want 2", n)
	}
}

// expectOps429 checks a sign-in turned away by a rate limit: the form again, 429,
// with a whole Retry-After, and no call to the users service.
func expectOps429(t *testing.T, s *opsStack, resp *http.Response, body string, loginsBefore int32) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many sign-in attempts") || !strings.Contains(body, `<form method="post"`) {
		t.Fatalf("got %d, want 429 and the form with a message:\n%s", resp.StatusCode, body)
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
	}
	if s.accounts.logins.Load() != loginsBefore {
		t.Error("a sign-in over the limit reached the users service")
	}
	if c := sessionCookie(resp); c != nil {
		t.Errorf("got a session cookie %v", c)
	}
}

func TestOpsSignInIsLimitedPerIP(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil) // the defaults: 10 a minute per address, 5 per e-mail
	for i := range 10 {
		resp, body := s.login(t, fmt.Sprintf("guess-%d@bazaar.test", i), "password-guess", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: got %d, want 401:\n%s", i+1, resp.StatusCode, body)
		}
	}
	before := s.accounts.logins.Load()
	resp, body := s.login(t, "guess-10@bazaar.test", "password-guess", nil)
	expectOps429(t, s, resp, body, before)
	// Even the admin's right password waits: the limit is on attempts, not failures.
	resp, body = s.login(t, adminEmail, adminPassword, nil)
	expectOps429(t, s, resp, body, before)
}

func TestOpsSignInIsLimitedPerEmailTogetherWithTheAPI(t *testing.T) {
	t.Parallel()
	s := startOps(t, map[string]string{"RATE_AUTH_IP_PER_MIN": "0"})
	// Five attempts on one address, some through the API's log-in, some through the
	// form, in any letter case: one budget, so that neither door doubles it.
	for i := range 5 {
		email := []string{adminEmail, strings.ToUpper(adminEmail)}[i%2]
		if i < 2 {
			resp, body := send(t, http.MethodPost, s.gw.URL+"/api/v1/auth/login", fmt.Sprintf(`{"email":%q,"password":"guess-%d"}`, email, i), "", nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("API attempt %d: %d %s", i+1, resp.StatusCode, body)
			}
			continue
		}
		if resp, body := s.login(t, email, fmt.Sprint("guess-", i), nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("form attempt %d: got %d:\n%s", i+1, resp.StatusCode, body)
		}
	}
	before := s.accounts.logins.Load()
	resp, body := s.login(t, adminEmail, adminPassword, nil)
	expectOps429(t, s, resp, body, before)
	resp, apiBody := send(t, http.MethodPost, s.gw.URL+"/api/v1/auth/login", fmt.Sprintf(`{"email":%q,"password":%q}`, adminEmail, adminPassword), "", nil)
	expect429(t, resp, apiBody)
	// Another address still gets its answer.
	if resp, body := s.login(t, shopperEmail, "wrong", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("another address: got %d:\n%s", resp.StatusCode, body)
	}
}

func TestOpsSignInTellsUsersTheBrowsersAddress(t *testing.T) {
	t.Parallel()
	s := startOps(t, nil)
	// A forged header is not passed on: the address is the one the gateway saw.
	if resp, body := s.login(t, adminEmail, adminPassword, http.Header{"X-Forwarded-For": {"198.51.100.1"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d\n%s", resp.StatusCode, body)
	}
	if got := s.accounts.forwardedFor.Load(); got != "127.0.0.1" {
		t.Errorf("users got X-Forwarded-For %q, want the browser's address 127.0.0.1", got)
	}
}

func TestOpsSignInPassesOnUsersRetryAfter(t *testing.T) {
	t.Parallel()
	users := newUpstream(t, "users", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "42")
		problem.Write(w, r, nil, apperr.E(apperr.RateLimited, "slow down"))
	})
	s := &opsStack{gw: startGateway(t, map[string]string{"USERS_URL": users.URL}), accounts: &fakeAccounts{}}
	resp, body := s.login(t, adminEmail, "a-guess", nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "42" || !strings.Contains(body, "Too many sign-in attempts") {
		t.Errorf("got %d, Retry-After %q, want 429 after 42s:\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}
