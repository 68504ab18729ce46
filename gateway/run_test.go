package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/gateway/internal/systemhealth"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	return closedport.URL(t)
}

// startGateway runs the gateway with env over defaults that point every upstream at a
// closed port, so that a test never reaches a locally running stack by accident. The
// gateway keeps state in Redis (sessions; the task monitor reads the queues there), so
// unless env names a REDIS_URL the test gets a logical database of its own.
func startGateway(t *testing.T, env map[string]string) *programtest.Program {
	t.Helper()
	all := map[string]string{"LOG_LEVEL": "debug", "OPS_ADDR": "127.0.0.1:0"}
	for _, name := range []string{"USERS_URL", "INVENTORY_URL", "PAYMENTS_URL", "ORDERS_URL", "NOTIFICATIONS_URL"} {
		all[name] = closedURL(t)
	}
	if _, ok := env["REDIS_URL"]; !ok {
		all["REDIS_URL"] = redistest.New(t)
	}
	maps.Copy(all, env)
	return programtest.Start(t, run, all)
}

func get(t *testing.T, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func decodeProblem(t *testing.T, resp *http.Response, body []byte) problem.Details {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("content type %q, want %q; body %s", ct, problem.ContentType, body)
	}
	var d problem.Details
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// fakeUsers stands in for the users service: it publishes its signing key at the
// JWKS path and records every API call it receives.
type fakeUsers struct {
	URL  string
	key  ed25519.PrivateKey
	mu   sync.Mutex
	seen []*http.Request
}

const kid = "key-1"

func newFakeUsers(t *testing.T) *fakeUsers {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUsers{key: priv}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/jwks.json" {
			httpjson.Write(w, http.StatusOK, auth.KeySet{Keys: []auth.JWK{auth.PublicJWK(kid, pub)}})
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, r.Clone(context.Background()))
		f.mu.Unlock()
		httpjson.Write(w, http.StatusOK, map[string]string{"answered_by": "users", "path": r.URL.Path})
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// calls are the API requests the fake has received.
func (f *fakeUsers) calls() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.seen...)
}

func (f *fakeUsers) sign(t *testing.T, ttl time.Duration) string {
	t.Helper()
	return signWith(t, f.key, auth.RoleCustomer, ttl)
}

// signWith issues a token for a new user with role, signed with key under kid.
func signWith(t *testing.T, key ed25519.PrivateKey, role auth.Role, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.NewSigner(kid, key, ttl).Sign(auth.Principal{UserID: uuid.New(), Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge builds a JWT by hand, for the tokens auth.Signer refuses to make. It is signed
// with key unless key is nil.
func forge(header, claims map[string]any, key ed25519.PrivateKey) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(header) + "." + enc(claims)
	sig := ""
	if key != nil {
		sig = base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(signed)))
	}
	return signed + "." + sig
}

func goodClaims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": auth.Issuer, "aud": []string{auth.Audience}, "sub": uuid.NewString(), "role": "customer",
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(), "jti": "j1",
	}
}

func with(m map[string]any, k string, v any) map[string]any {
	out := maps.Clone(m)
	out[k] = v
	return out
}

