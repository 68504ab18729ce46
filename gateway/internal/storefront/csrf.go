package storefront

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"

	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
)

// Every form that changes something carries a CSRF token, and the shop refuses a
// post without the right one. The token is a random value kept in a cookie of its own
// and repeated in a hidden field of every form (the double-submit pattern): another
// site can make the browser send the cookie, but cannot read it to put it in the
// form. Two more walls stand in front: the session cookie is SameSite=Lax, so a
// cross-site post does not carry it, and every state-changing request must come from
// this origin (opsauth.SameOrigin, Fetch metadata and Origin). The token is renewed
// at each sign-in and sign-out, so one seen before cannot be used after.
const (
	csrfCookie = "bazaar_csrf"
	csrfField  = "csrf_token"
)

// csrfToken is the request's token, making one (and setting its cookie on w) when
// the browser has none yet.
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	return newCSRFToken(w, r)
}

// newCSRFToken replaces the browser's token.
func newCSRFToken(w http.ResponseWriter, r *http.Request) string {
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	v := base64.RawURLEncoding.EncodeToString(raw[:])
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: v, Path: "/", HttpOnly: true,
		Secure: opsauth.OverTLS(r), SameSite: http.SameSiteStrictMode,
	})
	// The page being rendered reads the token from the request's cookie.
	setCookieValue(r, csrfCookie, v)
	return v
}

// setCookieValue makes r's cookie name read value, so that what is rendered after a
// new cookie is set uses it.
func setCookieValue(r *http.Request, name, value string) {
	var kept []string
	for _, c := range r.Cookies() {
		if c.Name != name {
			kept = append(kept, c.Name+"="+c.Value)
		}
	}
	kept = append(kept, name+"="+value)
	r.Header.Del("Cookie")
	for _, c := range kept {
		r.Header.Add("Cookie", c)
	}
}

// validCSRF reports whether the posted form carries the browser's token.
func validCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	got := r.PostFormValue(csrfField)
	return subtle.ConstantTimeCompare([]byte(got), []byte(c.Value)) == 1
}
