package closedport

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestAConnectionIsRefused(t *testing.T) {
	t.Parallel()
	addr := Addr(t)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s: connected, want refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
}

func TestNoListenerCanTakeThePort(t *testing.T) {
	t.Parallel()
	addr := Addr(t)
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("listened on %s while it was reserved", addr)
	}
}

// The bug this package exists for: a closed port handed on to the next listener
// asking for :0. Ask for many and check that none is the reserved one.
func TestListenersOnAnyPortAreGivenOthers(t *testing.T) {
	t.Parallel()
	addr := Addr(t)
	for range 200 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := ln.Addr().String()
		ln.Close()
		if got == addr {
			t.Fatalf("a listener on :0 was given the reserved %s", addr)
		}
	}
}

func TestThePortIsFreedWhenTheTestEnds(t *testing.T) {
	t.Parallel()
	var addr string
	t.Run("reserve", func(t *testing.T) { addr = Addr(t) })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("after the test ended: %v", err)
	}
	ln.Close()
}
