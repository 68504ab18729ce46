package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// forge signs arbitrary claims with key (nil key: alg none), under the header an access
// token has (typ at+jwt) unless header edits say otherwise: a nil value deletes.
func forge(t *testing.T, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims, header ...map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = kid
	tok.Header["typ"] = "at+jwt"
	for _, h := range header {
		for k, v := range h {
			if v == nil {
				delete(tok.Header, k)
			} else {
				tok.Header[k] = v
			}
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func goodClaims(sub uuid.UUID) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": Issuer, "aud": Audience, "sub": sub.String(), "role": "customer",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "j1"}
}

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	s := NewSigner("k1", priv, 15*time.Minute)
	id := uuid.New()
	tok, err := s.Sign(Principal{UserID: id, Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewVerifier(StaticKeys{"k1": pub}).Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != id {
		t.Errorf("user %s, want %s", p.UserID, id)
	}
	if p.Role != RoleAdmin {
		t.Errorf("role %q, want %q", p.Role, RoleAdmin)
	}
	if p.TokenID == "" {
		t.Errorf("no token id in %+v, want one", p)
	}
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	_, otherPriv := newKey(t)
	sub := uuid.New()
	v := NewVerifier(StaticKeys{"k1": pub})
	valid := forge(t, jwt.SigningMethodEdDSA, "k1", priv, goodClaims(sub))
	with := func(k string, val any) jwt.MapClaims { c := goodClaims(sub); c[k] = val; return c }
	without := func(k string) jwt.MapClaims { c := goodClaims(sub); delete(c, k); return c }

	tampered := strings.Split(valid, ".")
	payload, _ := json.Marshal(with("role", "admin"))
	tampered[1] = base64.RawURLEncoding.EncodeToString(payload)

	hdr := func(k string, v any) map[string]any { return map[string]any{k: v} }
	cases := map[string]string{
		// RFC 8725 §3.11 and RFC 9068 §2.1: a token must say it is an access token, so
		// that an ID token or any other JWT signed with the same key cannot pass for one.
		"typ JWT":     forge(t, jwt.SigningMethodEdDSA, "k1", priv, goodClaims(sub), hdr("typ", "JWT")),
		"no typ":      forge(t, jwt.SigningMethodEdDSA, "k1", priv, goodClaims(sub), hdr("typ", nil)),
		"typ number":  forge(t, jwt.SigningMethodEdDSA, "k1", priv, goodClaims(sub), hdr("typ", 1)),
		"typ at+jwt+": forge(t, jwt.SigningMethodEdDSA, "k1", priv, goodClaims(sub), hdr("typ", "at+jwt+x")),
		// RFC 7515 §4.1.11: an extension the verifier does not understand must fail it.
		"crit":       forge(t, jwt.SigningMethodEdDSA, "k1", priv, goodClaims(sub), hdr("crit", []string{"exp"})),
		"crit empty": forge(t, jwt.SigningMethodEdDSA, "k1", priv, goodClaims(sub), hdr("crit", []string{})),
		// A token that lives ten years is a stolen key's forgery or a bug: refused
		// however well signed.
		"ten years":      forge(t, jwt.SigningMethodEdDSA, "k1", priv, with("exp", time.Now().AddDate(10, 0, 0).Unix())),
		"over the cap":   forge(t, jwt.SigningMethodEdDSA, "k1", priv, with("exp", time.Now().Add(DefaultMaxLifetime+2*time.Second).Unix())),
		"no iat":         forge(t, jwt.SigningMethodEdDSA, "k1", priv, without("iat")),
		"iat in future":  forge(t, jwt.SigningMethodEdDSA, "k1", priv, with("iat", time.Now().Add(time.Hour).Unix())),
		"alg none":       forge(t, jwt.SigningMethodNone, "k1", jwt.UnsafeAllowNoneSignatureType, goodClaims(sub)),
		"hmac with pub":  forge(t, jwt.SigningMethodHS256, "k1", []byte(pub), goodClaims(sub)),
		"other key":      forge(t, jwt.SigningMethodEdDSA, "k1", otherPriv, goodClaims(sub)),
		"unknown kid":    forge(t, jwt.SigningMethodEdDSA, "k2", priv, goodClaims(sub)),
		"no kid":         forge(t, jwt.SigningMethodEdDSA, "", priv, goodClaims(sub)),
		"expired":        forge(t, jwt.SigningMethodEdDSA, "k1", priv, with("exp", time.Now().Add(-time.Hour).Unix())),
		"no exp":         forge(t, jwt.SigningMethodEdDSA, "k1", priv, without("exp")),
		"wrong audience": forge(t, jwt.SigningMethodEdDSA, "k1", priv, with("aud", "someone-else")),
		"wrong issuer":   forge(t, jwt.SigningMethodEdDSA, "k1", priv, with("iss", "evil")),
		"bad role":       forge(t, jwt.SigningMethodEdDSA, "k1", priv, with("role", "root")),
		"bad subject":    forge(t, jwt.SigningMethodEdDSA, "k1", priv, with("sub", "admin")),
		"tampered":       strings.Join(tampered, "."),
		"garbage":        "not.a.token",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(context.Background(), tok)
			if apperr.CodeOf(err) != apperr.Unauthorized {
				t.Fatalf("Verify = %v, want unauthorized", err)
			}
		})
	}
}

func TestVerifyAcceptsEveryAccessTokenSpelling(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	v := NewVerifier(StaticKeys{"k1": pub})
	c := goodClaims(uuid.New())
	c["exp"] = time.Now().Add(DefaultMaxLifetime - time.Minute).Unix() // just under the cap
	for _, typ := range []string{"at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"} {
		tok := forge(t, jwt.SigningMethodEdDSA, "k1", priv, c, map[string]any{"typ": typ})
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("typ %q: %v", typ, err)
		}
	}
}

