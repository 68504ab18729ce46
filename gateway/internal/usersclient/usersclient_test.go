package usersclient_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/gateway/internal/usersclient"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// serve runs h as the users service.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestLoginSendsTheCredentialsAndReturnsTheAccessToken(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, contentType, requestID string
		forwardedFor                         []string
		body                                 map[string]string
	}
	got := make(chan seen, 2)
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get(httpserver.RequestIDHeader), r.Header.Values("X-Forwarded-For"), body}
		io.WriteString(w, `{"access_token":"tok","token_type":"Bearer","expires_in":900,"refresh_token":"r"}`)
	})
	ctx := logging.WithRequestID(context.Background(), "req-1")
	// The browser's address goes to users as the proxy sends it, so that users counts
	// the attempt against the browser, not against the gateway.
	tok, err := usersclient.New(url+"/", time.Second, nil).Login(ctx, "ann@example.com", "secret-pass", "203.0.113.9")
	if err != nil || tok != "tok" {
		t.Fatalf("Login = %q, %v; want the access token", tok, err)
	}
	s := <-got
	if s.method != http.MethodPost {
		t.Errorf("users got %s; want POST", s.method)
	}
	if s.path != "/api/v1/auth/login" {
		t.Errorf("users got %s; want /api/v1/auth/login", s.path)
	}
	if s.contentType != "application/json" {
		t.Errorf("users got Content-Type %q; want application/json", s.contentType)
	}
	if s.requestID != "req-1" {
		t.Errorf("users got request id %q; want req-1", s.requestID)
	}
	if len(s.forwardedFor) != 1 || s.forwardedFor[0] != "203.0.113.9" {
		t.Errorf("users got X-Forwarded-For %q; want exactly [203.0.113.9]", s.forwardedFor)
	}
	if _, err := usersclient.New(url, time.Second, nil).Login(ctx, "ann@example.com", "secret-pass", ""); err != nil {
		t.Fatal(err)
	}
	if s := <-got; len(s.forwardedFor) != 0 {
		t.Errorf("no client address, and users got X-Forwarded-For %q", s.forwardedFor)
	}
	if s.body["email"] != "ann@example.com" {
		t.Errorf("users got email %q; want ann@example.com", s.body["email"])
	}
	if s.body["password"] != "secret-pass" {
		t.Errorf("users got password %q; want secret-pass", s.body["password"])
	}
	if len(s.body) != 2 {
		t.Errorf("users got body %v; want the email and password alone", s.body)
	}
}

func TestLoginErrorsCarryACode(t *testing.T) {
	t.Parallel()
	answer := func(code apperr.Code) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { problem.Write(w, r, nil, apperr.E(code, "no")) }
	}
	closed := closedport.URL(t)

	for _, tc := range []struct {
		name string
		url  string
		want apperr.Code
	}{
		{"wrong credentials", serve(t, answer(apperr.Unauthorized)), apperr.Unauthorized},
		{"rate limited", serve(t, answer(apperr.RateLimited)), apperr.RateLimited},
		{"users failing", serve(t, answer(apperr.Internal)), apperr.Internal},
		{"users down", closed, apperr.Unavailable},
		{"slow", serve(t, func(w http.ResponseWriter, r *http.Request) {
			// Go's server notices the client hanging up only once the body is read.
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		}), apperr.Timeout},
		{"not a token", serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `<html>`) }), apperr.BadGateway},
		{"no access token", serve(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"token_type":"Bearer"}`)
		}), apperr.BadGateway},
	} {
		start := time.Now()
		_, err := usersclient.New(tc.url, 300*time.Millisecond, nil).Login(context.Background(), "a@b.c", "pw", "")
		if code := apperr.CodeOf(err); code != tc.want {
			t.Errorf("%s: got %v, want code %s", tc.name, err, tc.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s despite a 300ms timeout", tc.name, d)
		}
	}
}

func TestLoginDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	stolen := make(chan string, 1)
	elsewhere := serve(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		stolen <- string(body)
	})
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		// 307 would make a following client re-send the body, password and all.
		http.Redirect(w, r, elsewhere+"/steal", http.StatusTemporaryRedirect)
	})
	_, err := usersclient.New(url, time.Second, nil).Login(context.Background(), "a@b.c", "pw", "")
	if err == nil {
		t.Fatal("Login succeeded on a redirect")
	}
	select {
	case body := <-stolen:
		t.Fatalf("the credentials were sent on to the redirect's target: %s", body)
	default:
	}
}

func TestLoginTurnedAwaySaysHowLongToWait(t *testing.T) {
	t.Parallel()
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		problem.Write(w, r, nil, apperr.E(apperr.RateLimited, "too many attempts"))
	})
	_, err := usersclient.New(url, time.Second, nil).Login(context.Background(), "a@b.c", "pw", "")
	if apperr.CodeOf(err) != apperr.RateLimited || usersclient.RetryAfter(err) != 7*time.Second {
		t.Errorf("got %v, wait %s; want rate_limited, 7s", err, usersclient.RetryAfter(err))
	}
	if d := usersclient.RetryAfter(apperr.E(apperr.Unauthorized, "no")); d != 0 {
		t.Errorf("RetryAfter of another error: %s", d)
	}
}
