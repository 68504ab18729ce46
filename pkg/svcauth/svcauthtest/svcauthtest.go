// Package svcauthtest gives a test the service keys a stack would have: a keys
// directory made by svcauth.EnsureKeys, the variables that point a program at it, and
// service tokens to call an internal route with.
package svcauthtest

import (
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/svcauth"
)

// Keys is a keys directory holding a key for each of its services.
type Keys struct{ Dir string }

// New makes a keys directory for services, removed when the test ends.
func New(t testing.TB, services ...string) Keys {
	t.Helper()
	dir := t.TempDir()
	if _, err := svcauth.EnsureKeys(dir, services...); err != nil {
		t.Fatal(err)
	}
	return Keys{Dir: dir}
}

// Env is what service needs to call with its key (SERVICE_KEY_FILE) and to be called
// by the directory's services (SERVICE_TRUST_DIR).
func (k Keys) Env(service string) map[string]string {
	return map[string]string{
		"SERVICE_KEY_FILE":  svcauth.KeyFile(k.Dir, service),
		"SERVICE_TRUST_DIR": svcauth.TrustDir(k.Dir),
	}
}

// Token is a service token from caller for callee.
func (k Keys) Token(t testing.TB, caller, callee string) string {
	t.Helper()
	s, err := svcauth.NewSigner(caller, svcauth.KeyFile(k.Dir, caller))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(callee)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Authorization is the header pair (for programtest.Call) carrying Token.
func (k Keys) Authorization(t testing.TB, caller, callee string) []string {
	t.Helper()
	return []string{"Authorization", "Bearer " + k.Token(t, caller, callee)}
}
