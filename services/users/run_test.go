package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	bazaarevents "github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/health"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
	"github.com/bazaar-shop/bazaar/services/users/internal/postgres/migrations"
	"github.com/bazaar-shop/bazaar/services/users/internal/signing"
)

// stack is one users service under test with a direct line to its database and Redis.
type stack struct {
	url      string
	db       *pgxpool.Pool
	redisURL string
}

// testKEK is the key-encryption key the tests' services seal their signing keys with;
// testKEKBase64 is how SIGNING_KEK spells it.
var (
	testKEK       = bytes.Repeat([]byte{0x5a}, 32)
	testKEKBase64 = base64.StdEncoding.EncodeToString(testKEK)
)

func kekOf(t *testing.T, key []byte) *signing.KEK {
	t.Helper()
	k, err := signing.NewKEK(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startUsers runs the service on a fresh database and Redis, its signing keys sealed
// with testKEK; extra adds or overrides environment variables.
func startUsers(t *testing.T, extra map[string]string) stack {
	t.Helper()
	dbURL, redisURL := pgtest.NewDatabase(t), redistest.New(t)
	// A throttle call to Redis that outlasts LOGIN_REDIS_TIMEOUT (250ms by default)
	// is counted in the process, which knows none of the failures in Redis: on a
	// loaded machine a guess was let through so. The tests here are about the policy,
	// so Redis gets its time (a test of the bound sets its own).
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "SIGNING_KEK": testKEKBase64,
		"LOGIN_REDIS_TIMEOUT": "5s"}
	for k, v := range extra {
		env[k] = v
	}
	prog := programtest.Start(t, run, env)
	return stack{url: prog.URL, db: openDB(t, dbURL), redisURL: redisURL}
}

// The operational routes every service serves, and the probe a container's
// healthcheck runs (users -probe).
func TestUsersIsOperational(t *testing.T) {
	t.Parallel()
	prog := programtest.Start(t, run, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "REDIS_URL": redistest.New(t),
		"SIGNING_KEK": testKEKBase64})
	programtest.AssertOperational(t, prog, "postgres", "migrations", "redis")
}

func (s stack) redis(t *testing.T) *redis.Client {
	t.Helper()
	rdb, err := redisclient.Open(s.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func (s stack) me(t *testing.T, accessToken string) programtest.Response {
	t.Helper()
	return programtest.Call(t, http.MethodGet, s.url+"/api/v1/users/me", "", programtest.Bearer(accessToken)...)
}

// eventuallyRefused polls /users/me with accessToken until it is a 401, or fails after
// a deadline: revocation reaches verifiers through Redis, within seconds.
func (s stack) eventuallyRefused(t *testing.T, accessToken, why string) {
	t.Helper()
	var last programtest.Response
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if last = s.me(t, accessToken); last.Status == http.StatusUnauthorized {
			return
		}
	}
	t.Fatalf("%s: the access token still works: %d %s", why, last.Status, last.Body)
}

func openDB(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgdb.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func post(t *testing.T, u, body string) programtest.Response {
	return programtest.Call(t, http.MethodPost, u, body)
}

type userBody struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

type tokenBody struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func (s stack) register(t *testing.T, email, password, name string) userBody {
	t.Helper()
	r := post(t, s.url+"/api/v1/auth/register", `{"email":"`+email+`","password":"`+password+`","name":"`+name+`"}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	var u userBody
	r.JSON(t, &u)
	return u
}

func (s stack) login(t *testing.T, email, password string) tokenBody {
	t.Helper()
	r := post(t, s.url+"/api/v1/auth/login", `{"email":"`+email+`","password":"`+password+`"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	var tok tokenBody
	r.JSON(t, &tok)
	return tok
}

func (s stack) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRegisterLoginMeRefreshAndReuse(t *testing.T) {
	t.Parallel()
	s := startUsers(t, nil)

	r := post(t, s.url+"/api/v1/auth/register", `{"email":"  Ann@Example.com ","password":"correct horse","name":" Ann Lee "}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("register: status %d, want 201; body %s", r.Status, r.Body)
	}
	if loc := r.Header.Get("Location"); loc != "/api/v1/users/me" {
		t.Errorf("register: Location %q, want /api/v1/users/me", loc)
	}
	var ann userBody
	r.JSON(t, &ann)
	if _, err := uuid.Parse(ann.ID); err != nil {
		t.Errorf("registered user id %q: %v, want a UUID", ann.ID, err)
	}
	if ann.Email != "ann@example.com" {
		t.Errorf("registered user e-mail %q, want ann@example.com", ann.Email)
	}
	if ann.Name != "Ann Lee" {
		t.Errorf("registered user name %q, want Ann Lee", ann.Name)
	}
	if ann.Role != "customer" {
		t.Errorf("registered user role %q, want customer", ann.Role)
	}
	if time.Since(ann.CreatedAt) > time.Minute {
		t.Errorf("registered user created_at %v, want within the last minute", ann.CreatedAt)
	}
	if strings.Contains(string(r.Body), "password") {
		t.Errorf("register answer shows the password: %s, want no \"password\" in it", r.Body)
	}
	if strings.Contains(string(r.Body), "argon2") {
		t.Errorf("register answer shows the password's hash: %s, want no \"argon2\" in it", r.Body)
	}
	var event struct{ Type, Subject, Data string }
	err := s.db.QueryRow(context.Background(), `SELECT type, subject, data::text FROM outbox`).Scan(&event.Type, &event.Subject, &event.Data)
	if err != nil {
		t.Fatalf("outbox event: %v, want one", err)
	}
	if event.Type != "user.registered" {
		t.Errorf("outbox event type %q, want user.registered", event.Type)
	}
	if event.Subject != ann.ID {
		t.Errorf("outbox event subject %q, want the user %s", event.Subject, ann.ID)
	}
	if !strings.Contains(event.Data, `"email": "ann@example.com"`) {
		t.Errorf("outbox event data %s, want \"email\": \"ann@example.com\" in it", event.Data)
	}
	var stored string
	if err := s.db.QueryRow(context.Background(), `SELECT password_hash FROM users`).Scan(&stored); err != nil {
		t.Errorf("stored password hash: %v, want one", err)
	} else if !strings.HasPrefix(stored, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("stored password hash %q, want it to start $argon2id$v=19$m=19456,t=2,p=1$", stored)
	}

	// Log in with the e-mail in another case: addresses are case-insensitive.
	r = post(t, s.url+"/api/v1/auth/login", `{"email":"ANN@example.COM","password":"correct horse"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("login: status %d, want 200; body %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("login: Cache-Control %q, want no-store", cc)
	}
	var first tokenBody
	r.JSON(t, &first)
	if first.TokenType != "Bearer" {
		t.Errorf("token_type %q, want Bearer", first.TokenType)
	}
	if first.ExpiresIn != 900 {
		t.Errorf("expires_in %d, want 900", first.ExpiresIn)
	}
	if first.AccessToken == "" {
		t.Error("access_token empty, want one")
	}
	if len(first.RefreshToken) != 43 {
		t.Errorf("refresh_token %q of %d characters, want 43", first.RefreshToken, len(first.RefreshToken))
	}
	var tokenHashes int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM refresh_tokens WHERE length(token_hash) = 32`).Scan(&tokenHashes); err != nil || tokenHashes != 1 {
		t.Errorf("%d stored refresh token hashes (%v), want 1", tokenHashes, err)
	}

	r = programtest.Call(t, http.MethodGet, s.url+"/api/v1/users/me", "", programtest.Bearer(first.AccessToken)...)
	var me userBody
	if r.Status != http.StatusOK {
		t.Fatalf("me: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &me)
	if me != ann {
		t.Errorf("me = %+v, want %+v", me, ann)
	}

	r = post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+first.RefreshToken+`"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	var second tokenBody
	r.JSON(t, &second)
	if second.RefreshToken == first.RefreshToken {
		t.Errorf("refreshed refresh_token %q, want a new one", second.RefreshToken)
	}
	if second.AccessToken == first.AccessToken {
		t.Errorf("refreshed access_token %q, want a new one", second.AccessToken)
	}
	if second.TokenType != "Bearer" {
		t.Errorf("refreshed token_type %q, want Bearer", second.TokenType)
	}
	if r := programtest.Call(t, http.MethodGet, s.url+"/api/v1/users/me", "", programtest.Bearer(second.AccessToken)...); r.Status != http.StatusOK {
		t.Errorf("me with the refreshed token: %d %s", r.Status, r.Body)
	}

	// The first refresh token again: reuse. 401, and the session's family ends, so
	// the second (never used) refresh token stops working as well.
	post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+first.RefreshToken+`"}`).Problem(t, http.StatusUnauthorized)
	post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+second.RefreshToken+`"}`).Problem(t, http.StatusUnauthorized)
	// A fresh login still works: only that family was revoked.
	s.login(t, "ann@example.com", "correct horse")
}

// Logging out ends the session everywhere: its refresh tokens at once, and its access
// tokens within seconds, at every verifier that reads the revocation list.
func TestLogoutEndsTheSession(t *testing.T) {
	t.Parallel()
	s := startUsers(t, nil)
	s.register(t, "ann@example.com", "correct horse", "Ann")
	phone := s.login(t, "ann@example.com", "correct horse")
	laptop := s.login(t, "ann@example.com", "correct horse")
	if r := s.me(t, phone.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("me before logout: %d %s", r.Status, r.Body)
	}
	var claims jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(phone.AccessToken, &claims); err != nil {
		t.Fatal(err)
	}
	sid, _ := claims["sid"].(string)
	var family string
	if err := s.db.QueryRow(context.Background(), `SELECT family_id::text FROM refresh_tokens ORDER BY created_at, id LIMIT 1`).Scan(&family); err != nil || sid != family {
		t.Fatalf("the access token's sid %q is not its session's id %q (%v)", sid, family, err)
	}

	r := post(t, s.url+"/api/v1/auth/logout", `{"refresh_token":"`+phone.RefreshToken+`"}`)
	if r.Status != http.StatusNoContent {
		t.Fatalf("logout: status %d, want 204; body %s", r.Status, r.Body)
	}
	if len(r.Body) != 0 {
		t.Fatalf("logout: body %q, want none", r.Body)
	}
	post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+phone.RefreshToken+`"}`).Problem(t, http.StatusUnauthorized)
	s.eventuallyRefused(t, phone.AccessToken, "after logout")
	ttl := s.redis(t).TTL(context.Background(), "auth:revoked:"+sid).Val()
	if ttl <= 15*time.Minute || ttl > 16*time.Minute {
		t.Errorf("auth:revoked:%s lives %v, want the access-token lifetime and a minute", sid, ttl)
	}

	// The other session carries on.
	if r := s.me(t, laptop.AccessToken); r.Status != http.StatusOK {
		t.Errorf("me in the other session: %d %s", r.Status, r.Body)
	}
	if r := post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+laptop.RefreshToken+`"}`); r.Status != http.StatusOK {
		t.Errorf("refresh in the other session: %d %s", r.Status, r.Body)
	}
	// Again, or with what is no token of ours: the same 204. Without one: 422.
	for _, tok := range []string{phone.RefreshToken, "garbage", base64.RawURLEncoding.EncodeToString(make([]byte, 32))} {
		if r := post(t, s.url+"/api/v1/auth/logout", `{"refresh_token":"`+tok+`"}`); r.Status != http.StatusNoContent {
			t.Errorf("logout with %q: %d %s", tok, r.Status, r.Body)
		}
	}
	post(t, s.url+"/api/v1/auth/logout", `{}`).Problem(t, http.StatusUnprocessableEntity)
}

// A reused refresh token ends its session's access tokens too, the thief's and the
// client's alike.
func TestReuseEndsTheSessionsAccessTokens(t *testing.T) {
	t.Parallel()
	s := startUsers(t, nil)
	s.register(t, "ann@example.com", "correct horse", "Ann")
	first := s.login(t, "ann@example.com", "correct horse")
	r := post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+first.RefreshToken+`"}`)
	var second tokenBody
	r.JSON(t, &second)
	if r := s.me(t, second.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("me with the refreshed token: %d %s", r.Status, r.Body)
	}
	post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+first.RefreshToken+`"}`).Problem(t, http.StatusUnauthorized)
	s.eventuallyRefused(t, second.AccessToken, "after reuse")
	s.eventuallyRefused(t, first.AccessToken, "after reuse")
}

