// Package opsauth lets administrators into the gateway's operations pages (the task
// monitor under /ops) from a browser, where bearer tokens do not work: a page cannot
// add an Authorization header to a navigation or to the requests of an app it did not
// write.
//
// An administrator signs in with a form (GET and POST /ops/login). The gateway checks
// the credentials with the users service, verifies the access token it gets back like
// any other, and insists on the admin role; it then keeps a server-side session in
// Redis and gives the browser only a random id for it, in an HttpOnly, SameSite=Strict
// cookie scoped to /ops. POST /ops/logout ends the session. RequireAdmin guards the
// pages: a live admin session or an admin's bearer token (for scripts) gets through.
// SameOrigin keeps other sites from riding on the cookie.
//
// The session records who signed in, not their tokens: the gateway never calls a
// service as the administrator, and a token it does not keep cannot leak. The price is
// that a session outlives a change of role until it expires (OPS_SESSION_TTL).
package opsauth

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// The paths and the cookie of the operations sign-in.
const (
	LoginPath  = "/ops/login"
	LogoutPath = "/ops/logout"
	CookieName = "bazaar_ops"
	// CookiePath keeps the session cookie off the public API, where it means
	// nothing and would only widen what a cross-site request could carry.
	CookiePath = "/ops"
)

// Authenticator checks credentials with the users service (a *usersclient.Client).
type Authenticator interface {
	// Login returns the access token for email and password, tried from the client
	// address client. It fails with an apperr.Unauthorized error for wrong
	// credentials and apperr.RateLimited when users turns the attempt away; any other
	// error means the check could not be made.
	Login(ctx context.Context, email, password, client string) (accessToken string, err error)
}

// RetryAfter reads how long an Authenticator's apperr.RateLimited error asks to wait
// (usersclient.RetryAfter in the gateway); zero when it does not say.
type RetryAfter func(error) time.Duration

// Limiter counts sign-in attempts (a *ratelimit.Limiter in the gateway), so that the
// form is no faster a way to guess passwords than the API's log-in.
type Limiter interface {
	// SignInAttempt counts an attempt to sign in as email from r's client; when it is
	// over a limit it reports false and how long to wait.
	SignInAttempt(r *http.Request, email string) (retryAfter time.Duration, ok bool)
}

// Options are what Auth needs.
type Options struct {
	Log *slog.Logger
	// Verifier checks the access token the users service issues at sign-in, and
	// bearer tokens sent to guarded pages.
	Verifier *auth.Verifier
	Users    Authenticator
	Sessions *Sessions
	// Limiter limits sign-in attempts, with the same limits and counters as the
	// API's log-in.
	Limiter Limiter
	// RetryAfter reads the wait out of Users' refusals; nil: they never say.
	RetryAfter RetryAfter
	// Home is where a signed-in administrator is sent, e.g. /ops/tasks/.
	Home string
}

// Auth signs administrators in and out and guards the operations pages.
type Auth struct {
	log      *slog.Logger
	verifier *auth.Verifier
	users    Authenticator
	sessions *Sessions
	limiter  Limiter
	wait     RetryAfter
	home     string
}

// New is the sign-in of the operations pages.
func New(o Options) *Auth {
	wait := o.RetryAfter
	if wait == nil {
		wait = func(error) time.Duration { return 0 }
	}
	return &Auth{log: o.Log, verifier: o.Verifier, users: o.Users, sessions: o.Sessions, limiter: o.Limiter, wait: wait, home: o.Home}
}

// RequireAdmin lets a request through to next only from an administrator: one with a
// live session cookie, or with an admin's bearer token. A bearer token is checked
// like on any API route, and a customer's gets a 403 problem. Without either, a
// browser navigating to a page is sent to the sign-in form (303) and anything else
// gets a 401 problem. A Redis outage is a 503 problem.
func (a *Auth) RequireAdmin(next http.Handler) http.Handler {
	bearer := a.verifier.Require(a.log)(auth.RequireRole(a.log, auth.RoleAdmin)(next))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth.BearerToken(r) != "" {
			bearer.ServeHTTP(w, r)
			return
		}
		sess, err := a.session(r)
		switch {
		case errors.Is(err, ErrNoSession):
			a.signInFirst(w, r)
		case err != nil:
			problem.Write(w, r, a.log, err)
		case sess.Role != auth.RoleAdmin:
			// Only admins are given sessions; this holds should that ever change.
			problem.Write(w, r, a.log, apperr.E(apperr.Forbidden, "this requires the %s role", auth.RoleAdmin))
		default:
			p := auth.Principal{UserID: sess.UserID, Role: sess.Role}
			next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		}
	})
}

// session is the live session the request's cookie names. It fails with ErrNoSession
// when there is no cookie or its session is gone, and with apperr.Unavailable when
// Redis cannot be reached.
func (a *Auth) session(r *http.Request) (Session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return Session{}, ErrNoSession
	}
	return a.sessions.Get(r.Context(), c.Value)
}

// signInFirst answers a request that carries no credentials, or dead ones.
func (a *Auth) signInFirst(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(CookieName); err == nil {
		// The session is gone; so that the browser stops sending its id.
		http.SetCookie(w, a.cookie(r, "", -1))
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && acceptsHTML(r) {
		http.Redirect(w, r, LoginPath, http.StatusSeeOther)
		return
	}
	// The monitor's own API calls (and scripts) get an answer they can read.
	w.Header().Set("WWW-Authenticate", `Bearer realm="bazaar"`)
	problem.Write(w, r, a.log, apperr.E(apperr.Unauthorized,
		"sign in at %s, or send an admin's bearer access token", LoginPath))
}

// cookie is the session cookie with value, kept for maxAge seconds (negative: delete
// it now).
func (a *Auth) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     CookiePath,
		MaxAge:   maxAge,
		HttpOnly: true, // no script, and so no injected script, reads the id
		// Browsers send the cookie only on requests that start on this site:
		// another site can neither link nor post its way into a signed-in page.
		SameSite: http.SameSiteStrictMode,
		Secure:   OverTLS(r),
	}
}

// clientIP is the address of the request's TCP peer, the browser (or what is in front
// of it): X-Forwarded-For and the like are not trusted, as in the rate limits.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// OverTLS reports whether the browser reached the gateway over HTTPS, directly or
// through a proxy that terminated TLS and said so. X-Forwarded-Proto is trusted here,
// though the proxy package drops it, because the most a forged value can do is make
// the cookie Secure, which only keeps it off plain HTTP.
func OverTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// acceptsHTML reports whether the request would take a page: a browser navigating.
func acceptsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/html") {
			return true
		}
	}
	return false
}
