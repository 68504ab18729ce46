// Package tcpproxy is a TCP proxy for fault tests: put it between a program and a real
// server (Postgres, Redis, another program), then Cut it to make the server vanish for
// that program alone (open connections are dropped, new ones refused) and Restore it to
// bring it back, or SetDelay to make the server slow for that program alone, without
// stopping or slowing a server other tests share.
package tcpproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from its own address to a target.
type Proxy struct {
	ln   net.Listener
	addr string

	mu     sync.Mutex
	target string
	cut    bool
	delay  time.Duration
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// New listens on a free loopback port and forwards to target (host:port). The target
// need not be listening yet: each connection dials it when it is accepted.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port: point the program here instead of at the target.
func (p *Proxy) Addr() string { return p.addr }

// SetTarget points the connections accepted from now on at target: for a target
// whose address is known only once the proxy's is in use (a program pointed at
// itself through the proxy).
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// Cut drops every open connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// SetDelay makes the target slow: from now on every chunk of data the proxy forwards,
// in either direction and on open connections too, is held for d before it is passed
// on, so a request and its answer take at least 2d more. Chunks of one direction
// stay in order (a chunk waits behind the one before it). Zero (the default) forwards
// at once again; chunks already waiting still wait out the delay they were given.
// Connecting is not delayed: a client sees a server that accepts at once and then
// answers late, the way an overloaded service does.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = max(d, 0)
}

func (p *Proxy) currentDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refused := p.cut
		p.mu.Unlock()
		if refused {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	server, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	// closed ends a pipe that is waiting out a delay once the pair is torn down
	// (the other direction ended, a Cut, Close), so no goroutine outlives its pair.
	closed := make(chan struct{})
	defer close(closed)
	// When either direction ends, the deferred untracks close both connections,
	// which ends the other direction too.
	go func() { p.pipe(server, client, closed); done <- struct{}{} }()
	go func() { p.pipe(client, server, closed); done <- struct{}{} }()
	<-done
}

// pipe copies src to dst chunk by chunk, holding each chunk for the delay in force
// when it was read.
func (p *Proxy) pipe(dst, src net.Conn, closed <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := p.currentDelay(); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-closed:
					t.Stop()
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
