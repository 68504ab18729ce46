// Package closedport gives a test a loopback address that refuses connections for as
// long as the test runs.
//
// The usual trick, listening on :0 and closing at once, hands the port back to the
// kernel, which may give it to the next listener that asks for :0: the program under
// test itself, whose "unreachable upstream" then turns out to be itself. (It happened:
// a gateway test's users service was the gateway.) A socket that is bound but never
// listens keeps the port out of everyone's hands, while a connection to it is still
// refused at once, as with a service that is down.
package closedport

import (
	"net"
	"strconv"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/boundport"
)

// Addr returns host:port on 127.0.0.1 that refuses connections until t ends.
func Addr(t testing.TB) string {
	t.Helper()
	// Exclusive, not shared: no other socket may bind the port and listen on it.
	s, err := boundport.Bind(0, false)
	if err != nil {
		t.Fatalf("closedport: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// URL is Addr as an http:// URL.
func URL(t testing.TB) string {
	t.Helper()
	return "http://" + Addr(t)
}
