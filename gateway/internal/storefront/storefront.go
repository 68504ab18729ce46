// Package storefront is the shop a person sees: pages served by the gateway at /,
// rendered on the server with html/template from what the public API answers.
//
// Every page works without JavaScript: links and forms that post, answered with a
// redirect (post/redirect/get) or the same page with a message. One small script
// (static/shop.js) adds what cannot be done without it, the order status changing as
// it happens, from the API's server-sent events. docs/architecture.md ("The
// storefront") says why it is built this way and not as a single-page app.
//
// The shop is a client of the public API like any other (api.go): it holds no
// data of its own but the browser's session (session.go), in which the gateway keeps
// the tokens the users service issued, so that the browser holds only an HttpOnly
// cookie. The cart lives in a cookie (cart.go), and every form that changes something
// carries a CSRF token (csrf.go).
package storefront

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// sessionCookie holds the browser's session id.
const sessionCookie = "bazaar_session"

// refreshAhead is how long before its access token expires a session's tokens are
// refreshed, so that a page's calls never carry a token about to lapse.
const refreshAhead = 30 * time.Second

// Links are where the admin pages send an administrator beyond the shop.
type Links struct {
	TaskMonitor string // the task monitor, e.g. /ops/tasks/
	Mailpit     string // the mail catcher's web page (MAILPIT_URL); "" when there is none
	// Trace is a trace's page in a trace viewer with {trace_id} in it
	// (TRACE_URL_TEMPLATE), e.g. http://localhost:16686/trace/{trace_id}; "" when
	// no viewer runs.
	Trace string
}

// Options are what the shop needs.
type Options struct {
	Log      *slog.Logger
	Sessions *Sessions
	Links    Links
}

// Shop serves the storefront's pages.
type Shop struct {
	log      *slog.Logger
	sessions *Sessions
	links    Links
	stories  Stories
	api      api
	pages    *pages
}

// New is the storefront. Its pages call the API through the handler they are
// mounted on (Mount).
func New(o Options) (*Shop, error) {
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	return &Shop{log: o.Log, sessions: o.Sessions, links: o.Links, pages: p}, nil
}

// Mount adds every page of the shop to r, whose handler (api) answers the public API
// the pages call, and stories tells orders' stories from that same API. The pages
// are answered with their own Content-Security-Policy: scripts, styles and images
// from the gateway only, nothing inline, no framing.
func (s *Shop) Mount(r chi.Router, api http.Handler, stories Stories) {
	s.api.client.Handler, s.stories = api, stories
	r.Group(func(r chi.Router) {
		// Forms that change something must come from this origin (Fetch metadata,
		// Origin) and carry the browser's CSRF token.
		r.Use(pagePolicy, opsauth.SameOrigin(s.log), s.checkForms, rememberSession)

		// The shop.
		r.Get("/", s.catalogue)
		r.Get("/products/{id}", s.product)
		r.Get("/cart", s.cartPage)
		r.Post("/cart", s.addToCart)
		r.Post("/cart/update", s.updateCart)
		r.Get("/checkout", s.checkoutPage)
		r.Post("/checkout", s.checkout)

		// The shopper's account.
		r.Get("/signup", s.signupPage)
		r.Post("/signup", s.signup)
		r.Get("/login", s.loginPage)
		r.Post("/login", s.login)
		r.Post("/logout", s.logout)
		r.Get("/orders", s.orders)
		r.Get("/orders/{id}", s.order)
		r.Post("/orders/{id}/cancel", s.cancelOrder)
		r.Get("/orders/{id}/live", s.orderLive)
		r.Get("/inbox", s.inbox)

		// Administration.
		r.Get("/admin", s.adminHome)
		r.Get("/admin/products", s.adminProducts)
		r.Post("/admin/products", s.adminCreateProduct)
		r.Get("/admin/products/{id}", s.adminProduct)
		r.Post("/admin/products/{id}", s.adminUpdateProduct)
		r.Get("/admin/sagas", s.adminSagas)
		r.Get("/admin/orders/{id}", s.adminOrder)
	})
	r.Get("/static/*", s.static)
}

// pagePolicy is the pages' Content-Security-Policy.
func pagePolicy(next http.Handler) http.Handler {
	const policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", policy)
		next.ServeHTTP(w, r)
	})
}

// checkForms refuses a post that does not carry the browser's CSRF token (csrf.go),
// before any handler sees it.
func (s *Shop) checkForms(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !validCSRF(r) {
			s.log.InfoContext(r.Context(), "shop form refused: no valid CSRF token", "path", r.URL.Path)
			v := s.view(w, r, "Form expired")
			v.Error = "This form has expired or did not come from this shop. Go back, reload the page and try again."
			s.render(w, r, http.StatusForbidden, "message", v)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sessionMemo is a request's session once read: a page that needs one asks signedIn,
// then view asks again, and Redis need answer once.
type sessionMemo struct {
	read bool
	sess *Session
	err  error
}

type sessionMemoKey struct{}

// rememberSession gives each page request a sessionMemo.
func rememberSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionMemoKey{}, &sessionMemo{})))
	})
}

