package main

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// signSession issues a token for a new user with role in the session sid, as users
// does since sessions can be ended.
func signSession(t *testing.T, key ed25519.PrivateKey, role auth.Role, sid string) string {
	t.Helper()
	tok, err := auth.NewSigner(kid, key, 15*time.Minute).Sign(auth.Principal{UserID: uuid.New(), Role: role, SessionID: sid})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokensOfAnEndedSessionAreRefusedAtTheGateway(t *testing.T) {
	t.Parallel()
	users := newFakeUsers(t)
	redisURL := redistest.New(t)
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "REDIS_URL": redisURL}).URL

	ended, live := uuid.NewString(), uuid.NewString()
	endedTok := signSession(t, users.key, auth.RoleCustomer, ended)
	endedAdmin := signSession(t, users.key, auth.RoleAdmin, ended)
	liveTok := signSession(t, users.key, auth.RoleCustomer, live)
	for _, tok := range []string{endedTok, liveTok} {
		if resp, body := get(t, gw+"/api/v1/users/me", bearer(tok)); resp.StatusCode != http.StatusOK {
			t.Fatalf("before the log-out: %d %s", resp.StatusCode, body)
		}
	}

	// What users writes when the session ends (log-out, or a reused refresh token).
	if err := rdb.Set(context.Background(), auth.RevokedKeyPrefix+ended, "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	// The gateway has verified endedTok before, and trusts its last answer about the
	// session for revocationRecheck: the token is refused once that has passed.
	for deadline := time.Now().Add(revocationRecheck + 10*time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, body := get(t, gw+"/api/v1/users/me", bearer(endedTok))
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("an ended session's token seen before the end: %d %s, want 200 until it is refused with a 401", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("an ended session's token seen before the end: still %d %s, want 401 within %s", resp.StatusCode, body, revocationRecheck)
		}
	}
	// From then on it is refused everywhere before anything is forwarded, and a token
	// of the session first seen after the end (the admin's) at once.
	before := len(users.calls())
	for name, path := range map[string]string{
		"a user's route":        "/api/v1/users/me",
		"the monitor, as admin": "/ops/tasks/api/queues",
	} {
		tok := endedTok
		if name == "the monitor, as admin" {
			tok = endedAdmin
		}
		resp, body := get(t, gw+path, bearer(tok))
		if d := decodeProblem(t, resp, body); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with an ended session's token: %d %+v, want 401", name, resp.StatusCode, d)
		}
	}
	if n := len(users.calls()) - before; n != 0 {
		t.Errorf("users got %d calls with an ended session's token", n)
	}
	// Another session of the same system is untouched.
	if resp, body := get(t, gw+"/api/v1/users/me", bearer(liveTok)); resp.StatusCode != http.StatusOK {
		t.Errorf("another session: %d %s", resp.StatusCode, body)
	}
}

func TestLogoutIsForwardedAndLimitedLikeRefresh(t *testing.T) {
	t.Parallel()
	users := newUpstream(t, "users", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	gw := startGateway(t, map[string]string{"USERS_URL": users.URL, "RATE_IP": "1", "RATE_IP_BURST": "2"}).URL
	const body = `{"refresh_token":"opaque"}`
	// Anonymous: the refresh token is the credential.
	resp, b := send(t, http.MethodPost, gw+"/api/v1/auth/logout", body, "", nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", resp.StatusCode, b)
	}
	calls := users.calls()
	if len(calls) != 1 || calls[0].method != http.MethodPost || calls[0].uri != "/api/v1/auth/logout" || calls[0].body != body {
		t.Fatalf("users got %+v, want the logout unchanged", calls)
	}
	// The same per-address limit as refresh: they share it.
	if resp, b := send(t, http.MethodPost, gw+"/api/v1/auth/refresh", body, "", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("refresh: %d %s", resp.StatusCode, b)
	}
	resp, b = send(t, http.MethodPost, gw+"/api/v1/auth/logout", body, "", nil)
	expect429(t, resp, b)
}
