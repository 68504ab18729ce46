package devstack

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/bazaar-shop/bazaar/internal/boundport"
)

// portHolds keep loopback ports for the programs that listen on them, for as long as
// a stack (or a private server) lives: while a program runs, and while it is stopped
// until it starts there again (RestartProgram, a private server's Start).
//
// Without them a stopped program's port is free, and the kernel may give it to any
// socket that asks for port 0 or connects out: another test's server, or a client.
// The restart then fails with "address already in use". (It happened in CI.)
//
// A hold is a shared boundport.Socket: the program still binds the port, nobody else
// is given it, and a connection to it is refused while the program is down, as to a
// free port.
type portHolds struct {
	mu    sync.Mutex
	holds []*boundport.Socket
}

// hold holds port on 127.0.0.1, or a free port the kernel picks when port is 0, and
// returns it. It fails, naming what the port is for, when a socket listens there.
func (hs *portHolds) hold(port int, what string) (int, error) {
	s, err := boundport.Bind(port, true)
	if errors.Is(err, syscall.EADDRINUSE) {
		return 0, fmt.Errorf("port %d (%s) is in use: is another stack running? (%w)", port, what, err)
	}
	if err != nil {
		return 0, fmt.Errorf("hold a port for %s: %w", what, err)
	}
	hs.mu.Lock()
	hs.holds = append(hs.holds, s)
	hs.mu.Unlock()
	return s.Port, nil
}

// releaseAll gives every port back.
func (hs *portHolds) releaseAll() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, s := range hs.holds {
		s.Close()
	}
	hs.holds = nil
}

// held is how many ports are held.
func (hs *portHolds) held() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.holds)
}