func TestSignerMarksAccessTokens(t *testing.T) {
	t.Parallel()
	_, priv := newKey(t)
	tok, err := NewSigner("k1", priv, time.Minute).Sign(Principal{UserID: uuid.New(), Role: RoleCustomer, SessionID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.MapClaims
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, &c)
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.Header["typ"]; got != "at+jwt" {
		t.Errorf("header typ %v, want at+jwt", got)
	}
	if got := parsed.Header["kid"]; got != "k1" {
		t.Errorf("header kid %v, want k1", got)
	}
	if got := parsed.Header["crit"]; got != nil {
		t.Errorf("header crit %v, want none", got)
	}
	if c["sid"] != "s1" {
		t.Errorf("claims %v", c)
	}
}

func TestMaxLifetimeIsConfigurable(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	long, err := NewSigner("k1", priv, 3*time.Hour).Sign(Principal{UserID: uuid.New(), Role: RoleCustomer})
	if err != nil {
		t.Fatal(err)
	}
	strict := NewVerifier(StaticKeys{"k1": pub})
	if _, err := strict.Verify(context.Background(), long); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Errorf("a 3-hour token with the default cap: %v, want unauthorized", err)
	}
	if _, err := NewVerifier(StaticKeys{"k1": pub}).WithMaxLifetime(4*time.Hour).Verify(context.Background(), long); err != nil {
		t.Errorf("a 3-hour token with a 4-hour cap: %v", err)
	}
	// Configured in place: a call whose result is dropped takes effect all the same.
	strict.WithMaxLifetime(4 * time.Hour)
	if _, err := strict.Verify(context.Background(), long); err != nil {
		t.Errorf("after WithMaxLifetime without using its result: %v", err)
	}
}

// A token signed with a key that has since been superseded verifies while it lives, and
// not a moment (beyond the leeway) after.
func TestVerifyWithAClock(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := NewSigner("k1", priv, 15*time.Minute).WithClock(func() time.Time { return issued })
	tok, err := s.Sign(Principal{UserID: uuid.New(), Role: RoleCustomer})
	if err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) error {
		_, err := NewVerifier(StaticKeys{"k1": pub}).WithClock(func() time.Time { return issued.Add(d) }).Verify(context.Background(), tok)
		return err
	}
	if err := at(15*time.Minute - time.Second); err != nil {
		t.Errorf("just before expiry: %v", err)
	}
	if err := at(15*time.Minute + Leeway + time.Second); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Errorf("after expiry and leeway: %v, want unauthorized", err)
	}
}

