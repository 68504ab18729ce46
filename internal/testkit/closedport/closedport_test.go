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

// That no listener on port 0 is given the port, the bug this package exists for, is
// boundport's test.

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
