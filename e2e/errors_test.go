package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestBadRegistrationsAreRejectedAndChangeNothing(t *testing.T) {
	setup(t)
	for _, c := range []struct {
		name       string
		body       func(email string) any
		status     int
		wantFields []string // the fields a 422 must name
	}{
		{"malformed JSON", func(email string) any { return `{"email":"` + email + `","password":` }, http.StatusBadRequest, nil},
		{"not an object", func(string) any { return `["a list"]` }, http.StatusBadRequest, nil},
		{"unknown field", func(email string) any {
			return map[string]string{"email": email, "password": "correct horse battery", "name": "X", "role": "admin"}
		}, http.StatusBadRequest, nil},
		{"body over 1 MiB", func(email string) any {
			return map[string]string{"email": email, "password": "correct horse battery", "name": strings.Repeat("n", 1<<20)}
		}, http.StatusRequestEntityTooLarge, nil},
		{"bad e-mail", func(string) any {
			return map[string]string{"email": "not-an-email", "password": "correct horse battery", "name": "X"}
		}, http.StatusUnprocessableEntity, []string{"email"}},
		{"short password", func(email string) any {
			return map[string]string{"email": email, "password": "short", "name": "X"}
		}, http.StatusUnprocessableEntity, []string{"password"}},
		{"everything missing", func(string) any { return map[string]string{} }, http.StatusUnprocessableEntity, []string{"email", "password"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			email := newEmail(t)
			p := problem(t, do(t, request{Method: "POST", Path: "/api/v1/auth/register", Body: c.body(email)}), c.status)
			for _, f := range c.wantFields {
				if !slices.Contains(p.fields(), f) {
					t.Errorf("the problem names fields %v; want %q among them", p.fields(), f)
				}
			}
			if c.status == http.StatusUnprocessableEntity && len(p.Errors) == 0 {
				t.Error("a 422 without field errors")
			}
			// Nothing was registered: the address is still free to log in as nobody.
			problem(t, do(t, request{Method: "POST", Path: "/api/v1/auth/login",
				Body: map[string]string{"email": email, "password": "correct horse battery"}}), http.StatusUnauthorized)
		})
	}
}

func TestBadTokensAreRejectedAtTheGateway(t *testing.T) {
	setup(t)
	sh := sharedShop()
	c := sh.shopper(t) // any customer's token will do
	email, good := c.Email, c.Token
	other := sh.adminToken(t)
	parts := strings.Split(good, ".")
	if len(parts) != 3 {
		t.Fatalf("access token %q is not a JWS", good)
	}

	// Claims of our user, rewritten to say admin, under the original signature.
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(claims, &m); err != nil {
		t.Fatal(err)
	}
	m["role"] = "admin"
	elevated, _ := json.Marshal(m)
	b64 := base64.RawURLEncoding.EncodeToString
	unsigned := b64([]byte(`{"alg":"none","typ":"JWT"}`))

	for _, c := range []struct{ name, header string }{
		{"no token", ""},
		{"not bearer", "Basic " + b64([]byte("admin:admin"))},
		{"garbage", "Bearer not-a-token"},
		{"tampered claims", "Bearer " + parts[0] + "." + b64(elevated) + "." + parts[2]},
		{"another token's signature", "Bearer " + parts[0] + "." + parts[1] + "." + strings.Split(other, ".")[2]},
		{"alg none", "Bearer " + unsigned + "." + parts[1] + "."},
		{"truncated signature", "Bearer " + good[:len(good)-4]},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := request{Method: "GET", Path: "/api/v1/users/me"}
			if c.header != "" {
				r.Header = map[string]string{"Authorization": c.header}
			}
			problem(t, do(t, r), http.StatusUnauthorized)
		})
	}
	// The untampered token still works: the rejections were about the changes.
	if u := me(t, good); u.Email != email {
		t.Errorf("/users/me = %+v; want %s", u, email)
	}
}

func TestRequestIDsAreEchoedOrMinted(t *testing.T) {
	setup(t)
	for _, c := range []request{
		{Method: "GET", Path: "/health"},
		{Method: "GET", Path: "/api/v1/users/me"}, // a 401 at the gateway
		{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"email": "a@b.example"}}, // a 422 from users
		{Method: "GET", Path: "/no/such/route"},
	} {
		t.Run(c.Method+" "+c.Path, func(t *testing.T) {
			t.Parallel()
			sane := "e2e-" + randomHex(8)
			c.Header = map[string]string{"X-Request-ID": sane}
			if got := do(t, c).Header.Get("X-Request-ID"); got != sane {
				t.Errorf("sent X-Request-ID %q, got back %q", sane, got)
			}
			for _, insane := range []string{"has spaces and \"quotes\"", strings.Repeat("x", 200)} {
				c.Header = map[string]string{"X-Request-ID": insane}
				if got := do(t, c).Header.Get("X-Request-ID"); got == insane || got == "" {
					t.Errorf("sent X-Request-ID %.20q..., got back %.20q...; want a new id", insane, got)
				}
			}
		})
	}
	// Two requests without an id get different ones.
	a := do(t, request{Method: "GET", Path: "/health"}).Header.Get("X-Request-ID")
	b := do(t, request{Method: "GET", Path: "/health"}).Header.Get("X-Request-ID")
	if a == b {
		t.Errorf("two requests both got the id %q", a)
	}
}

func TestUnknownRoutesAndMethodsAreProblems(t *testing.T) {
	setup(t)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/api/v1/no-such-thing", http.StatusNotFound},
		{"GET", "/no-such-thing", http.StatusNotFound},
		{"GET", "/api/v2/users/me", http.StatusNotFound},
		{"DELETE", "/api/v1/users/me", http.StatusMethodNotAllowed},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			t.Parallel()
			problem(t, do(t, request{Method: c.method, Path: c.path}), c.status)
		})
	}
}
