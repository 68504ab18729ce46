package boundport

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Either kind: a connection is refused at once, and the kernel gives the port to no
// listener asking for port 0 (the bug closedport exists for: a closed port handed on
// to the next such listener, the program under test).
func TestABoundPortRefusesAndIsGivenToNobody(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{false, true} {
		s, err := Bind(0, shared)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			c.Close()
			t.Errorf("shared %v: dial %s connected, want refused", shared, addr)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("shared %v: dial %s: %v, want connection refused", shared, addr, err)
		}
		for range 200 {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			got := ln.Addr().String()
			ln.Close()
			if got == addr {
				t.Fatalf("shared %v: a listener on :0 was given the bound %s", shared, addr)
			}
		}
	}
}

// A shared port is kept from exclusive sockets, and yet its program's own listener
// may bind it; while that listens, it cannot be held again.
func TestASharedPortIsKeptForItsProgram(t *testing.T) {
	t.Parallel()
	s, err := Bind(0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
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
