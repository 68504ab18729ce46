package opsauth

import (
	"bytes"
	_ "embed"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

//go:embed login.html
var loginHTML string

var loginPage = template.Must(template.New("login").Parse(loginHTML))

// pageSecurityPolicy allows the sign-in page nothing but its own inline styles and a
// form that posts back to the gateway, and no framing (no clickjacking of the form).
const pageSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// The messages of the sign-in page. Wrong e-mail, wrong password and a customer's
// right password share one, so that the form tells nobody which addresses have
// accounts or which guess was right.
const (
	msgMissing      = "Enter your e-mail address and password."
	msgWrong        = "Wrong e-mail address or password."
	msgTooMany      = "Too many sign-in attempts. Wait a minute, then try again."
	msgUnavailable  = "Signing in is not possible right now. Try again in a moment."
	msgLogoutFailed = "Signing out is not possible right now. Try again in a moment."
)

// page is what the sign-in template shows.
type page struct {
	Error      string
	Email      string
	SignedIn   bool // an admin's live session: offer the monitor and signing out
	Home       string
	LoginPath  string
	LogoutPath string
}

// LoginForm answers GET /ops/login: the sign-in form, or for an administrator who is
// signed in already, the way on and a sign-out button.
func (a *Auth) LoginForm() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := a.session(r)
		a.render(w, r, http.StatusOK, page{SignedIn: err == nil && sess.Role == auth.RoleAdmin})
	}
}

// Login answers POST /ops/login (a form with email and password). An administrator
// gets a new session cookie and a 303 to the monitor. Otherwise the form comes back
// with a message: 400 for a blank field; 401 for wrong credentials, and for a user who
// is not an admin, whose right password is answered exactly like a wrong one (the
// same page, after the same password check) so that the form confirms no guess; 429
// with Retry-After over the sign-in limits (the API log-in's, per address and per
// e-mail, counted together with it) or when the users service turns the attempt
// away; and 503 (or 502) when the users service or Redis fails.
func (a *Auth) Login() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := r.ParseForm(); err != nil {
			a.render(w, r, http.StatusBadRequest, page{Error: msgMissing})
			return
		}
		email := strings.TrimSpace(r.PostForm.Get("email"))
		password := r.PostForm.Get("password")
		if email == "" || password == "" {
			a.render(w, r, http.StatusBadRequest, page{Error: msgMissing, Email: email})
			return
		}

		// Counted before the password is checked, as the API's log-in is: what is
		// limited is guessing, right or wrong.
		if wait, ok := a.limiter.SignInAttempt(r, email); !ok {
			a.log.InfoContext(ctx, "ops sign-in refused: over the sign-in limits")
			a.tooMany(w, r, wait, email)
			return
		}

		token, err := a.users.Login(ctx, email, password, clientIP(r))
		switch apperr.CodeOf(err) {
		case apperr.Unauthorized, apperr.Invalid:
			// Logged (without the address, which may be someone's) so that an operator
			// can see attempts on the operations pages apart from the API's.
			a.log.InfoContext(ctx, "ops sign-in refused: wrong credentials")
			a.render(w, r, http.StatusUnauthorized, page{Error: msgWrong, Email: email})
			return
		case apperr.RateLimited:
			// users slows log-ins that keep failing, and says for how long.
			a.tooMany(w, r, a.wait(err), email)
			return
		}
		if err != nil {
			a.log.ErrorContext(ctx, "ops sign-in: the users service failed", "err", err)
			a.render(w, r, http.StatusServiceUnavailable, page{Error: msgUnavailable, Email: email})
			return
		}

		// The token is checked like any other rather than trusted because it came
		// from users: the gateway's verifier is what defines an admin here.
		p, err := a.verifier.Verify(ctx, token)
		if err != nil {
			status := http.StatusBadGateway // users issued a token the gateway cannot accept
			if apperr.CodeOf(err) == apperr.Unavailable {
				status = http.StatusServiceUnavailable // the key set cannot be fetched
			}
			a.log.ErrorContext(ctx, "ops sign-in: the access token does not verify", "err", err)
			a.render(w, r, status, page{Error: msgUnavailable, Email: email})
			return
		}
		if p.Role != auth.RoleAdmin {
			// The same answer as a wrong password: anything else would confirm that
			// the guess was right. The log says what happened.
			a.log.InfoContext(ctx, "ops sign-in refused: not an admin", "user_id", p.UserID)
			a.render(w, r, http.StatusUnauthorized, page{Error: msgWrong, Email: email})
			return
		}

		// Every sign-in gets a fresh id, so an id planted in the browser beforehand
		// (session fixation) never becomes a signed-in one; the browser's previous
		// session, if any, ends rather than lingering until it expires.
		if c, err := r.Cookie(CookieName); err == nil {
			if err := a.sessions.Delete(ctx, c.Value); err != nil {
				a.log.WarnContext(ctx, "ops sign-in: ending the previous session", "err", err)
			}
		}
		id, err := a.sessions.Create(ctx, Session{UserID: p.UserID, Role: p.Role})
		if err != nil {
			a.log.ErrorContext(ctx, "ops sign-in: creating the session", "err", err)
			a.render(w, r, http.StatusServiceUnavailable, page{Error: msgUnavailable, Email: email})
			return
		}
		http.SetCookie(w, a.cookie(r, id, int(a.sessions.TTL().Seconds())))
		a.log.InfoContext(ctx, "ops sign-in", "user_id", p.UserID)
		http.Redirect(w, r, a.home, http.StatusSeeOther)
	}
}

// Logout answers POST /ops/logout: it ends the session, deletes the cookie and sends
// the browser to the sign-in form (303). When Redis cannot be reached it answers 503
// and keeps the cookie, so that the administrator knows the session still lives.
func (a *Auth) Logout() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(CookieName); err == nil {
			if err := a.sessions.Delete(r.Context(), c.Value); err != nil {
				a.log.ErrorContext(r.Context(), "ops sign-out: ending the session", "err", err)
				a.render(w, r, http.StatusServiceUnavailable, page{Error: msgLogoutFailed, SignedIn: true})
				return
			}
		}
		http.SetCookie(w, a.cookie(r, "", -1))
		http.Redirect(w, r, LoginPath, http.StatusSeeOther)
	}
}

// tooMany answers the sign-in page with a 429 and, when known, how long to wait.
func (a *Auth) tooMany(w http.ResponseWriter, r *http.Request, wait time.Duration, email string) {
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	}
	a.render(w, r, http.StatusTooManyRequests, page{Error: msgTooMany, Email: email})
}

// render answers the sign-in page with status.
func (a *Auth) render(w http.ResponseWriter, r *http.Request, status int, p page) {
	p.Home, p.LoginPath, p.LogoutPath = a.home, LoginPath, LogoutPath
	var b bytes.Buffer
	if err := loginPage.Execute(&b, p); err != nil {
		a.log.ErrorContext(r.Context(), "rendering the sign-in page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The gateway adds nosniff, no-referrer and DENY framing to every answer
	// (httpserver.SecurityHeaders).
	h.Set("Content-Security-Policy", pageSecurityPolicy)
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