// eddsa is an access token's header (typ at+jwt, as auth.Signer writes it).
var eddsa = map[string]any{"alg": "EdDSA", "typ": auth.TokenType, "kid": kid}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestMeIsForwardedOnlyWithAValidToken(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	// JWKS_URL is left to its default, the users service's key set.
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL})
	me := gw.URL + "/api/v1/users/me"

	valid := users.sign(t, 15*time.Minute)
	parts := strings.Split(valid, ".")
	adminClaims := with(goodClaims(), "role", "admin")
	claimsJSON, _ := json.Marshal(adminClaims)
	_, otherKey, _ := ed25519.GenerateKey(nil)

	for name, header := range map[string]http.Header{
		"no token":     nil,
		"basic scheme": {"Authorization": {"Basic dXNlcjpwYXNz"}},
		"not a jwt":    bearer("not-a-jwt"),
		"tampered":     bearer(parts[0] + "." + base64.RawURLEncoding.EncodeToString(claimsJSON) + "." + parts[2]),
		"expired":      bearer(users.sign(t, -time.Hour)),
		"alg none":     bearer(forge(map[string]any{"alg": "none", "typ": "JWT", "kid": kid}, goodClaims(), nil)),
		"wrong aud":    bearer(forge(eddsa, with(goodClaims(), "aud", []string{"elsewhere"}), users.key)),
		"wrong iss":    bearer(forge(eddsa, with(goodClaims(), "iss", "someone-else"), users.key)),
		"another key":  bearer(forge(eddsa, goodClaims(), otherKey)),
		"unknown kid":  bearer(forge(with(eddsa, "kid", "key-9"), goodClaims(), users.key)),
	} {
		resp, body := get(t, me, header)
		d := decodeProblem(t, resp, body)
		if resp.StatusCode != http.StatusUnauthorized || d.Type != problem.TypePrefix+"unauthorized" {
			t.Errorf("%s: got %d %+v, want 401 unauthorized", name, resp.StatusCode, d)
		}
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := len(users.calls()); n != 0 {
		t.Fatalf("the users service received %d calls for requests the gateway should have refused", n)
	}

	// A hand-forged token with the right claims and key passes: the refusals above
	// were for what each case changed, not for how forge builds tokens.
	for _, tok := range []string{valid, forge(eddsa, goodClaims(), users.key)} {
		resp, body := get(t, me, bearer(tok))
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"answered_by":"users"`)) {
			t.Fatalf("token %s: got %d %s, want the users service's answer", tok, resp.StatusCode, body)
		}
	}
	calls := users.calls()
	if len(calls) != 2 {
		t.Fatalf("the users service received %d calls, want 2", len(calls))
	}
	if c := calls[0]; c.Method != http.MethodGet || c.URL.Path != "/api/v1/users/me" || c.Header.Get("Authorization") != "Bearer "+valid {
		t.Errorf("users got %s %s with Authorization %q; want GET /api/v1/users/me with the token",
			c.Method, c.URL.Path, c.Header.Get("Authorization"))
	}
}

// recordingService stands in for a service: it answers every request with a fixed
// JSON body and hands what it received to the returned channel.
func recordingService(t *testing.T, answer string) (string, <-chan *http.Request) {
	t.Helper()
	got := make(chan *http.Request, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Clone(context.Background())
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

func TestNotificationsAreForwardedOnlyWithAValidToken(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	const answer = `{"items":[],"next_cursor":null}`
	notificationsURL, got := recordingService(t, answer)
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "NOTIFICATIONS_URL": notificationsURL})
	list := gw.URL + "/api/v1/notifications?limit=5"

	for name, header := range map[string]http.Header{
		"no token":  nil,
		"expired":   bearer(users.sign(t, -time.Hour)),
		"not a jwt": bearer("not-a-jwt"),
	} {
		resp, body := get(t, list, header)
		if d := decodeProblem(t, resp, body); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: got %d %+v, want 401", name, resp.StatusCode, d)
		}
	}
	select {
	case r := <-got:
		t.Fatalf("notifications received %s %s for a request the gateway should have refused", r.Method, r.URL)
	default:
	}

	tok := users.sign(t, 15*time.Minute)
	resp, body := get(t, list, bearer(tok))
	if resp.StatusCode != http.StatusOK || string(body) != answer {
		t.Fatalf("got %d %s, want the notifications service's answer", resp.StatusCode, body)
	}
	select {
	case r := <-got:
		if r.Method != http.MethodGet || r.URL.RequestURI() != "/api/v1/notifications?limit=5" ||
			r.Header.Get("Authorization") != "Bearer "+tok {
			t.Errorf("notifications got %s %s with Authorization %q; want GET /api/v1/notifications?limit=5 with the token",
				r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
		}
	default:
		t.Fatal("the notifications service received nothing") // it had answered already
	}
}

func TestAuthRoutesAreAnonymous(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL})

	for _, path := range []string{"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh"} {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+path, strings.NewReader(`{}`))
		if resp, body := do(t, req); resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(path)) {
			t.Errorf("POST %s: got %d %s, want it forwarded to users", path, resp.StatusCode, body)
		}
	}
	if n := len(users.calls()); n != 3 {
		t.Errorf("the users service received %d calls, want 3", n)
	}
}

func TestUnbuiltRoutesAreTheGatewaysProblems(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL})

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/api/v1/products/p1/reviews", http.StatusNotFound}, // not built: no pretending
		{http.MethodGet, "/api/v1/users/someone-else", http.StatusNotFound},
		{http.MethodGet, "/api/v1/admin/tasks", http.StatusNotFound},
		{http.MethodGet, "/api/v2/users/me", http.StatusNotFound},
		{http.MethodGet, "/internal/stock/reserve", http.StatusNotFound}, // services' internal routes are not public
		{http.MethodPost, "/internal/reservations", http.StatusNotFound},
		{http.MethodGet, "/internal/charges/o1", http.StatusNotFound},
		{http.MethodDelete, "/api/v1/users/me", http.StatusMethodNotAllowed},
		{http.MethodPost, "/api/v1/notifications", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/api/v1/products/p1", http.StatusMethodNotAllowed},
		{http.MethodPut, "/api/v1/orders/o1", http.StatusMethodNotAllowed},
		{http.MethodPost, "/api/v1/payments", http.StatusMethodNotAllowed},
		{http.MethodGet, "/ops/nothing-here", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, gw.URL+tc.path, nil)
		resp, body := do(t, req)
		if d := decodeProblem(t, resp, body); resp.StatusCode != tc.want || d.Status != tc.want {
			t.Errorf("%s %s: got %d %+v, want %d", tc.method, tc.path, resp.StatusCode, d, tc.want)
		}
	}
	if n := len(users.calls()); n != 0 {
		t.Errorf("the users service received %d calls", n)
	}
}

func TestSlowUsersServiceTimesOutAfterUpstreamTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Go's server notices a client hanging up only once the body is read.
		io.Copy(io.Discard, r.Body)
		select { // until the gateway gives up, or the test ends (Close waits for handlers)
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); slow.Close() })
	gw := startGateway(t, map[string]string{"USERS_URL": slow.URL, "UPSTREAM_TIMEOUT": "200ms"})

	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/api/v1/auth/login", strings.NewReader(`{}`))
	resp, body := do(t, req)
	if d := decodeProblem(t, resp, body); resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(d.Detail, "users") {
		t.Errorf("got %d %+v, want a 504 naming users", resp.StatusCode, d)
	}
}

// fakeService is a service whose /readyz answers rep.
func fakeService(t *testing.T, rep health.Report) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		status := http.StatusOK
		if rep.Status == health.Unhealthy {
			status = http.StatusServiceUnavailable
		}
		httpjson.Write(w, status, rep)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestHealthAggregatesEveryService(t *testing.T) {
	t.Parallel()
	healthy := health.Report{Status: health.Healthy, Checks: map[string]health.Status{
		"postgres": health.Healthy, "migrations": health.Healthy, "redis": health.Healthy}}
	degraded := health.Report{Status: health.Degraded, Checks: map[string]health.Status{
		"postgres": health.Healthy, "migrations": health.Healthy, "redis": health.Unhealthy}}
	unreachable := health.Report{Status: health.Unhealthy, Checks: map[string]health.Status{
		systemhealth.CheckReachable: health.Unhealthy}}
	services := []string{"users", "inventory", "payments", "orders", "notifications"}

	for _, tc := range []struct {
		name     string
		override map[string]string // env
		want     health.Status
		wantCode int
		check    map[string]health.Report // services whose report must be exactly this
	}{
		{name: "all healthy", want: health.Healthy, wantCode: http.StatusOK},
		{
			name: "one degraded", override: map[string]string{"PAYMENTS_INTERNAL_URL": fakeService(t, degraded)},
			want: health.Degraded, wantCode: http.StatusOK, check: map[string]health.Report{"payments": degraded},
		},
		{
			name: "one down", override: map[string]string{"ORDERS_INTERNAL_URL": closedURL(t)},
			want: health.Unhealthy, wantCode: http.StatusServiceUnavailable, check: map[string]health.Report{"orders": unreachable},
		},
		{
			name: "gateway degraded", override: map[string]string{"REDIS_URL": "redis://" + strings.TrimPrefix(closedURL(t), "http://") + "/0"},
			want: health.Degraded, wantCode: http.StatusOK,
			check: map[string]health.Report{"gateway": {Status: health.Degraded, Checks: map[string]health.Status{"redis": health.Unhealthy}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for _, s := range services {
				env[strings.ToUpper(s)+"_INTERNAL_URL"] = fakeService(t, healthy)
			}
			maps.Copy(env, tc.override)
			gw := startGateway(t, env)

			resp, body := get(t, gw.URL+"/health", nil)
			var rep systemhealth.Report
			if err := json.Unmarshal(body, &rep); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if resp.StatusCode != tc.wantCode || rep.Status != tc.want {
				t.Errorf("got %d %s, want %d %s: %s", resp.StatusCode, rep.Status, tc.wantCode, tc.want, body)
			}
			for _, name := range append(services, "gateway") {
				got, ok := rep.Services[name]
				want, special := tc.check[name]
				switch {
				case !ok:
					t.Errorf("%s missing from %s", name, body)
				case special && !equalReports(got, want):
					t.Errorf("%s: got %+v, want %+v", name, got, want)
				case !special && name != "gateway" && !equalReports(got, healthy):
					t.Errorf("%s: got %+v, want its own healthy report", name, got)
				case !special && name == "gateway" && got.Status != health.Healthy:
					t.Errorf("gateway: got %+v, want healthy", got)
				}
			}
		})
	}
}

func equalReports(a, b health.Report) bool {
	return a.Status == b.Status && maps.Equal(a.Checks, b.Checks)
}

// opsListening is the log line of the operations listener (OPS_ADDR).
var opsListening = regexp.MustCompile(`"msg":"ops listening"[^\n]*?"addr":"([^"]+)"`)

