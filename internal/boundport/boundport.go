// Package boundport binds a loopback port without listening on it. The port is then
// taken, and a connection to it is refused at once, as to a program that is down.
//
// Two kinds, by what else may bind the port:
//   - exclusive: nothing else. A test's "service that is down" (testkit/closedport)
//     stays down, and nobody can be given its port.
//   - shared (SO_REUSEADDR): on Linux, a program that also sets SO_REUSEADDR (Go's
//     listeners, Postgres, Redis and Mailpit all do) may bind the port and listen,
//     while the kernel still gives it to no socket that asks for port 0 or connects
//     out. devstack holds its programs' ports so, across their restarts.
package boundport

import (
	"errors"
	"fmt"
	"syscall"
)

// Socket is a bound loopback port.
type Socket struct {
	fd   int
	Port int
}

// Bind binds port on 127.0.0.1, or a free port the kernel picks when port is 0, and
// returns it; shared sets SO_REUSEADDR. An error wraps syscall.EADDRINUSE when the
// port cannot be had (for a shared one: something listens there).
func Bind(port int, shared bool) (*Socket, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	s := &Socket{fd: fd}
	if shared {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			s.Close()
			return nil, fmt.Errorf("SO_REUSEADDR: %w", err)
		}
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		s.Close()
		return nil, fmt.Errorf("bind 127.0.0.1:%d: %w", port, err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		s.Close()
		return nil, errors.New("bound to a non-IPv4 address")
	}
	s.Port = in4.Port
	return s, nil
}

// Close gives the port back.
func (s *Socket) Close() error { return syscall.Close(s.fd) }
