package boundport

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A shared port: refused while nobody listens, kept from listeners on port 0 and from
// exclusive sockets, and yet the program's own listener may bind it. (closedport's
// tests show the exclusive kind.)
func TestASharedPortIsKeptForItsProgramAlone(t *testing.T) {
	t.Parallel()
	s, err := Bind(0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))

	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("dial %s: connected, want refused", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
	for range 200 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := ln.Addr().String()
		ln.Close()
		if got == addr {
			t.Fatalf("a listener on :0 was given the held %s", addr)
		}
	}
	if other, err := Bind(s.Port, false); err == nil {
		other.Close()
		t.Errorf("an exclusive socket could bind the held %s", addr)
	}

	ln, err := net.Listen("tcp", addr) // the program, which sets SO_REUSEADDR
	if err != nil {
		t.Fatalf("the program could not listen on its held port: %v", err)
	}
	defer ln.Close()
	if _, err := Bind(s.Port, true); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("holding %s while a program listens there: %v; want EADDRINUSE", addr, err)
	}
}