// opsURL is the base URL of gw's operations listener, read from its log.
func opsURL(t *testing.T, gw *programtest.Program) string {
	t.Helper()
	m := opsListening.FindStringSubmatch(gw.Logs())
	if m == nil {
		t.Fatalf("no ops listener in the logs:\n%s", gw.Logs())
	}
	return "http://" + m[1]
}

func TestOperationalRoutes(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, map[string]string{})
	ops := opsURL(t, gw)

	// The probes answer on both listeners: orchestrators and the local stack probe
	// the public port; an operator's tools may keep to the operations one.
	for _, base := range []string{gw.URL, ops} {
		if resp, body := get(t, base+"/healthz", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s/healthz: %d %s", base, resp.StatusCode, body)
		}
		resp, body := get(t, base+"/readyz", nil)
		var rep health.Report
		if err := json.Unmarshal(body, &rep); err != nil || resp.StatusCode != http.StatusOK || rep.Checks["redis"] != health.Healthy {
			t.Errorf("%s/readyz: %d %s (%v)", base, resp.StatusCode, body, err)
		}
	}
	// What a container's healthcheck runs (gateway -probe) asks the ops listener.
	if err := gw.Probe(); err != nil {
		t.Errorf("the probe of a ready gateway: %v", err)
	}
	get(t, gw.URL+"/api/v1/nothing-here", nil)
	// Metrics are for operators: not on the public port.
	if resp, body := get(t, gw.URL+"/metrics", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("public /metrics: %d, want 404:\n%.300s", resp.StatusCode, body)
	}
	// It counts the public port's requests (the two 404s), as every service's
	// internal listener counts its own.
	if resp, body := get(t, ops+"/metrics", nil); resp.StatusCode != http.StatusOK ||
		!bytes.Contains(body, []byte(`http_requests_total{code="404",method="GET",route="unmatched"} 2`+"\n")) {
		t.Errorf("ops /metrics: %d, want the public 404s counted:\n%s", resp.StatusCode, body)
	}
	// Nothing else is served there.
	if resp, _ := get(t, ops+"/api/v1/products", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("ops /api/v1/products: %d, want 404", resp.StatusCode)
	}
}

