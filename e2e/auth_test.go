package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/devstack"
)

func TestRegisterLogInAndReadMe(t *testing.T) {
	setup(t)
	email := newEmail(t)
	before := time.Now().Add(-time.Minute) // the servers' clocks are this machine's

	u := register(t, email, "correct horse battery", "Ada Lovelace")
	if u.ID == "" || u.Email != email || u.Name != "Ada Lovelace" || u.Role != "customer" {
		t.Errorf("registered %+v; want an id, the e-mail, the name and role customer", u)
	}
	if u.CreatedAt.Before(before) || u.CreatedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("created_at = %v; want about now", u.CreatedAt)
	}

	tok := login(t, email, "correct horse battery")
	got := me(t, tok.AccessToken)
	if got != u {
		t.Errorf("/users/me = %+v; want the registered user %+v", got, u)
	}
}

func TestEmailsAreCaseInsensitive(t *testing.T) {
	setup(t)
	email := newEmail(t)
	mixed := strings.ToUpper(email[:1]) + email[1:strings.Index(email, "@")] + strings.ToUpper(email[strings.Index(email, "@"):])
	u := register(t, mixed, "correct horse battery", "Grace Hopper")

	tok := login(t, strings.ToLower(mixed), "correct horse battery")
	if got := me(t, tok.AccessToken); got.ID != u.ID {
		t.Errorf("logging in with the lower-case e-mail reached user %s; want %s", got.ID, u.ID)
	}
	// The same address in other letters is taken.
	p := problem(t, do(t, request{Method: "POST", Path: "/api/v1/auth/register",
		Body: map[string]string{"email": strings.ToUpper(email), "password": "another password", "name": "Impostor"}}), http.StatusConflict)
	if p.Detail == "" {
		t.Error("the 409 does not say why")
	}
}

func TestRefreshRotatesAndReuseRevokesTheFamily(t *testing.T) {
	setup(t)
	email := newEmail(t)
	register(t, email, "correct horse battery", "Refresh Tester")
	first := login(t, email, "correct horse battery")

	refresh := func(token string) response {
		return do(t, request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": token}})
	}
	var second tokensDoc
	decode(t, refresh(first.RefreshToken), http.StatusOK, &second)
	if second.AccessToken == "" {
		t.Fatalf("refresh answered %+v; want a new pair, with an access token", second)
	}
	if second.RefreshToken == "" {
		t.Fatalf("refresh answered %+v; want a new pair, with a refresh token", second)
	}
	if second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh answered the refresh token it was given; want a new one")
	}
	if got := me(t, second.AccessToken); got.Email != email {
		t.Errorf("the refreshed access token is for %q; want %q", got.Email, email)
	}

	// The first refresh token is spent: using it again is a theft signal...
	problem(t, refresh(first.RefreshToken), http.StatusUnauthorized)
	// ...and revokes the whole family, the token the legitimate holder has now included.
	problem(t, refresh(second.RefreshToken), http.StatusUnauthorized)

	// A fresh login starts a new family that works.
	third := login(t, email, "correct horse battery")
	var fourth tokensDoc
	decode(t, refresh(third.RefreshToken), http.StatusOK, &fourth)
}

func TestLoginFailuresAreIndistinguishable(t *testing.T) {
	setup(t)
	email := newEmail(t)
	register(t, email, "correct horse battery", "Enumeration Target")

	loginProblem := func(email, password string) problemDoc {
		return problem(t, do(t, request{Method: "POST", Path: "/api/v1/auth/login",
			Body: map[string]string{"email": email, "password": password}}), http.StatusUnauthorized)
	}
	wrongPassword := loginProblem(email, "wrong horse battery")
	unknownEmail := loginProblem(newEmail(t), "correct horse battery")
	if wrongPassword.Type != unknownEmail.Type || wrongPassword.Title != unknownEmail.Title ||
		wrongPassword.Detail != unknownEmail.Detail || len(wrongPassword.Errors) != len(unknownEmail.Errors) {
		t.Errorf("a wrong password got %+v but an unknown e-mail got %+v; want the same problem", wrongPassword, unknownEmail)
	}
}

func TestSeededAccountsCanLogIn(t *testing.T) {
	setup(t)
	for _, c := range []struct {
		account  *devstack.Login
		wantRole string
	}{
		{&admin, "admin"},
		{&shopper, "customer"},
	} {
		t.Run(c.wantRole, func(t *testing.T) {
			t.Parallel()
			r := do(t, loginRequest(c.account.Email, c.account.Password))
			if r.StatusCode == http.StatusUnauthorized && c.wantRole == "customer" && os.Getenv("E2E_BASE_URL") != "" {
				// make run seeds the shopper; docker compose does not (only the admin,
				// through BOOTSTRAP_ADMIN_*). Said so rather than failed, for a stack
				// this run did not start; the suite's own stacks are devstack's and
				// always check it.
				t.Skipf("the stack at E2E_BASE_URL has no shopper %s with the password the suite was given "+
					"(docker compose seeds none; for make run, set BAZAAR_SHOPPER_EMAIL and BAZAAR_SHOPPER_PASSWORD as it had them)", c.account.Email)
			}
			tok := loggedIn(t, r)
			u := me(t, tok.AccessToken)
			if u.Role != c.wantRole {
				t.Errorf("%s is %+v; want role %s", c.account.Email, u, c.wantRole)
			}
			if !strings.EqualFold(u.Email, c.account.Email) {
				t.Errorf("%s signed in as %s; want %s", c.account.Email, u.Email, c.account.Email)
			}
		})
	}
}
