package fakes

import (
	"net/http"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
)

// Credentials are a client's credentials for a fake that checks none: a fixed
// string, for the tests of the saga's clients, whose subject is not authentication.
type Credentials struct{}

// Token implements downstream.Credentials.
func (Credentials) Token(string) (string, error) { return "fake-service-token", nil }

// caller is the check a fake makes, once told to (RequireOrders): what the real
// service's internal routes do, with the same verifier.
type caller struct{ v *svcauth.Verifier }

// refused answers the call as the real service would if it does not carry the orders
// service's credential for this service, and reports whether it did.
func (c caller) refused(w http.ResponseWriter, r *http.Request) bool {
	if c.v == nil {
		return false
	}
	name, err := c.v.Verify(auth.BearerToken(r))
	switch {
	case err != nil:
		problem.Write(w, r, nil, err)
	case name != "orders":
		problem.Write(w, r, nil, apperr.E(apperr.Forbidden, "the %s service may not call this route", name))
	default:
		return false
	}
	return true
}
