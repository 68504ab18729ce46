package demo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/demo"
)

// gateway stands for the gateway's two auth routes: register answers register, and
// login 200 for the password "right". The stacks' own tests (cmd/devstack's e2e run)
// seed through the real gateway; this one covers each answer.
func gateway(t *testing.T, register int) (url string, got *[]string) {
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("%s: a bad request: %v", r.URL.Path, err)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: a bad request: Content-Type %q, want application/json", r.URL.Path, ct)
		}
		calls = append(calls, r.URL.Path+" "+body["email"])
		switch {
		case r.URL.Path == "/api/v1/auth/register":
			w.WriteHeader(register)
			fmt.Fprint(w, `{"title":"answer"}`)
		case r.URL.Path == "/api/v1/auth/login" && body["password"] == "right":
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &calls
}

func TestSeedRegistersTheShopperOnceAndChecksTheAdmin(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		register int
		admin    demo.Login
		wantErr  bool
		wantLine string
		calls    int
	}{
		{"a new shopper", http.StatusCreated, demo.Login{}, false, "seeded the shopper shopper@bazaar.local", 1},
		{"a shopper already there", http.StatusConflict, demo.Login{}, false, "the shopper shopper@bazaar.local already exists", 1},
		{"a refused registration", http.StatusServiceUnavailable, demo.Login{}, true, "", 1},
		{"an admin who logs in", http.StatusCreated, demo.Login{Email: "a@x", Password: "right"}, false, "seeded", 2},
		{"an admin who cannot", http.StatusCreated, demo.Login{Email: "a@x", Password: "wrong"}, false, "warning: the admin a@x cannot log in", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			url, calls := gateway(t, c.register)
			var lines []string
			err := demo.Seed(context.Background(), url, c.admin, demo.Shopper, func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
			if (err != nil) != c.wantErr {
				t.Fatalf("Seed = %v, want an error: %v", err, c.wantErr)
			}
			if c.wantErr && !strings.Contains(err.Error(), "503") {
				t.Errorf("the error does not say what the gateway answered: %v", err)
			}
			if out := strings.Join(lines, "\n"); c.wantLine != "" && !strings.Contains(out, c.wantLine) {
				t.Errorf("said %q, want a line with %q", out, c.wantLine)
			}
			if len(*calls) != c.calls {
				t.Errorf("calls %q, want %d", *calls, c.calls)
			}
		})
	}
}
