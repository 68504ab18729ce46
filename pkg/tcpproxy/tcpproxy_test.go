package tcpproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *tcpproxy.Proxy {
	t.Helper()
	p, err := tcpproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type conn struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return conn{c, bufio.NewReader(c)}
}

// roundTrip sends a line and reads the echo, returning how long that took.
func (c conn) roundTrip(t *testing.T, line string) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got != line+"\n" {
		t.Fatalf("echo = %q, want %q", got, line)
	}
	return time.Since(start)
}

func TestForwardsCutsAndRestores(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	c.roundTrip(t, "hello")

	p.Cut()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Fatal("an open connection survived Cut")
	}
	// New connections are accepted and closed at once.
	refused := dial(t, p.Addr())
	_ = refused.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := refused.r.ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("a connection made while cut: read err %v, want it closed", err)
	}

	p.Restore()
	dial(t, p.Addr()).roundTrip(t, "again")
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

func TestSetDelaySlowsEveryChunkUntilCleared(t *testing.T) {
	t.Parallel()
	const d = 150 * time.Millisecond
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	if took := c.roundTrip(t, "warm"); took >= d {
		t.Fatalf("an undelayed round trip took %s", took)
	}

	// It applies to a connection already open, in both directions.
	p.SetDelay(d)
	if took := c.roundTrip(t, "slow"); took < 2*d {
		t.Errorf("a delayed round trip took %s, want at least %s (the request and the answer each wait)", took, 2*d)
	}
	// And to new connections.
	if took := dial(t, p.Addr()).roundTrip(t, "slow too"); took < 2*d {
		t.Errorf("a delayed round trip on a new connection took %s, want at least %s", took, 2*d)
	}

	p.SetDelay(0)
	if took := c.roundTrip(t, "fast"); took >= d {
		t.Errorf("after SetDelay(0) a round trip took %s, want well under %s", took, d)
	}
}

func TestCutAndCloseDoNotWaitOutADelay(t *testing.T) {
	t.Parallel()
	const d = time.Hour
	p, err := tcpproxy.New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	c.roundTrip(t, "warm")
	p.SetDelay(d)
	if _, err := io.WriteString(c, "stuck\n"); err != nil {
		t.Fatal(err)
	}

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a delayed chunk")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Fatal("the delayed chunk arrived after Close")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the client's connection stayed open after Close")
	}
}

func TestSetTargetMovesNewConnections(t *testing.T) {
	t.Parallel()
	// First a target that refuses: a connection still sent there gets no echo.
	p, err := tcpproxy.New(closedport.Addr(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.SetTarget(echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "ping\n" {
		t.Fatalf("through the proxy after SetTarget: %q, %v; want the echo", got, err)
	}
}
