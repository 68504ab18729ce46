package devstack

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// portHolds keep loopback ports for the programs that listen on them, for as long as
// a stack (or a private server) lives: while a program runs, and while it is stopped
// until it starts there again (RestartProgram, a private server's Start).
//
// Without them a stopped program's port is free, and the kernel may give it to any
// socket that asks for port 0 or connects out: another test's server, or a client.
// The restart then fails with "address already in use". (It happened in CI.)
//
// A hold is a socket bound to the port with SO_REUSEADDR that never listens. On Linux
// such a socket
//   - keeps the port from the kernel's own picks, for port 0 and for outgoing
//     connections, and from any socket that does not set SO_REUSEADDR;
//   - lets the program bind the port all the same: Go's listeners, Postgres, Redis
//     and Mailpit set SO_REUSEADDR, and the hold does not listen;
//   - refuses connections while the program is down, as a free port would.
type portHolds struct {
	mu  sync.Mutex
	fds []int
}

// hold holds port on 127.0.0.1, or a free port the kernel picks when port is 0, and
// returns it. It fails, naming what the port is for, when a socket listens there.
func (hs *portHolds) hold(port int, what string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("hold a port for %s: %w", what, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return 0, fmt.Errorf("hold a port for %s: SO_REUSEADDR: %w", what, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		syscall.Close(fd)
		if errors.Is(err, syscall.EADDRINUSE) {
			return 0, fmt.Errorf("port %d (%s) is in use: is another stack running? (%w)", port, what, err)
		}
		return 0, fmt.Errorf("hold port %d for %s: %w", port, what, err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return 0, fmt.Errorf("hold a port for %s: %w", what, err)
	}
	hs.mu.Lock()
	hs.fds = append(hs.fds, fd)
	hs.mu.Unlock()
	return sa.(*syscall.SockaddrInet4).Port, nil
}

// releaseAll gives every port back.
func (hs *portHolds) releaseAll() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, fd := range hs.fds {
		syscall.Close(fd)
	}
	hs.fds = nil
}

// held is how many ports are held.
func (hs *portHolds) held() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.fds)
}
