package opsauth

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// SameOrigin refuses, with a 403 problem, a state-changing request (any method but
// GET, HEAD and OPTIONS) that a browser sent from another origin.
//
// Why: the session cookie is ambient, so the browser adds it to every request to
// /ops, including one a page on another site makes it send (cross-site request
// forgery), and the task monitor's API can delete, run and cancel tasks. SameSite=Strict
// is the first defence: current browsers leave the cookie off any request that another
// site starts. It does not cover everything: "site" means the registrable domain, so a
// sibling subdomain (say, a storefront preview on another host of the same domain) is
// same-site and gets the cookie sent; and old browsers ignore SameSite. So this checks
// the origin itself. net/http's CrossOriginProtection reads Sec-Fetch-Site (every
// current browser sends it) or else Origin, and compares the origin with the Host; when
// a browser sent neither, the Referer, if present, is compared the same way. A request
// with none of the three is not from a current browser (scripts, curl) and passes, as
// does every safe method: GETs change nothing here.
//
// It guards every /ops route, sign-in and sign-out included: a forged sign-in would
// put the victim in the attacker's session, a forged sign-out is a nuisance, and the
// check costs nothing.
func SameOrigin(log *slog.Logger) func(http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := checkOrigin(cop, r); err != nil {
				problem.Write(w, r, log, apperr.Wrap(err, apperr.Forbidden,
					"this request came from another origin; use the page it belongs to"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// checkOrigin fails when r is a state-changing request from another origin.
func checkOrigin(cop *http.CrossOriginProtection, r *http.Request) error {
	if err := cop.Check(r); err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != "" {
		return nil // decided by cop
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return nil
	}
	if u, err := url.Parse(ref); err != nil || u.Host != r.Host {
		return errors.New("the Referer is another origin")
	}
	return nil
}
