package svcauth_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/testclock"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
)

func keysDir(t *testing.T, services ...string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := svcauth.EnsureKeys(dir, services...); err != nil {
		t.Fatal(err)
	}
	return dir
}

func signer(t *testing.T, dir, service string, c *testclock.Clock) *svcauth.Signer {
	t.Helper()
	s, err := svcauth.NewSigner(service, svcauth.KeyFile(dir, service))
	if err != nil {
		t.Fatal(err)
	}
	return s.WithClock(c.Now)
}

func verifier(t *testing.T, dir, self string, c *testclock.Clock) *svcauth.Verifier {
	t.Helper()
	v, err := svcauth.NewVerifier(self, svcauth.TrustDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	return v.WithClock(c.Now)
}

func TestAServiceProvesWhoItIsToTheServiceItCalls(t *testing.T) {
	t.Parallel()
	dir := keysDir(t, "orders", "payments")
	c := testclock.New(time.Now())
	tok, err := signer(t, dir, "orders", c).Token("payments")
	if err != nil {
		t.Fatal(err)
	}
	caller, err := verifier(t, dir, "payments", c).Verify(tok)
	if err != nil || caller != "orders" {
		t.Fatalf("Verify = %q, %v; want orders", caller, err)
	}
}

// forge signs claims with key under header fields, the way an attacker holding (or a
// bug misusing) a key would.
func forge(t *testing.T, key ed25519.PrivateKey, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = auth.Thumbprint(key.Public().(ed25519.PublicKey))
	tok.Header["typ"] = svcauth.TokenType
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRequireLetsInOnlyTheRoutesCallers(t *testing.T) {
	t.Parallel()
	dir := keysDir(t, "orders", "payments", "notifications")
	c := testclock.New(time.Now())
	ordersKey, err := svcauth.ReadPrivateKey(svcauth.KeyFile(dir, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	notificationsKey, err := svcauth.ReadPrivateKey(svcauth.KeyFile(dir, "notifications"))
	if err != nil {
		t.Fatal(err)
	}
	_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)
	now := c.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "orders", "sub": "orders", "aud": "payments",
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "x"}
	}
	with := func(k string, v any) jwt.MapClaims {
		m := good()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	// A shopper's access token, well signed by the users service's key.
	_, usersKey, _ := ed25519.GenerateKey(rand.Reader)
	shopper, err := auth.NewSigner("users-key", usersKey, 15*time.Minute).WithClock(c.Now).
		Sign(auth.Principal{UserID: uuid.New(), Role: auth.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	ordersForInventory, err := signer(t, dir, "orders", c).Token("inventory")
	if err != nil {
		t.Fatal(err)
	}
	fromNotifications, err := signer(t, dir, "notifications", c).Token("payments")
	if err != nil {
		t.Fatal(err)
	}
	fromOrders, err := signer(t, dir, "orders", c).Token("payments")
	if err != nil {
		t.Fatal(err)
	}

	v := verifier(t, dir, "payments", c)
	h := v.Require(slog.New(slog.DiscardHandler), "orders")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := svcauth.Caller(r.Context())
		io.WriteString(w, caller)
	}))
	cases := []struct {
		name   string
		header string // Authorization
		status int
	}{
		{"the route's caller", "Bearer " + fromOrders, 200},
		{"no credential", "", 401},
		{"a shopper's access token", "Bearer " + shopper, 401},
		{"the caller's token for another callee", "Bearer " + ordersForInventory, 401},
		{"another trusted service", "Bearer " + fromNotifications, 403},
		{"signed by an unknown key", "Bearer " + forge(t, strangerKey, nil, good()), 401},
		{"another service's key claiming to be orders", "Bearer " + forge(t, notificationsKey, nil, good()), 401},
		{"typed as an access token", "Bearer " + forge(t, ordersKey, map[string]any{"typ": "at+jwt"}, good()), 401},
		{"untyped", "Bearer " + forge(t, ordersKey, map[string]any{"typ": nil}, good()), 401},
		{"a crit header", "Bearer " + forge(t, ordersKey, map[string]any{"crit": []string{"exp"}}, good()), 401},
		{"expired", "Bearer " + forge(t, ordersKey, nil, with("exp", now.Add(-time.Hour).Unix())), 401},
		{"no expiry", "Bearer " + forge(t, ordersKey, nil, with("exp", nil)), 401},
		{"no issue time", "Bearer " + forge(t, ordersKey, nil, with("iat", nil)), 401},
		{"living too long", "Bearer " + forge(t, ordersKey, nil, with("exp", now.Add(svcauth.MaxLifetime+time.Minute).Unix())), 401},
		{"no audience", "Bearer " + forge(t, ordersKey, nil, with("aud", nil)), 401},
		{"subject differs from issuer", "Bearer " + forge(t, ordersKey, nil, with("sub", "notifications")), 401},
		{"HMAC with the public key", "Bearer " + hmacToken(t, ordersKey), 401},
		{"another scheme", "Basic " + fromOrders, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/internal/charges", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status == 200 {
				if rec.Body.String() != "orders" {
					t.Errorf("caller in the context %q, want orders", rec.Body)
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want a problem", ct)
			}
			var p struct {
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("problem %s: %v", rec.Body, err)
			}
			if p.Status != tc.status {
				t.Errorf("problem status %d, want %d; body %s", p.Status, tc.status, rec.Body)
			}
			if p.Detail == "" {
				t.Errorf("problem without a detail, want one; body %s", rec.Body)
			}
			if tc.status == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("no WWW-Authenticate on a 401")
			}
		})
	}
}