func jwksServer(t *testing.T, keys *atomic.Value, hits *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		json.NewEncoder(w).Encode(keys.Load())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestJWKSCachesAndRefreshesOnUnknownKid(t *testing.T) {
	t.Parallel()
	pub1, priv1 := newKey(t)
	pub2, priv2 := newKey(t)
	var keys atomic.Value
	var hits atomic.Int32
	keys.Store(KeySet{Keys: []JWK{PublicJWK("k1", pub1)}})
	srv := jwksServer(t, &keys, &hits)
	jwks := NewJWKS(srv.URL, nil)
	jwks.MinRefresh = 0
	v := NewVerifier(jwks)
	ctx := context.Background()
	tok1, _ := NewSigner("k1", priv1, time.Minute).Sign(Principal{UserID: uuid.New(), Role: RoleCustomer})
	for range 3 {
		if _, err := v.Verify(ctx, tok1); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("fetched %d times, want 1 (cached)", hits.Load())
	}

	// The users service rotates to k2: the first k2 token triggers one refetch.
	keys.Store(KeySet{Keys: []JWK{PublicJWK("k1", pub1), PublicJWK("k2", pub2)}})
	tok2, _ := NewSigner("k2", priv2, time.Minute).Sign(Principal{UserID: uuid.New(), Role: RoleCustomer})
	if _, err := v.Verify(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 2 {
		t.Fatalf("fetched %d times, want 2", hits.Load())
	}
}

func TestJWKSLimitsRefetchesForMadeUpKids(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	var keys atomic.Value
	var hits atomic.Int32
	keys.Store(KeySet{Keys: []JWK{PublicJWK("k1", pub)}})
	v := NewVerifier(NewJWKS(jwksServer(t, &keys, &hits).URL, nil))
	for i := range 20 {
		tok := forge(t, jwt.SigningMethodEdDSA, uuid.NewString(), priv, goodClaims(uuid.New()))
		if _, err := v.Verify(context.Background(), tok); apperr.CodeOf(err) != apperr.Unauthorized {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("fetched %d times for made-up kids, want 1", hits.Load())
	}
}

func TestJWKSUnreachable(t *testing.T) {
	t.Parallel()
	_, priv := newKey(t)
	tok, _ := NewSigner("k1", priv, time.Minute).Sign(Principal{UserID: uuid.New(), Role: RoleCustomer})
	_, err := NewVerifier(NewJWKS(closedport.URL(t)+"/.well-known/jwks.json", nil)).Verify(context.Background(), tok)
	if apperr.CodeOf(err) != apperr.Unavailable {
		t.Fatalf("Verify = %v, want unavailable", err)
	}
}

func TestKeySetSkipsUnusableKeys(t *testing.T) {
	t.Parallel()
	pub, _ := newKey(t)
	set := KeySet{Keys: []JWK{
		PublicJWK("good", pub),
		{Kty: "RSA", Kid: "rsa"},
		{Kty: "OKP", Crv: "Ed25519", X: "short", Kid: "short"},
		{Kty: "OKP", Crv: "Ed25519", X: PublicJWK("", pub).X, Kid: "enc", Use: "enc"},
	}}
	got := set.StaticKeys()
	if got["good"] == nil {
		t.Errorf("StaticKeys = %v, want the key good in it", got)
	}
	if len(got) != 1 {
		t.Errorf("StaticKeys has %d keys %v, want only good", len(got), got)
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v := NewVerifier(StaticKeys{"k1": pub})
	signer := NewSigner("k1", priv, time.Minute)
	var seen Principal
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen, _ = FromContext(r.Context()) })
	admin := v.Require(log)(RequireRole(log, RoleAdmin)(ok))

	call := func(token string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/admin", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		admin.ServeHTTP(rec, req)
		return rec
	}
	rec := call("")
	if rec.Code != 401 {
		t.Fatalf("no token: %d, want 401", rec.Code)
	}
	if rec.Header().Get("WWW-Authenticate") == "" {
		t.Fatal("no token: no WWW-Authenticate on the 401, want one")
	}
	if rec := call("junk"); rec.Code != 401 {
		t.Fatalf("junk token: %d", rec.Code)
	}
	customer, _ := signer.Sign(Principal{UserID: uuid.New(), Role: RoleCustomer})
	if rec := call(customer); rec.Code != 403 {
		t.Fatalf("customer on admin route: %d", rec.Code)
	}
	id := uuid.New()
	adminTok, _ := signer.Sign(Principal{UserID: id, Role: RoleAdmin})
	if rec := call(adminTok); rec.Code != 200 {
		t.Fatalf("admin: %d, want 200", rec.Code)
	}
	if seen.UserID != id {
		t.Fatalf("admin: the handler saw user %s, want %s", seen.UserID, id)
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	for header, want := range map[string]string{"Bearer abc": "abc", "bearer abc": "abc", "Basic abc": "", "Bearer": "", "": ""} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", header)
		if got := BearerToken(r); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", header, got, want)
		}
	}
}
