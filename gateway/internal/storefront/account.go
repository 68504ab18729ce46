package storefront

import (
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// accountData is the sign-up and sign-in forms' data.
type accountData struct {
	Name  string
	Email string
	Next  string // where to go after
}

// signupPage answers GET /signup.
func (s *Shop) signupPage(w http.ResponseWriter, r *http.Request) {
	v := s.view(w, r, "Create an account")
	v.Nav, v.Data = "account", accountData{Next: localPath(r.URL.Query().Get("next"))}
	s.render(w, r, http.StatusOK, "signup", v)
}

// loginPage answers GET /login.
func (s *Shop) loginPage(w http.ResponseWriter, r *http.Request) {
	v := s.view(w, r, "Sign in")
	v.Nav, v.Data = "account", accountData{Next: localPath(r.URL.Query().Get("next"))}
	s.render(w, r, http.StatusOK, "login", v)
}

// signup answers POST /signup (name, email, password, next): it creates the account
// with the API, signs the new shopper in and sends them on.
func (s *Shop) signup(w http.ResponseWriter, r *http.Request) {
	d := accountData{
		Name:  strings.TrimSpace(r.PostFormValue("name")),
		Email: strings.TrimSpace(r.PostFormValue("email")),
		Next:  localPath(r.PostFormValue("next")),
	}
	password := r.PostFormValue("password")
	err := s.api.do(r, call{Method: http.MethodPost, Path: "/api/v1/auth/register",
		Body: map[string]string{"name": d.Name, "email": d.Email, "password": password}}, nil)
	if err == nil {
		err = s.startSession(w, r, d.Email, password)
	}
	if err != nil {
		v := s.view(w, r, "Create an account")
		v.Nav, v.Data = "account", d
		status := v.fail(err)
		if apperr.CodeOf(err) == apperr.Conflict {
			v.Error = "An account with this e-mail address exists already. Sign in instead."
			v.Fields = []apperr.FieldError{{Field: "email", Message: "is taken"}}
		}
		s.render(w, r, status, "signup", v)
		return
	}
	http.Redirect(w, r, withNotice(d.Next, "signed-up"), http.StatusSeeOther)
}

// login answers POST /login (email, password, next).
func (s *Shop) login(w http.ResponseWriter, r *http.Request) {
	d := accountData{Email: strings.TrimSpace(r.PostFormValue("email")), Next: localPath(r.PostFormValue("next"))}
	err := s.startSession(w, r, d.Email, r.PostFormValue("password"))
	if err != nil {
		status, msg := explain(err)
		switch apperr.CodeOf(err) {
		case apperr.Unauthorized, apperr.Invalid:
			// One message for an unknown address and a wrong password, as the API has.
			status, msg = http.StatusUnauthorized, "Wrong e-mail address or password."
		}
		v := s.view(w, r, "Sign in")
		v.Nav, v.Data, v.Error = "account", d, msg
		s.render(w, r, status, "login", v)
		return
	}
	http.Redirect(w, r, withNotice(d.Next, "signed-in"), http.StatusSeeOther)
}

// startSession logs in with the API, learns who the tokens belong to, and gives the
// browser a new session (and a new CSRF token). A session the browser had before
// ends: every sign-in gets a fresh id, so an id planted beforehand never becomes a
// signed-in one.
func (s *Shop) startSession(w http.ResponseWriter, r *http.Request, email, password string) error {
	var t tokenResponse
	err := s.api.do(r, call{Method: http.MethodPost, Path: "/api/v1/auth/login",
		Body: map[string]string{"email": email, "password": password}}, &t)
	if err != nil {
		return err
	}
	var who me
	if err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/users/me", Token: t.AccessToken}, &who); err != nil {
		return err
	}
	uid, err := uuid.Parse(who.ID)
	if err != nil || !auth.Role(who.Role).Valid() {
		return apperr.E(apperr.BadGateway, "the users service answered an account the shop cannot read")
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		_ = s.sessions.Delete(r.Context(), c.Value)
	}
	sess, err := s.sessions.Create(r.Context(), Session{
		UserID: uid, Role: auth.Role(who.Role), Name: who.Name, Email: who.Email, Tokens: t.tokens(),
	})
	if err != nil {
		return err
	}
	s.setSessionCookie(w, r, sess.ID, int(s.sessions.ttl.Seconds()))
	newCSRFToken(w, r)
	s.log.InfoContext(r.Context(), "shop sign-in", "user_id", uid)
	return nil
}

// logout answers POST /logout: the session ends at the users service (its tokens stop
// working) and here, and the browser forgets it.
func (s *Shop) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if sess, err := s.sessions.Get(r.Context(), c.Value); err == nil {
			err := s.api.do(r, call{Method: http.MethodPost, Path: "/api/v1/auth/logout",
				Body: map[string]string{"refresh_token": sess.Tokens.Refresh}}, nil)
			if err != nil {
				// The shop's session ends anyway; the tokens lapse on their own.
				s.log.WarnContext(r.Context(), "shop sign-out: ending the session at the users service", "err", err)
			}
		}
		if err := s.sessions.Delete(r.Context(), c.Value); err != nil {
			s.failed(w, r, "Sign out", err)
			return
		}
	}
	s.setSessionCookie(w, r, "", -1)
	newCSRFToken(w, r)
	http.Redirect(w, r, "/?m=signed-out", http.StatusSeeOther)
}

// withNotice is path with ?m=notice added.
func withNotice(path, notice string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "m=" + notice
}