// session is the browser's live session, its tokens fresh: errNoSession when it is
// not signed in (or its session has ended), apperr.Unavailable when Redis or the
// users service cannot be reached to tell. Within a page request it is read once
// (rememberSession).
func (s *Shop) session(r *http.Request) (*Session, error) {
	m, _ := r.Context().Value(sessionMemoKey{}).(*sessionMemo)
	if m != nil && m.read {
		return m.sess, m.err
	}
	sess, err := s.readSession(r)
	if m != nil {
		m.read, m.sess, m.err = true, sess, err
	}
	return sess, err
}

// readSession is session without the memo.
func (s *Shop) readSession(r *http.Request) (*Session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errNoSession
	}
	sess, err := s.sessions.Get(r.Context(), c.Value)
	if err != nil {
		return nil, err
	}
	if time.Until(sess.Tokens.AccessExpiry) > refreshAhead {
		return &sess, nil
	}
	return s.refresh(r, sess)
}

// refresh renews the session's tokens with its refresh token, one request at a time
// (Sessions.Lock): the others wait for the new tokens rather than spending the
// refresh token again, which the users service would take for theft and answer by
// ending the session.
func (s *Shop) refresh(r *http.Request, sess Session) (*Session, error) {
	ctx := r.Context()
	const hold, wait = 10 * time.Second, 5 * time.Second
	deadline := time.Now().Add(wait)
	for {
		got, err := s.sessions.Lock(ctx, sess.ID, hold)
		if err != nil {
			return nil, err
		}
		if got {
			break
		}
		// Another request is refreshing: wait for its tokens.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		cur, err := s.sessions.Get(ctx, sess.ID)
		if err != nil {
			return nil, err
		}
		if cur.Tokens.Access != sess.Tokens.Access {
			return &cur, nil
		}
		if time.Now().After(deadline) {
			return nil, apperr.E(apperr.Unavailable, "signing you in again took too long")
		}
	}
	defer s.sessions.Unlock(context.WithoutCancel(ctx), sess.ID)
	// Read again under the lock: another request may have refreshed just before.
	cur, err := s.sessions.Get(ctx, sess.ID)
	if err != nil {
		return nil, err
	}
	if cur.Tokens.Access != sess.Tokens.Access {
		return &cur, nil
	}
	var t tokenResponse
	err = s.api.do(r, call{Method: http.MethodPost, Path: "/api/v1/auth/refresh",
		Body: map[string]string{"refresh_token": cur.Tokens.Refresh}}, &t)
	if apperr.CodeOf(err) == apperr.Unauthorized {
		// The users service ended the session (signed out elsewhere, too old).
		_ = s.sessions.Delete(ctx, sess.ID)
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	cur.Tokens = t.tokens()
	if err := s.sessions.SetTokens(ctx, cur.ID, cur.Tokens); err != nil {
		return nil, err
	}
	return &cur, nil
}

// signedIn is the browser's session for a page that needs one. Without one the
// browser is sent to the sign-in page, to come back here after; when the session
// cannot be read, the page says so. Either way it reports false and has answered.
func (s *Shop) signedIn(w http.ResponseWriter, r *http.Request) (*Session, bool) {
	sess, err := s.session(r)
	if errors.Is(err, errNoSession) {
		if _, cerr := r.Cookie(sessionCookie); cerr == nil {
			s.setSessionCookie(w, r, "", -1)
		}
		next := r.URL.Path
		if r.Method != http.MethodGet {
			next = "/"
		}
		http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
		return nil, false
	}
	if err != nil {
		s.failed(w, r, "Sign in", err)
		return nil, false
	}
	return sess, true
}

// adminOnly is signedIn for the admin pages: anyone else gets a 403 page.
func (s *Shop) adminOnly(w http.ResponseWriter, r *http.Request) (*Session, bool) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return nil, false
	}
	if sess.Role != auth.RoleAdmin {
		v := s.view(w, r, "Not allowed")
		v.Session = sess
		v.Error = "This page is for administrators. You are signed in as a customer."
		s.render(w, r, http.StatusForbidden, "message", v)
		return nil, false
	}
	return sess, true
}

// setSessionCookie sets (or, with maxAge < 0, deletes) the session cookie.
func (s *Shop) setSessionCookie(w http.ResponseWriter, r *http.Request, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", MaxAge: maxAge,
		HttpOnly: true, // no script, and so no injected script, reads it
		Secure:   opsauth.OverTLS(r),
		// Lax, not Strict: a link from the order's e-mail opens the order signed in.
		// Cross-site posts still go without it, and forms need the CSRF token too.
		SameSite: http.SameSiteLaxMode,
	})
}

// localPath is next when it is a path on this site, else "/": the sign-in page's
// next parameter must not send anyone elsewhere.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}