// A session lives SESSION_MAX_AGE from its log-in, however often it is refreshed.
func TestASessionOlderThanItsMaximumAgeCannotRefresh(t *testing.T) {
	t.Parallel()
	s := startUsers(t, map[string]string{"SESSION_MAX_AGE": "1h"})
	s.register(t, "ann@example.com", "correct horse", "Ann")
	young := s.login(t, "ann@example.com", "correct horse")
	old := s.login(t, "ann@example.com", "correct horse")
	if _, err := s.db.Exec(context.Background(), `UPDATE refresh_tokens SET session_started_at = now() - interval '61 minutes'
		WHERE token_hash = $1`, hashOf(t, old.RefreshToken)); err != nil {
		t.Fatal(err)
	}
	d := post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+old.RefreshToken+`"}`).Problem(t, http.StatusUnauthorized)
	if !strings.Contains(d.Detail, "maximum age") {
		t.Errorf("detail %q does not say why", d.Detail)
	}
	r := post(t, s.url+"/api/v1/auth/refresh", `{"refresh_token":"`+young.RefreshToken+`"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("a young session's refresh: %d %s", r.Status, r.Body)
	}
	// Its new refresh token ends with the session, not REFRESH_TOKEN_TTL (30 days) on.
	var left time.Duration
	var secs float64
	if err := s.db.QueryRow(context.Background(),
		`SELECT extract(epoch FROM max(expires_at) - min(session_started_at)) FROM refresh_tokens WHERE family_id = (
		     SELECT family_id FROM refresh_tokens WHERE token_hash = $1)`, hashOf(t, young.RefreshToken)).Scan(&secs); err != nil {
		t.Fatal(err)
	}
	if left = time.Duration(secs * float64(time.Second)); left != time.Hour {
		t.Errorf("the session's tokens expire %v after its log-in, want 1h", left)
	}
}

func hashOf(t *testing.T, refreshToken string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(refreshToken)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return sum[:]
}

// loginFrom posts a log-in as the gateway forwards it, from the client address from.
func (s stack) loginFrom(t *testing.T, email, password, from string) programtest.Response {
	t.Helper()
	return programtest.Call(t, http.MethodPost, s.url+"/api/v1/auth/login",
		`{"email":"`+email+`","password":"`+password+`"}`, "X-Forwarded-For", from)
}

// tooSoon asserts a 429 problem with a Retry-After of whole seconds, and returns it.
func tooSoon(t *testing.T, r programtest.Response) int {
	t.Helper()
	d := r.Problem(t, http.StatusTooManyRequests)
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil {
		t.Fatalf("Retry-After %q: %v, want whole seconds", r.Header.Get("Retry-After"), err)
	}
	if secs < 1 || secs > 15*60 {
		t.Fatalf("Retry-After %d s, want 1 to %d", secs, 15*60)
	}
	if !strings.HasSuffix(d.Type, "rate_limited") {
		t.Fatalf("problem type %q, want one ending rate_limited", d.Type)
	}
	return secs
}

// Calling users directly gains an attacker nothing over the gateway: it slows guessing
// itself. An e-mail guessed at from many addresses does not lock its owner out.
func TestGuessingPasswordsIsSlowedButTheOwnerGetsIn(t *testing.T) {
	t.Parallel()
	// Delays long enough that no slow machine sees one pass during the test.
	s := startUsers(t, map[string]string{"LOGIN_ADDRESS_FAILURES": "8", "LOGIN_BASE_DELAY": "10m"})
	s.register(t, "ann@example.com", "correct horse", "Ann")
	s.register(t, "bob@example.com", "correct horse", "Bob")

	// Six wrong passwords for Ann from six addresses: her e-mail is now delayed...
	for i := 1; i <= 6; i++ {
		s.loginFrom(t, "ann@example.com", "wrong horse", "198.51.100."+strconv.Itoa(i)).Problem(t, http.StatusUnauthorized)
	}
	tooSoon(t, s.loginFrom(t, "ann@example.com", "correct horse", "198.51.100.1"))
	// ...but Ann, from a seventh address, gets in.
	if r := s.loginFrom(t, "ann@example.com", "correct horse", "203.0.113.7"); r.Status != http.StatusOK {
		t.Fatalf("the owner from a fresh address: %d %s", r.Status, r.Body)
	}

	// A flood from one address, over many e-mails, is slowed as well.
	for i := range 8 {
		s.loginFrom(t, "nobody"+strconv.Itoa(i)+"@example.com", "wrong horse", "192.0.2.1").Problem(t, http.StatusUnauthorized)
	}
	tooSoon(t, s.loginFrom(t, "bob@example.com", "correct horse", "192.0.2.1"))
	// Bob from elsewhere is not.
	if r := s.loginFrom(t, "bob@example.com", "correct horse", "192.0.2.2"); r.Status != http.StatusOK {
		t.Fatalf("bob from another address: %d %s", r.Status, r.Body)
	}
}

// X-Forwarded-For is believed only from TRUSTED_PROXIES: a client that writes its own
// gets no fresh allowance with each made-up address.
func TestAForgedForwardedForGainsNothing(t *testing.T) {
	t.Parallel()
	s := startUsers(t, map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8", "LOGIN_BASE_DELAY": "10m"}) // not this test's loopback
	s.register(t, "ann@example.com", "correct horse", "Ann")
	for i := 1; i <= 5; i++ {
		s.loginFrom(t, "ann@example.com", "wrong horse", "198.51.100."+strconv.Itoa(i)).Problem(t, http.StatusUnauthorized)
	}
	// All of them came from 127.0.0.1, whatever they said: that address must wait.
	tooSoon(t, s.loginFrom(t, "ann@example.com", "correct horse", "203.0.113.7"))
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	s := startUsers(t, nil)
	ann := s.register(t, "ann@example.com", "correct horse", "Ann")
	tok := s.login(t, "ann@example.com", "correct horse")
	key := signingKey(t, s)
	before := [3]int{s.count(t, "users"), s.count(t, "outbox"), s.count(t, "refresh_tokens")}

	const reg, login, refresh, me = "/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/users/me"
	valid := func(field, value string) string {
		m := map[string]string{"email": "new@example.com", "password": "long enough", "name": "New"}
		m[field] = value
		b, _ := json.Marshal(m)
		return string(b)
	}
	huge := `{"email":"big@example.com","password":"long enough","name":"` + strings.Repeat("x", 1<<20) + `"}`
	_, otherKey, _ := ed25519.GenerateKey(nil)
	forged := func(edit func(jwt.MapClaims)) string { return "Bearer " + key.sign(t, ann.ID, edit) }

	cases := []struct {
		name               string
		method, path, body string
		authorization      string
		status             int
		fields             []string // the field errors of a 422
	}{
		{"register: malformed JSON", "POST", reg, `{"email":`, "", 400, nil},
		{"register: not an object", "POST", reg, `[]`, "", 400, nil},
		{"register: unknown field", "POST", reg, `{"email":"x@example.com","password":"long enough","name":"X","role":"admin"}`, "", 400, nil},
		{"register: empty body", "POST", reg, ``, "", 400, nil},
		{"register: over-long body", "POST", reg, huge, "", 413, nil},
		{"register: bad e-mail", "POST", reg, valid("email", "not-an-email"), "", 422, []string{"email"}},
		{"register: short password", "POST", reg, valid("password", "short"), "", 422, []string{"password"}},
		{"register: blank name", "POST", reg, valid("name", "   "), "", 422, []string{"name"}},
		{"register: everything wrong", "POST", reg, `{"email":"","password":"","name":""}`, "", 422, []string{"email", "password", "name"}},
		{"register: duplicate e-mail in another case", "POST", reg, valid("email", "ANN@example.com"), "", 409, nil},
		{"register: wrong method", "GET", reg, ``, "", 405, nil},
		{"login: malformed JSON", "POST", login, `nope`, "", 400, nil},
		{"login: missing fields", "POST", login, `{}`, "", 422, []string{"email", "password"}},
		{"login: wrong password", "POST", login, `{"email":"ann@example.com","password":"wrong horse"}`, "", 401, nil},
		{"login: unknown e-mail", "POST", login, `{"email":"bob@example.com","password":"correct horse"}`, "", 401, nil},
		{"refresh: missing token", "POST", refresh, `{"refresh_token":""}`, "", 422, []string{"refresh_token"}},
		{"refresh: garbage token", "POST", refresh, `{"refresh_token":"garbage"}`, "", 401, nil},
		{"refresh: unknown token", "POST", refresh, `{"refresh_token":"` + base64.RawURLEncoding.EncodeToString(make([]byte, 32)) + `"}`, "", 401, nil},
		{"refresh: an access token", "POST", refresh, `{"refresh_token":"` + tok.AccessToken + `"}`, "", 401, nil},
		{"me: no token", "GET", me, ``, "", 401, nil},
		{"me: not bearer", "GET", me, ``, "Basic YTpi", 401, nil},
		{"me: a refresh token", "GET", me, ``, "Bearer " + tok.RefreshToken, 401, nil},
		{"me: tampered token", "GET", me, ``, "Bearer " + tamper(t, tok.AccessToken), 401, nil},
		{"me: expired token", "GET", me, ``, forged(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), 401, nil},
		{"me: wrong audience", "GET", me, ``, forged(func(c jwt.MapClaims) { c["aud"] = "someone-else" }), 401, nil},
		{"me: wrong issuer", "GET", me, ``, forged(func(c jwt.MapClaims) { c["iss"] = "evil" }), 401, nil},
		{"me: no expiry", "GET", me, ``, forged(func(c jwt.MapClaims) { delete(c, "exp") }), 401, nil},
		// Signed with the service's own key, but not an access token as RFC 8725 and
		// RFC 9068 have it, or one that lives far too long.
		{"me: crit header", "GET", me, ``, "Bearer " + key.signWithHeader(t, ann.ID, func(h map[string]any) { h["crit"] = []string{"exp"} }, nil), 401, nil},
		{"me: typ JWT", "GET", me, ``, "Bearer " + key.signWithHeader(t, ann.ID, func(h map[string]any) { h["typ"] = "JWT" }, nil), 401, nil},
		{"me: no typ", "GET", me, ``, "Bearer " + key.signWithHeader(t, ann.ID, func(h map[string]any) { delete(h, "typ") }, nil), 401, nil},
		{"me: expires in ten years", "GET", me, ``, forged(func(c jwt.MapClaims) { c["exp"] = time.Now().AddDate(10, 0, 0).Unix() }), 401, nil},
		{"me: no iat", "GET", me, ``, forged(func(c jwt.MapClaims) { delete(c, "iat") }), 401, nil},
		{"me: alg none", "GET", me, ``, "Bearer " + unsigned(t, key.kid, ann.ID), 401, nil},
		{"me: another key under our kid", "GET", me, ``, "Bearer " + signingKeyPair{key.kid, otherKey}.sign(t, ann.ID, nil), 401, nil},
		{"me: unknown kid", "GET", me, ``, "Bearer " + signingKeyPair{"nope", key.priv}.sign(t, ann.ID, nil), 401, nil},
	}
	details := map[string]problem.Details{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var header []string
			if c.authorization != "" {
				header = []string{"Authorization", c.authorization}
			}
			d := programtest.Call(t, c.method, s.url+c.path, c.body, header...).Problem(t, c.status)
			details[c.name] = d
			var got []string
			for _, f := range d.Errors {
				got = append(got, f.Field)
			}
			if strings.Join(got, ",") != strings.Join(c.fields, ",") {
				t.Errorf("field errors %v, want %v", d.Errors, c.fields)
			}
		})
	}

	// The same answer for an unknown e-mail as for a wrong password.
	wrong, unknown := details["login: wrong password"], details["login: unknown e-mail"]
	if wrong.Detail != unknown.Detail {
		t.Errorf("login failures differ: detail %q for a wrong password, %q for an unknown e-mail; want the same", wrong.Detail, unknown.Detail)
	}
	if wrong.Type != unknown.Type {
		t.Errorf("login failures differ: type %q for a wrong password, %q for an unknown e-mail; want the same", wrong.Type, unknown.Type)
	}
	if wrong.Detail == "" {
		t.Error("login failure detail empty, want one")
	}
	after := [3]int{s.count(t, "users"), s.count(t, "outbox"), s.count(t, "refresh_tokens")}
	if after != before {
		t.Errorf("rows (users, outbox, refresh_tokens) went from %v to %v", before, after)
	}
	// The forger itself is sound: untouched, its token is accepted, so each refusal
	// above is for the one thing its case changed.
	if r := programtest.Call(t, http.MethodGet, s.url+me, "", "Authorization", forged(nil)); r.Status != http.StatusOK {
		t.Errorf("me with an unaltered forged token: %d %s", r.Status, r.Body)
	}
	// The forged tokens did not damage the real one.
	if r := programtest.Call(t, http.MethodGet, s.url+me, "", programtest.Bearer(tok.AccessToken)...); r.Status != http.StatusOK {
		t.Errorf("me with the real token: %d %s", r.Status, r.Body)
	}
}

// signingKeyPair is the service's own key, read from its database, so that tests can
// forge tokens the service would accept but for the one thing each test changes.
type signingKeyPair struct {
	kid  string
	priv ed25519.PrivateKey
}

func signingKey(t *testing.T, s stack) signingKeyPair {
	t.Helper()
	var k signingKeyPair
	var seed, sealed []byte
	if err := s.db.QueryRow(context.Background(), `SELECT kid, seed, sealed_seed FROM signing_keys`).Scan(&k.kid, &seed, &sealed); err != nil {
		t.Fatal(err)
	}
	if seed == nil {
		var err error
		if seed, err = kekOf(t, testKEK).Open(k.kid, sealed); err != nil {
			t.Fatal(err)
		}
	}
	k.priv = ed25519.NewKeyFromSeed(seed)
	return k
}

// sign makes a token with the standard claims for userID, as edited by edit.
func (k signingKeyPair) sign(t *testing.T, userID string, edit func(jwt.MapClaims)) string {
	t.Helper()
	return k.signWithHeader(t, userID, nil, edit)
}

// signWithHeader is sign with the header (an access token's: typ at+jwt) edited too.
func (k signingKeyPair) signWithHeader(t *testing.T, userID string, editHeader func(map[string]any), edit func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": auth.Issuer, "aud": auth.Audience, "sub": userID, "role": "customer",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "test"}
	if edit != nil {
		edit(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = k.kid
	tok.Header["typ"] = "at+jwt"
	if editHeader != nil {
		editHeader(tok.Header)
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned is an "alg: none" token that is otherwise perfect, promoting itself to admin.
func unsigned(t *testing.T, kid, userID string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": auth.Issuer, "aud": auth.Audience, "sub": userID,
		"role": "admin", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tamper rewrites a real token's payload to claim the admin role, keeping its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(payload), `"role":"customer"`, `"role":"admin"`, 1)
	if forged == string(payload) {
		t.Fatalf("no role claim in %s", payload)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	return strings.Join(parts, ".")
}

func TestJWKSVerifiesIssuedTokens(t *testing.T) {
	t.Parallel()
	s := startUsers(t, nil)
	ann := s.register(t, "ann@example.com", "correct horse", "Ann")
	tok := s.login(t, "ann@example.com", "correct horse")

	r := programtest.Call(t, http.MethodGet, s.url+"/.well-known/jwks.json", "")
	if r.Status != http.StatusOK {
		t.Fatalf("jwks: status %d, want 200; body %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("jwks: Cache-Control %q, want a max-age", cc)
	}
	var set auth.KeySet
	r.JSON(t, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("key set %s, want one key", r.Body)
	}
	if set.Keys[0].Alg != "EdDSA" {
		t.Errorf("key alg %q, want EdDSA", set.Keys[0].Alg)
	}
	if set.Keys[0].Crv != "Ed25519" {
		t.Errorf("key crv %q, want Ed25519", set.Keys[0].Crv)
	}
	if set.Keys[0].Kid == "" {
		t.Error("key kid empty, want one")
	}
	// Verify the way the gateway and the other services do: from the JWKS URL.
	v := auth.NewVerifier(auth.NewJWKS(s.url+"/.well-known/jwks.json", nil))
	p, err := v.Verify(context.Background(), tok.AccessToken)
	if err != nil {
		t.Errorf("Verify: %v, want no error", err)
	} else {
		if p.UserID.String() != ann.ID {
			t.Errorf("Verify: user %s, want %s", p.UserID, ann.ID)
		}
		if p.Role != auth.RoleCustomer {
			t.Errorf("Verify: role %s, want %s", p.Role, auth.RoleCustomer)
		}
		if p.TokenID == "" {
			t.Error("Verify: token id empty, want one")
		}
	}
	// The token carries the kid that the JWKS publishes and the claims docs/contract.md names.
	var claims jwt.MapClaims
	parsed, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, &claims)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["kid"] != set.Keys[0].Kid {
		t.Errorf("header kid %v, want the JWKS's %q", parsed.Header["kid"], set.Keys[0].Kid)
	}
	if parsed.Header["alg"] != "EdDSA" {
		t.Errorf("header alg %v, want EdDSA", parsed.Header["alg"])
	}
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if claims["iss"] != "bazaar-users" {
		t.Errorf("claim iss %v, want bazaar-users", claims["iss"])
	}
	if claims["sub"] != ann.ID {
		t.Errorf("claim sub %v, want %s", claims["sub"], ann.ID)
	}
	if claims["role"] != "customer" {
		t.Errorf("claim role %v, want customer", claims["role"])
	}
	if claims["jti"] == nil {
		t.Errorf("no jti claim, want one; claims %v", claims)
	}
	if exp == nil {
		t.Errorf("no exp claim, want one; claims %v", claims)
	}
	if iat == nil {
		t.Errorf("no iat claim, want one; claims %v", claims)
	}
	if exp != nil && iat != nil && exp.Sub(iat.Time) != 15*time.Minute {
		t.Errorf("exp - iat = %v, want 15m", exp.Sub(iat.Time))
	}
	if aud, _ := claims.GetAudience(); len(aud) != 1 {
		t.Errorf("aud %v, want [bazaar]", aud)
	} else if aud[0] != "bazaar" {
		t.Errorf("aud %q, want bazaar", aud[0])
	}
}

func TestBootstrapAdminIsCreatedOnceAndKeysSurviveARestart(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	env := func() map[string]string {
		return map[string]string{
			"DATABASE_URL": dbURL, "REDIS_URL": redistest.New(t), "SIGNING_KEK": testKEKBase64,
			"BOOTSTRAP_ADMIN_EMAIL": "Admin@Bazaar.local", "BOOTSTRAP_ADMIN_PASSWORD": "bazaar-admin",
		}
	}
	first := stack{url: programtest.Start(t, run, env()).URL, db: openDB(t, dbURL)}
	tok := first.login(t, "admin@bazaar.local", "bazaar-admin")
	r := programtest.Call(t, http.MethodGet, first.url+"/api/v1/users/me", "", programtest.Bearer(tok.AccessToken)...)
	var admin userBody
	r.JSON(t, &admin)
	if r.Status != http.StatusOK {
		t.Fatalf("me: status %d, want 200; body %s", r.Status, r.Body)
	}
	if admin.Role != "admin" {
		t.Errorf("me: role %q, want admin", admin.Role)
	}
	if admin.Email != "admin@bazaar.local" {
		t.Errorf("me: e-mail %q, want admin@bazaar.local", admin.Email)
	}
	if admin.Name != "Bazaar Admin" {
		t.Errorf("me: name %q, want Bazaar Admin", admin.Name)
	}

	// A second replica on the same database starts cleanly, adds no second admin or
	// event, and accepts the first replica's tokens: they share the signing key.
	second := stack{url: programtest.Start(t, run, env()).URL, db: first.db}
	if n, e := second.count(t, "users"), second.count(t, "outbox"); n != 1 || e != 1 {
		t.Errorf("after a second start: %d users, %d events; want 1 and 1", n, e)
	}
	if n := second.count(t, "signing_keys"); n != 1 {
		t.Errorf("%d signing keys, want 1", n)
	}
	if r := programtest.Call(t, http.MethodGet, second.url+"/api/v1/users/me", "", programtest.Bearer(tok.AccessToken)...); r.Status != http.StatusOK {
		t.Errorf("second replica refused the first's token: %d %s", r.Status, r.Body)
	}
	if r := post(t, second.url+"/api/v1/auth/refresh", `{"refresh_token":"`+tok.RefreshToken+`"}`); r.Status != http.StatusOK {
		t.Errorf("second replica refused the first's refresh token: %d %s", r.Status, r.Body)
	}
}

// The bootstrap admin's password may come from a file (BOOTSTRAP_ADMIN_PASSWORD_FILE),
// such as one an init container generated on a stack's first start: its last newline is
// not part of the password, and the password is never logged.
func TestBootstrapAdminPasswordFromAFile(t *testing.T) {
	t.Parallel()
	generated := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xa7}, 18)) // as an init container makes one
	passFile := filepath.Join(t.TempDir(), "admin-password")
	if err := os.WriteFile(passFile, []byte(generated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := pgtest.NewDatabase(t)
	prog := programtest.Start(t, run, map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redistest.New(t), "SIGNING_KEK": testKEKBase64,
		"BOOTSTRAP_ADMIN_EMAIL": "admin@bazaar.local", "BOOTSTRAP_ADMIN_PASSWORD_FILE": passFile})
	s := stack{url: prog.URL, db: openDB(t, dbURL)}
	tok := s.login(t, "admin@bazaar.local", generated)
	r := s.me(t, tok.AccessToken)
	var admin userBody
	r.JSON(t, &admin)
	if r.Status != http.StatusOK {
		t.Fatalf("me: status %d, want 200; body %s", r.Status, r.Body)
	}
	if admin.Role != "admin" {
		t.Errorf("me: role %q, want admin", admin.Role)
	}
	if strings.Contains(prog.Logs(), generated) {
		t.Errorf("the logs show the password:\n%s", prog.Logs())
	}

	// Set wrongly, it stops the start, naming the variable and not showing the file's
	// contents.
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin1 := map[string]string{"BOOTSTRAP_ADMIN_EMAIL": "admin@bazaar.local"}
	for name, env := range map[string]map[string]string{
		"BOOTSTRAP_ADMIN_PASSWORD and BOOTSTRAP_ADMIN_PASSWORD_FILE are both set": {"BOOTSTRAP_ADMIN_PASSWORD": "long enough", "BOOTSTRAP_ADMIN_PASSWORD_FILE": passFile},
		"BOOTSTRAP_ADMIN_PASSWORD_FILE=":                                          {"BOOTSTRAP_ADMIN_PASSWORD_FILE": filepath.Join(t.TempDir(), "missing")},
		"BOOTSTRAP_ADMIN_PASSWORD_FILE: ":                                         {"BOOTSTRAP_ADMIN_PASSWORD_FILE": short},
		"BOOTSTRAP_ADMIN_EMAIL must be set":                                       {"BOOTSTRAP_ADMIN_PASSWORD_FILE": passFile, "BOOTSTRAP_ADMIN_EMAIL": ""},
	} {
		env["SIGNING_KEK"] = testKEKBase64
		for k, v := range admin1 {
			if _, ok := env[k]; !ok {
				env[k] = v
			}
		}
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: err = %v, want it to say %q", env, err, name)
		} else {
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("%v: the error %q shows the password hunter2, want no password in it", env, err)
			}
			if strings.Contains(err.Error(), generated) {
				t.Errorf("%v: the error %q shows the generated password, want no password in it", env, err)
			}
		}
	}
}

func TestBadConfigurationStopsStartNamingTheVariable(t *testing.T) {
	t.Parallel()
	kek := testKEKBase64
	kekFile := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(kekFile, []byte(kek+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]map[string]string{
		"SIGNING_KEK":                                                     {"SIGNING_KEK": "c2hvcnQ="},
		"SIGNING_KEK and SIGNING_KEK_FILE":                                {"SIGNING_KEK": kek, "SIGNING_KEK_FILE": kekFile},
		"SIGNING_KEK_FILE":                                                {"SIGNING_KEK_FILE": filepath.Join(t.TempDir(), "missing")},
		"SIGNING_KEK or SIGNING_KEK_FILE":                                 {"SIGNING_KEYS_PLAINTEXT": "false"},
		"SIGNING_KEK_PREVIOUS is set without SIGNING_KEK":                 {"SIGNING_KEK_PREVIOUS": kek},
		"SIGNING_KEK_PREVIOUS_FILE is set without SIGNING_KEK":            {"SIGNING_KEK_PREVIOUS_FILE": kekFile},
		"SIGNING_KEK_PREVIOUS: ":                                          {"SIGNING_KEK": kek, "SIGNING_KEK_PREVIOUS": "c2hvcnQ="},
		"SIGNING_KEK_PREVIOUS and SIGNING_KEK_PREVIOUS_FILE are both set": {"SIGNING_KEK": kek, "SIGNING_KEK_PREVIOUS": kek, "SIGNING_KEK_PREVIOUS_FILE": kekFile},
		"SIGNING_KEK_PREVIOUS_FILE=":                                      {"SIGNING_KEK": kek, "SIGNING_KEK_PREVIOUS_FILE": filepath.Join(t.TempDir(), "missing")},
		"SIGNING_KEYS_PLAINTEXT=true":                                     {"SIGNING_KEK": kek, "SIGNING_KEYS_PLAINTEXT": "true"},
		"SIGNING_KEYS_PLAINTEXT=\"maybe\"":                                {"SIGNING_KEYS_PLAINTEXT": "maybe"},
		"BOOTSTRAP_ADMIN_PASSWORD":                                        {"BOOTSTRAP_ADMIN_EMAIL": "admin@bazaar.local"},
		"BOOTSTRAP_ADMIN_EMAIL":                                           {"BOOTSTRAP_ADMIN_EMAIL": "not an e-mail", "BOOTSTRAP_ADMIN_PASSWORD": "long enough"},
		"ACCESS_TOKEN_TTL":                                                {"ACCESS_TOKEN_TTL": "soon"},
		// Verifiers refuse tokens that live longer than auth.DefaultMaxLifetime.
		"ACCESS_TOKEN_TTL=2h0m0s": {"ACCESS_TOKEN_TTL": "2h"},
		"REFRESH_TOKEN_TTL":       {"REFRESH_TOKEN_TTL": "-1h"},
		"REFRESH_TOKEN_RETENTION": {"REFRESH_TOKEN_RETENTION": "a week"},
		"SIGNING_KEY_MAX_AGE":     {"SIGNING_KEY_MAX_AGE": "a quarter"},
		"LOGIN_REDIS_TIMEOUT":     {"LOGIN_REDIS_TIMEOUT": "patience"},
	} {
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: err = %v, want it to name %s", env, err, name)
		}
		for _, secret := range []string{env["SIGNING_KEK"], env["SIGNING_KEK_PREVIOUS"]} {
			if err != nil && secret != "" && strings.Contains(err.Error(), secret) {
				t.Errorf("%v: the error %q shows the key", env, err)
			}
		}
	}
}

// startFails runs the service expecting it to refuse to start, and returns why.
func startFails(t *testing.T, env map[string]string) error {
	t.Helper()
	env["HTTP_ADDR"] = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard)
	if ctx.Err() != nil {
		t.Fatalf("the service started and ran until the test's deadline (%v); want it refused", err)
	}
	if err == nil {
		t.Fatal("the service started and returned no error; want it refused")
	}
	return err
}

// The signing keys are sealed in the database with the key-encryption key. Keys stored
// in plain before there was one are sealed in place at the first start with it, and
// the tokens they signed still work; from then on a start without the key, or with
// another, is refused with a message that says which setting to fix.
func TestSigningKeysAreEncryptedAtRest(t *testing.T) {
	t.Parallel()
	dbURL, redisURL := pgtest.NewDatabase(t), redistest.New(t)
	db := openDB(t, dbURL)
	env := func(extra ...string) map[string]string {
		m := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL}
		for i := 0; i < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	plainProg := programtest.Start(t, run, env("SIGNING_KEYS_PLAINTEXT", "true"))
	plain := stack{url: plainProg.URL, db: db}
	if !strings.Contains(plainProg.Logs(), "SIGNING KEYS ARE STORED UNENCRYPTED") {
		t.Errorf("no warning that the keys are stored in plain; logs:\n%s", plainProg.Logs())
	}
	plain.register(t, "ann@example.com", "correct horse", "Ann")
	tok := plain.login(t, "ann@example.com", "correct horse")
	var kid string
	var seed, sealed []byte
	row := func() {
		t.Helper()
		if err := db.QueryRow(context.Background(), `SELECT kid, seed, sealed_seed FROM signing_keys`).Scan(&kid, &seed, &sealed); err != nil {
			t.Fatal(err)
		}
	}
	row()
	if len(seed) != 32 {
		t.Fatalf("without a KEK: seed %x of %d bytes, want 32", seed, len(seed))
	}
	if sealed != nil {
		t.Fatalf("without a KEK: sealed %x, want NULL", sealed)
	}
	plainSeed := seed

	kekFile := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(kekFile, []byte(testKEKBase64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sealedProg := programtest.Start(t, run, env("SIGNING_KEK_FILE", kekFile))
	row()
	if seed != nil {
		t.Fatalf("with a KEK: seed %x, want NULL", seed)
	}
	if len(sealed) == 0 {
		t.Fatal("with a KEK: sealed empty, want the sealed seed")
	}
	if bytes.Contains(sealed, plainSeed) {
		t.Fatalf("with a KEK: sealed %x holds the plain seed %x, want it sealed", sealed, plainSeed)
	}
	if opened, err := kekOf(t, testKEK).Open(kid, sealed); err != nil {
		t.Fatalf("the sealed key does not open: %v", err)
	} else if !bytes.Equal(opened, plainSeed) {
		t.Fatalf("the sealed key opens to %x, want the same key %x", opened, plainSeed)
	}
	if !strings.Contains(sealedProg.Logs(), "signing keys encrypted in place") {
		t.Errorf("the sealing is not logged; logs:\n%s", sealedProg.Logs())
	}
	sealedStack := stack{url: sealedProg.URL, db: db}
	if r := sealedStack.me(t, tok.AccessToken); r.Status != http.StatusOK {
		t.Errorf("a token signed before the keys were sealed: %d %s", r.Status, r.Body)
	}
	sealedStack.login(t, "ann@example.com", "correct horse")

	// Sealed keys need the KEK: without it, or with another, no start.
	if err := startFails(t, env("SIGNING_KEYS_PLAINTEXT", "true")); !strings.Contains(err.Error(), "SIGNING_KEK") {
		t.Errorf("a start without the KEK: %v; want it to say to set SIGNING_KEK", err)
	}
	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	err := startFails(t, env("SIGNING_KEK", other))
	if !strings.Contains(err.Error(), "SIGNING_KEK") {
		t.Errorf("a start with another KEK: %v; want it to name SIGNING_KEK", err)
	}
	if !errors.Is(err, signing.ErrWrongKEK) {
		t.Errorf("a start with another KEK: %v; want signing.ErrWrongKEK", err)
	}
	if row(); seed != nil {
		t.Error("a failed start unsealed the key")
	}
}

// Rotating the KEK: a start with the new one in SIGNING_KEK and the old one in
// SIGNING_KEK_PREVIOUS seals every signing key again under the new one, the same keys,
// so the tokens they signed still verify; from then on the new KEK alone starts users.
// The new KEK alone before that is refused, as any wrong KEK is.
func TestTheKEKIsRotatedWithSigningKEKPrevious(t *testing.T) {
	t.Parallel()
	dbURL, redisURL := pgtest.NewDatabase(t), redistest.New(t)
	db := openDB(t, dbURL)
	kekA, kekB := testKEKBase64, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x3c}, 32))
	env := func(extra ...string) map[string]string {
		m := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL}
		for i := 0; i < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	underA := stack{url: programtest.Start(t, run, env("SIGNING_KEK", kekA)).URL, db: db}
	underA.register(t, "ann@example.com", "correct horse", "Ann")
	tok := underA.login(t, "ann@example.com", "correct horse")
	// An older key too, superseded but still verifying: every key is sealed again.
	older, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(context.Background(), `INSERT INTO signing_keys (kid, sealed_seed, created_at) VALUES ($1, $2, now() - interval '1 day')`,
		older.ID, kekOf(t, testKEK).Seal(older.ID, older.Private.Seed())); err != nil {
		t.Fatal(err)
	}
	// opensWith says which of A and B open every stored key.
	opensWith := func() (a, b bool) {
		t.Helper()
		rows, err := db.Query(context.Background(), `SELECT kid, sealed_seed FROM signing_keys`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		a, b = true, true
		n := 0
		for rows.Next() {
			var kid string
			var sealed []byte
			if err := rows.Scan(&kid, &sealed); err != nil {
				t.Fatal(err)
			}
			n++
			_, errA := kekOf(t, testKEK).Open(kid, sealed)
			_, errB := kekOf(t, bytes.Repeat([]byte{0x3c}, 32)).Open(kid, sealed)
			a, b = a && errA == nil, b && errB == nil
		}
		if n != 2 {
			t.Fatalf("%d signing keys, want 2", n)
		}
		return a, b
	}

	err = startFails(t, env("SIGNING_KEK", kekB))
	if !errors.Is(err, signing.ErrWrongKEK) {
		t.Errorf("the new KEK alone before the rotation: %v; want signing.ErrWrongKEK", err)
	}
	if !strings.Contains(err.Error(), "SIGNING_KEK") {
		t.Errorf("the new KEK alone before the rotation: %v; want it to name SIGNING_KEK", err)
	}
	if !strings.Contains(err.Error(), "SIGNING_KEK_PREVIOUS") {
		t.Errorf("the new KEK alone before the rotation: %v; want it to say to set SIGNING_KEK_PREVIOUS", err)
	}
	if a, b := opensWith(); !a {
		t.Fatal("a refused start changed the keys: they no longer all open with A, want them to")
	} else if b {
		t.Fatal("a refused start changed the keys: they open with B, want A only")
	}

	rotating := programtest.Start(t, run, env("SIGNING_KEK", kekB, "SIGNING_KEK_PREVIOUS", kekA))
	if a, b := opensWith(); a || !b {
		t.Errorf("after the rotation the keys open with A %v, with B %v; want B only", a, b)
	}
	logs := rotating.Logs()
	if !strings.Contains(logs, `"msg":"signing keys sealed again under the new key-encryption key"`) {
		t.Errorf("the rotation is not logged; logs:\n%s", logs)
	}
	if !strings.Contains(logs, `"keys":2`) {
		t.Errorf("the rotation's log lacks its count \"keys\":2; logs:\n%s", logs)
	}
	if strings.Contains(logs, kekA) {
		t.Errorf("the logs show KEK A, want no KEK:\n%s", logs)
	}
	if strings.Contains(logs, kekB) {
		t.Errorf("the logs show KEK B, want no KEK:\n%s", logs)
	}
	rotated := stack{url: rotating.URL, db: db}
	if r := rotated.me(t, tok.AccessToken); r.Status != http.StatusOK {
		t.Errorf("a token signed before the rotation: %d %s", r.Status, r.Body)
	}
	rotated.login(t, "ann@example.com", "correct horse")

	// The previous KEK is no longer needed, and its start says so.
	again := programtest.Start(t, run, env("SIGNING_KEK", kekB, "SIGNING_KEK_PREVIOUS", kekA))
	if !strings.Contains(again.Logs(), "SIGNING_KEK_PREVIOUS is no longer needed") {
		t.Errorf("a start with nothing left to seal again does not say the previous KEK can go; logs:\n%s", again.Logs())
	}
	after := stack{url: programtest.Start(t, run, env("SIGNING_KEK", kekB)).URL, db: db}
	if r := after.me(t, tok.AccessToken); r.Status != http.StatusOK {
		t.Errorf("a token signed before the rotation, with the new KEK alone: %d %s", r.Status, r.Body)
	}
	after.login(t, "ann@example.com", "correct horse")
}

// Given no KEK, users refuses to start, saying which variables to set, before it
// touches the database: no key is ever made and stored in plain by omission.
func TestWithoutAKEKUsersRefusesToStart(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	err := startFails(t, map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redistest.New(t)})
	for _, name := range []string{"SIGNING_KEK", "SIGNING_KEK_FILE", "SIGNING_KEYS_PLAINTEXT=true"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("err = %v, want it to name %s", err, name)
		}
	}
	var table *string
	if err := openDB(t, dbURL).QueryRow(context.Background(), `SELECT to_regclass('signing_keys')::text`).Scan(&table); err != nil {
		t.Errorf("looking for the signing_keys table: %v", err)
	} else if table != nil {
		t.Errorf("the refused start made the signing_keys table %q, want none", *table)
	}
}

// SIGNING_KEYS_PLAINTEXT=true, said explicitly, still lets users keep its signing keys
// in plain (local development), with a loud warning.
func TestSigningKeysPlaintextIsAnExplicitOptOut(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	prog := programtest.Start(t, run, map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redistest.New(t), "SIGNING_KEYS_PLAINTEXT": "true"})
	if !strings.Contains(prog.Logs(), "SIGNING KEYS ARE STORED UNENCRYPTED") {
		t.Errorf("no warning; logs:\n%s", prog.Logs())
	}
	var plain, sealed []byte
	if err := openDB(t, dbURL).QueryRow(context.Background(), `SELECT seed, sealed_seed FROM signing_keys`).Scan(&plain, &sealed); err != nil {
		t.Errorf("stored signing key: %v, want one", err)
	} else {
		if len(plain) != 32 {
			t.Errorf("stored seed %d bytes, want the key in plain, 32", len(plain))
		}
		if sealed != nil {
			t.Errorf("stored sealed seed %x, want NULL", sealed)
		}
	}
}

// Rotation: with SIGNING_KEY_MAX_AGE, a start that finds the newest signing key older
// than that adds a new one, which signs from then on; the older key stays in the ring
// and the JWKS, so the tokens it signed keep working until they expire.
func TestAnOldSigningKeyIsRotatedAtStartAndItsTokensStillVerify(t *testing.T) {
	t.Parallel()
	dbURL, redisURL := pgtest.NewDatabase(t), redistest.New(t)
	env := func() map[string]string {
		return map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "SIGNING_KEK": testKEKBase64, "SIGNING_KEY_MAX_AGE": "24h"}
	}
	before := stack{url: programtest.Start(t, run, env()).URL, db: openDB(t, dbURL)}
	before.register(t, "ann@example.com", "correct horse", "Ann")
	old := before.login(t, "ann@example.com", "correct horse")
	kidOf := func(tok string) string {
		parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
		if err != nil {
			t.Fatal(err)
		}
		kid, _ := parsed.Header["kid"].(string)
		return kid
	}
	// A key younger than the maximum age is kept.
	again := stack{url: programtest.Start(t, run, env()).URL, db: before.db}
	if n := again.count(t, "signing_keys"); n != 1 {
		t.Fatalf("a start with a young key: %d signing keys, want 1", n)
	}

	// A day and a minute later, as the key's age goes:
	if _, err := before.db.Exec(context.Background(), `UPDATE signing_keys SET created_at = created_at - interval '24 hours 1 minute'`); err != nil {
		t.Fatal(err)
	}
	prog := programtest.Start(t, run, env())
	after := stack{url: prog.URL, db: before.db}
	if n := after.count(t, "signing_keys"); n != 2 {
		t.Fatalf("after a start with an old key: %d signing keys, want 2", n)
	}
	if !strings.Contains(prog.Logs(), `"msg":"signing key rotated"`) {
		t.Errorf("the rotation is not logged; logs:\n%s", prog.Logs())
	}
	fresh := after.login(t, "ann@example.com", "correct horse")
	if kidOf(fresh.AccessToken) == kidOf(old.AccessToken) {
		t.Fatalf("after the rotation tokens are still signed by %s", kidOf(old.AccessToken))
	}
	if r := after.me(t, old.AccessToken); r.Status != http.StatusOK {
		t.Errorf("a token signed before the rotation: %d %s", r.Status, r.Body)
	}
	// The JWKS publishes both, and other verifiers accept both tokens through it.
	var set auth.KeySet
	programtest.Call(t, http.MethodGet, after.url+"/.well-known/jwks.json", "").JSON(t, &set)
	keys := set.StaticKeys()
	if len(keys) != 2 {
		t.Errorf("the JWKS has %d keys: %v; want 2, the old and the new", len(keys), set.Keys)
	}
	if keys[kidOf(old.AccessToken)] == nil {
		t.Errorf("the JWKS %v lacks the old key %s", set.Keys, kidOf(old.AccessToken))
	}
	if keys[kidOf(fresh.AccessToken)] == nil {
		t.Errorf("the JWKS %v lacks the new key %s", set.Keys, kidOf(fresh.AccessToken))
	}
	v := auth.NewVerifier(auth.NewJWKS(after.url+"/.well-known/jwks.json", nil))
	for _, tok := range []string{old.AccessToken, fresh.AccessToken} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("verifying %s through the JWKS: %v", kidOf(tok), err)
		}
	}
	// The next start keeps the new key.
	programtest.Start(t, run, env())
	if n := after.count(t, "signing_keys"); n != 2 {
		t.Errorf("a start after the rotation: %d signing keys, want 2", n)
	}
}

// proxied puts a cuttable proxy in front of the server of rawURL.
func proxied(t *testing.T, rawURL string) (*tcpproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tcpproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

// readiness polls /readyz until it reports want with code, or fails after a deadline.
func readiness(t *testing.T, base string, want health.Status, code int) health.Report {
	t.Helper()
	var last programtest.Response
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		last = programtest.Call(t, http.MethodGet, base+"/readyz", "")
		var rep health.Report
		if json.Unmarshal(last.Body, &rep) == nil && rep.Status == want && last.Status == code {
			return rep
		}
	}
	t.Fatalf("readiness never became %s/%d; last %d %s", want, code, last.Status, last.Body)
	return health.Report{}
}

func TestReadinessAndRegistrationFollowTheDependencies(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	pg, proxiedDB := proxied(t, dbURL)
	redisURL := redistest.New(t)
	rd, proxiedRedis := proxied(t, redisURL)
	prog := programtest.Start(t, run, map[string]string{"DATABASE_URL": proxiedDB, "REDIS_URL": proxiedRedis, "SIGNING_KEK": testKEKBase64})
	s := stack{url: prog.URL, db: openDB(t, dbURL)}
	internal := prog.InternalURL() // probes are on the internal listener
	readiness(t, internal, health.Healthy, http.StatusOK)

	// Redis down: degraded, but sign-up works and its event waits in the outbox.
	rd.Cut()
	rep := readiness(t, internal, health.Degraded, http.StatusOK)
	if rep.Checks["redis"] != health.Unhealthy {
		t.Errorf("with Redis cut: redis check %v, want %v", rep.Checks["redis"], health.Unhealthy)
	}
	if rep.Checks["postgres"] != health.Healthy {
		t.Errorf("with Redis cut: postgres check %v, want %v", rep.Checks["postgres"], health.Healthy)
	}
	ann := s.register(t, "ann@example.com", "correct horse", "Ann")
	var events int
	if err := s.db.QueryRow(context.Background(),
		`SELECT count(*) FROM outbox WHERE type = 'user.registered' AND subject = $1 AND published_at IS NULL`, ann.ID).Scan(&events); err != nil || events != 1 {
		t.Errorf("%d user.registered events waiting for %s (%v), want 1", events, ann.ID, err)
	}
	tok := s.login(t, "ann@example.com", "correct horse")
	// Revocations cannot be checked: tokens are judged on their signature alone.
	if r := s.me(t, tok.AccessToken); r.Status != http.StatusOK {
		t.Errorf("me with Redis cut: %d %s", r.Status, r.Body)
	}
	rd.Restore()
	readiness(t, internal, health.Healthy, http.StatusOK)

	// Postgres down: unhealthy, and requests that need it say so with a 503 rather
	// than pretending the credentials are wrong.
	pg.Cut()
	rep = readiness(t, internal, health.Unhealthy, http.StatusServiceUnavailable)
	if rep.Checks["postgres"] != health.Unhealthy {
		t.Errorf("with Postgres cut: %+v", rep)
	}
	d := post(t, s.url+"/api/v1/auth/login", `{"email":"ann@example.com","password":"correct horse"}`).Problem(t, http.StatusServiceUnavailable)
	if !strings.Contains(d.Detail, "database") {
		t.Errorf("503 detail %q does not name the database", d.Detail)
	}
	post(t, s.url+"/api/v1/auth/register", `{"email":"bob@example.com","password":"correct horse","name":"Bob"}`).Problem(t, http.StatusServiceUnavailable)
	if r := programtest.Call(t, http.MethodGet, internal+"/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("liveness while Postgres is cut: %d", r.Status)
	}
	pg.Restore()
	readiness(t, internal, health.Healthy, http.StatusOK)

	// Recovered by itself: the session still works and sign-ups resume.
	if r := programtest.Call(t, http.MethodGet, s.url+"/api/v1/users/me", "", programtest.Bearer(tok.AccessToken)...); r.Status != http.StatusOK {
		t.Errorf("me after recovery: %d %s", r.Status, r.Body)
	}
	bob := s.register(t, "bob@example.com", "correct horse", "Bob")
	if n := s.count(t, "users"); n != 2 {
		t.Errorf("%d users, want 2 (the one tried during the outage was not stored)", n)
	}

	// Nothing was lost: the relay publishes both sign-ups, in order, once Redis is back.
	// Delivery is at least once: a row whose XADD succeeded just before Postgres was cut
	// is published again (consumers deduplicate by event id), so count distinct events.
	rdb, err := redisclient.Open(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var subjects []string
	for deadline := time.Now().Add(20 * time.Second); len(subjects) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		msgs, _ := rdb.XRange(context.Background(), "events.users", "-", "+").Result()
		subjects = subjects[:0]
		seen := map[string]bool{}
		for _, m := range msgs {
			e, err := bazaarevents.Parse(m.Values)
			if err != nil {
				t.Fatalf("bad entry on events.users: %v %v", m.Values, err)
			}
			if e.Type != "user.registered" {
				t.Fatalf("entry on events.users of type %q, want user.registered: %v", e.Type, m.Values)
			}
			if !seen[e.ID.String()] {
				seen[e.ID.String()] = true
				subjects = append(subjects, e.Subject)
			}
		}
	}
	if len(subjects) != 2 || subjects[0] != ann.ID || subjects[1] != bob.ID {
		t.Fatalf("events.users subjects = %v, want [%s %s]", subjects, ann.ID, bob.ID)
	}
}

// Refresh tokens do not pile up: the daily refresh-tokens:cleanup (whose slot for today
// runs as soon as the service starts) deletes a session's tokens once every one of
// them has been expired or revoked for REFRESH_TOKEN_RETENTION (7 days), and keeps a
// session that is still alive whole, its used tokens included, so that their reuse is
// still detected.
func TestDeadSessionsRefreshTokensAreCleanedUp(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	db := openDB(t, dbURL)
	ctx := context.Background()
	if err := pgdb.Migrate(ctx, db, migrations.FS, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	userID := uuid.New()
	if _, err := db.Exec(ctx, `INSERT INTO users (id, email, name, role, password_hash, created_at)
		VALUES ($1, 'old@example.com', 'Old', 'customer', '$argon2id$x', now() - interval '90 days')`, userID); err != nil {
		t.Fatal(err)
	}
	// family adds a chain of tokens, each the parent of the next, created daysAgo and
	// expiring expiresIn days after that; all but the last are used; revokedAgo, when
	// set, is when the whole family was revoked.
	family := func(n int, daysAgo, expiresIn int, revokedAgo *int) uuid.UUID {
		t.Helper()
		famID := uuid.New()
		var parent *uuid.UUID
		for i := range n {
			id := famID
			if i > 0 {
				id = uuid.New()
			}
			used := i < n-1
			hash := sha256.Sum256(id[:])
			_, err := db.Exec(ctx, `INSERT INTO refresh_tokens
				(id, token_hash, user_id, family_id, parent_id, session_started_at, created_at, expires_at, used_at, revoked_at)
				VALUES ($1, $9, $2, $3, $4, now() - make_interval(days => $10),
				        now() - make_interval(days => $5), now() - make_interval(days => $5) + make_interval(days => $6),
				        CASE WHEN $7 THEN now() - make_interval(days => $5) END,
				        CASE WHEN $8::int IS NOT NULL THEN now() - make_interval(days => $8::int) END)`,
				id, userID, famID, parent, daysAgo-i, expiresIn, used, revokedAgo, hash[:], daysAgo)
			if err != nil {
				t.Fatal(err)
			}
			parent = &id
		}
		return famID
	}
	eight := 8
	expired := family(3, 45, 30, nil)    // its last token expired 13 days ago
	revoked := family(2, 20, 30, &eight) // reuse ended it 8 days ago, before its tokens expired
	alive := family(3, 20, 30, nil)      // its used root expired 10 days ago, but the newest token has 12 days to go
	recent := family(1, 35, 30, nil)     // expired 5 days ago: kept a while yet

	programtest.Start(t, run, map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redistest.New(t), "SIGNING_KEK": testKEKBase64})
	left := func(fam uuid.UUID) int {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM refresh_tokens WHERE family_id = $1`, fam).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for left(expired)+left(revoked) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("dead sessions' tokens not deleted within a minute: %d and %d left", left(expired), left(revoked))
		}
		time.Sleep(25 * time.Millisecond) // polling interval
	}
	if a, r := left(alive), left(recent); a != 3 || r != 1 {
		t.Errorf("live session kept %d of 3 tokens, recently expired one %d of 1", a, r)
	}
}