// The gateway's profiler is the platform's: on the operations listener with PPROF,
// never on the public port.
func TestTheProfilerIsOnTheOpsListenerOnlyWhenAskedFor(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("PPROF=%t", on), func(t *testing.T) {
			gw := startGateway(t, map[string]string{"PPROF": strconv.FormatBool(on)})
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			if resp, _ := get(t, opsURL(t, gw)+"/debug/pprof/heap?debug=1", nil); resp.StatusCode != want {
				t.Errorf("ops /debug/pprof/heap: %d, want %d", resp.StatusCode, want)
			}
			if resp, _ := get(t, gw.URL+"/debug/pprof/heap?debug=1", nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("public /debug/pprof/heap: %d, want 404", resp.StatusCode)
			}
		})
	}
}

func TestHealthIsLimitedPerAddress(t *testing.T) {
	t.Parallel()
	env := map[string]string{"RATE_IP": "1", "RATE_IP_BURST": "2"}
	for _, s := range []string{"users", "inventory", "payments", "orders", "notifications"} {
		env[strings.ToUpper(s)+"_INTERNAL_URL"] = fakeService(t, health.Report{Status: health.Healthy, Checks: map[string]health.Status{}})
	}
	gw := startGateway(t, env)
	for i := range 2 {
		if resp, body := get(t, gw.URL+"/health", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("/health %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := get(t, gw.URL+"/health", nil)
	expect429(t, resp, body)
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		"HTTP_ADDR":           "nope",
		"REDIS_URL":           "http://127.0.0.1:6379",
		"USERS_URL":           "ftp://users",
		"ORDERS_URL":          "not a url",
		"JWKS_URL":            "jwks.json",
		"LOG_LEVEL":           "loud",
		"UPSTREAM_TIMEOUT":    "soon",
		"NOTIFICATIONS_URL":   "http://u:hunter2@/no-host",
		"OPS_SESSION_TTL":     "0s",
		"PRODUCT_CACHE_TTL":   "-1m",
		"STREAM_IDLE_TIMEOUT": "forever",
		"OPS_ADDR":            "nowhere",
		"RATE_EDGE_IP":        "lots",
		"RATE_EDGE_IP_BURST":  "-1",
		"RATE_REDIS_TIMEOUT":  "never",
	}
	err := run(context.Background(), nil, func(k string) string { return bad[k] }, io.Discard)
	if err == nil {
		t.Fatal("want an error")
	}
	for name := range bad {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows a password:\n%v", err)
	}
}

func TestConfigDefaultsAndMaskedLog(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"HTTP_ADDR", cfg.HTTPAddr, ":8080"},
		{"OPS_ADDR", cfg.InternalAddr, "127.0.0.1:9080"},
		{"USERS_URL", cfg.UsersURL, "http://127.0.0.1:8081"},
		{"NOTIFICATIONS_URL", cfg.NotificationsURL, "http://127.0.0.1:8085"},
		{"JWKS_URL", cfg.JWKSURL, "http://127.0.0.1:8081/.well-known/jwks.json"},
		{"UPSTREAM_TIMEOUT", cfg.UpstreamTimeout, 10 * time.Second},
		{"OPS_SESSION_TTL", cfg.OpsSessionTTL, 8 * time.Hour},
		{"PRODUCT_CACHE_TTL", cfg.ProductCacheTTL, time.Minute},
		{"STREAM_IDLE_TIMEOUT", cfg.StreamIdleTimeout, time.Minute},
		{"PPROF", cfg.Pprof, false},
		{"DATABASE_URL (none)", cfg.DatabaseURL, ""},
	} {
		if c.got != c.want {
			t.Errorf("%s defaults to %v, want %v", c.name, c.got, c.want)
		}
	}
	if !strings.HasPrefix(cfg.ConsumerName, "gateway@") {
		t.Errorf("CONSUMER_NAME defaults to %q, want gateway@<host>", cfg.ConsumerName)
	}
	// The per-address limit in front of token checks: a lone user meets their own
	// limit first, and a flood of 150 bad tokens at once cannot fit in its burst.
	if l := cfg.RateLimits; l.EdgeIP != 100 || l.EdgeIPBurst != 100 || l.EdgeIP < l.User || l.EdgeIPBurst < l.UserBurst {
		t.Errorf("RATE_EDGE_IP, RATE_EDGE_IP_BURST default to %d, %d; want 100, 100", l.EdgeIP, l.EdgeIPBurst)
	}

	// A program told to take any free port is one of many on the machine (a test's
	// stack): its operations listener takes any free port too, not a fixed one.
	for httpAddr, want := range map[string]string{"127.0.0.1:0": "127.0.0.1:0", ":0": "127.0.0.1:0", "127.0.0.1:8080": "127.0.0.1:9080"} {
		cfg, err := loadConfig(func(k string) string { return map[string]string{"HTTP_ADDR": httpAddr}[k] })
		if err != nil || cfg.InternalAddr != want {
			t.Errorf("HTTP_ADDR=%s: OPS_ADDR defaults to %q (%v), want %q", httpAddr, cfg.InternalAddr, err, want)
		}
	}
	if cfg, _ := loadConfig(func(k string) string {
		return map[string]string{"HTTP_ADDR": "127.0.0.1:0", "OPS_ADDR": "10.0.0.5:9999"}[k]
	}); cfg.InternalAddr != "10.0.0.5:9999" {
		t.Errorf("OPS_ADDR set: %q", cfg.InternalAddr)
	}

	env := map[string]string{"USERS_URL": "http://users.internal:8081/", "REDIS_URL": "redis://:hunter2@redis:6379/0"}
	cfg, err = loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JWKSURL != "http://users.internal:8081/.well-known/jwks.json" {
		t.Errorf("JWKS_URL defaults to %q, want the users service's key set", cfg.JWKSURL)
	}
	// What run logs: the shared settings (platform.Start), then the gateway's own.
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("starting", "config", cfg.Config)
	log.Info("gateway settings", "config", cfg)
	if strings.Contains(logs.String(), "hunter2") {
		t.Errorf("a password logged: %s", logs.String())
	}
	for _, want := range []string{`"redis_url":"redis://:xxxxx@redis:6379/0"`, `"ops_addr":"127.0.0.1:9080"`, `"users_url":"http://users.internal:8081/"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("config logged without %s: %s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "database_url") {
		t.Errorf("a gateway without a database logged a database_url: %s", logs.String())
	}
}