// hmacToken is the old algorithm-confusion attack: HS256 keyed with the public key.
func hmacToken(t *testing.T, key ed25519.PrivateKey) string {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "orders", "sub": "orders", "aud": "payments",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()})
	tok.Header["kid"] = auth.Thumbprint(pub)
	tok.Header["typ"] = svcauth.TokenType
	s, err := tok.SignedString([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestATokenIsReusedForHalfItsLifetime(t *testing.T) {
	t.Parallel()
	dir := keysDir(t, "orders")
	c := testclock.New(time.Now())
	s := signer(t, dir, "orders", c)
	first, _ := s.Token("payments")
	c.Advance(svcauth.Lifetime/2 - time.Second)
	if again, _ := s.Token("payments"); again != first {
		t.Error("a token was signed again before half its lifetime")
	}
	if other, _ := s.Token("inventory"); other == first {
		t.Error("one token served two audiences")
	}
	c.Advance(2 * time.Second)
	if later, _ := s.Token("payments"); later == first {
		t.Error("a token was reused past half its lifetime")
	}
}

func TestEnsureKeysCreatesWhatIsMissingAndKeepsWhatExists(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	created, err := svcauth.EnsureKeys(dir, "orders", "gateway")
	if err != nil {
		t.Fatalf("first EnsureKeys: %v", err)
	}
	if len(created) != 2 {
		t.Fatalf("first EnsureKeys created %v, want orders and gateway", created)
	}
	key, err := os.ReadFile(svcauth.KeyFile(dir, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(svcauth.KeyFile(dir, "orders"))
	if info.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", info.Mode().Perm())
	}
	// The public file lost (deleted by hand): the next start puts it back.
	if err := os.Remove(filepath.Join(svcauth.TrustDir(dir), "orders.pub")); err != nil {
		t.Fatal(err)
	}
	created, err = svcauth.EnsureKeys(dir, "orders", "gateway", "payments")
	if err != nil || len(created) != 1 || created[0] != "payments" {
		t.Fatalf("second EnsureKeys created %v, %v; want only payments", created, err)
	}
	if again, _ := os.ReadFile(svcauth.KeyFile(dir, "orders")); !bytes.Equal(again, key) {
		t.Error("an existing private key was replaced")
	}
	c := testclock.New(time.Now())
	tok, _ := signer(t, dir, "orders", c).Token("payments")
	if _, err := verifier(t, dir, "payments", c).Verify(tok); err != nil {
		t.Errorf("orders' restored public key is not trusted: %v", err)
	}
	if _, err := svcauth.EnsureKeys(dir, "../etc"); err == nil {
		t.Error("a service name that is a path was accepted")
	}
}

func TestRotationRefusesNoCallAndRetiresTheOldKeyAtTheNextRotation(t *testing.T) {
	t.Parallel()
	dir := keysDir(t, "orders")
	c := testclock.New(time.Now())
	s := signer(t, dir, "orders", c)
	v := verifier(t, dir, "payments", c)
	first, err := svcauth.ReadPrivateKey(svcauth.KeyFile(dir, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.Token("payments")

	// During the wait the new public key is published but not yet used: calls signed
	// with the current key keep passing.
	kid, err := svcauth.Rotate(dir, "orders", 2, func() {
		c.Advance(svcauth.ReloadEvery)
		if _, err := v.Verify(before); err != nil {
			t.Errorf("during the rotation, the current key's token was refused: %v", err)
		}
		tok, _ := s.Token("payments")
		if tok != before {
			t.Error("the signer changed key before the private key was replaced")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(svcauth.ReloadEvery)
	after, _ := s.Token("payments")
	if after == before {
		t.Fatalf("after the rotation the signer gives the token it gave before (kid %s), want a new one with kid %s", headerKid(t, after), kid)
	}
	if got := headerKid(t, after); got != kid {
		t.Fatalf("after the rotation the signer still uses the old key (kid %s, want %s)", got, kid)
	}
	for name, tok := range map[string]string{"before": before, "after": after} {
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("token signed %s the rotation refused: %v", name, err)
		}
	}
	// The next rotation drops the first key: its tokens have long expired.
	if _, err := svcauth.Rotate(dir, "orders", 2, func() { c.Advance(svcauth.ReloadEvery) }); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(forge(t, first, nil, jwt.MapClaims{"iss": "orders", "sub": "orders",
		"aud": "payments", "iat": c.Now().Unix(), "exp": c.Now().Add(time.Minute).Unix()})); err == nil {
		t.Error("the key retired by the second rotation is still trusted")
	}
}

func headerKid(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

// A token verified once is taken again on its first check's word, but only while it
// stands: not once it has expired, and not once its key is no longer trusted (read
// again from the trust directory as usual).
func TestAVerifiedTokenStandsOnlyWhileItAndItsKeyDo(t *testing.T) {
	t.Parallel()
	dir := keysDir(t, "orders", "payments")
	c := testclock.New(time.Now())
	v := verifier(t, dir, "payments", c)
	tok, err := signer(t, dir, "orders", c).Token("payments")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if caller, err := v.Verify(tok); err != nil || caller != "orders" {
			t.Fatalf("Verify = %q, %v; want orders", caller, err)
		}
	}
	// Expired (past its leeway): refused, though it was verified before.
	c.Advance(svcauth.Lifetime + auth.Leeway + time.Second)
	if _, err := v.Verify(tok); err == nil {
		t.Error("an expired token was taken because it had been verified")
	}

	// Its key withdrawn from the trust directory: refused once the directory is read again.
	c2 := testclock.New(time.Now())
	v2 := verifier(t, dir, "payments", c2)
	tok2, _ := signer(t, dir, "orders", c2).Token("payments")
	if _, err := v2.Verify(tok2); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(svcauth.TrustDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "orders") {
			if err := os.Remove(filepath.Join(svcauth.TrustDir(dir), e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	c2.Advance(svcauth.ReloadEvery + time.Second) // the verifier read the directory on the real clock, a little after c2 began
	if _, err := v2.Verify(tok2); err == nil {
		t.Error("a token whose key is no longer trusted was taken because it had been verified")
	}
}
