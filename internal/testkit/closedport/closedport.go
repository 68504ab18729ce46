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
	"fmt"
	"net"
	"syscall"
	"testing"
)

// Addr returns host:port on 127.0.0.1 that refuses connections until t ends.
func Addr(t testing.TB) string {
	t.Helper()
	// No SO_REUSEADDR, which net.Listen would set: with it another socket could bind
	// the same port and listen on it.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("closedport: socket: %v", err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("closedport: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("closedport: getsockname: %v", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		t.Fatalf("closedport: bound to %T, want an IPv4 address", sa)
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(in4.Port))
}

// URL is Addr as an http:// URL.
func URL(t testing.TB) string {
	t.Helper()
	return "http://" + Addr(t)
}
