package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// fastTransport carries the gateway's hottest calls, reads without a body to an
// instance over plain HTTP, itself: on HTTP/1.1 connections it keeps per instance,
// the calling goroutine writes the request and reads the answer. As a RoundTripper
// (under ReverseProxy, when calls are traced) it hands every other request (a body, an
// upgrade, TLS) to Go's Transport, the fallback; the direct path (direct.go) calls
// send itself, with a request head it writes.
//
// Why not Go's Transport for everything: under load half the gateway's CPU went to it
// (docs/benchmarks.md). It runs a read and a write goroutine per connection and hands
// each request and each answer between them and the caller over channels, several
// goroutine switches a call; here there are none.
//
// What the fallback gives for free and this must do alike:
//   - A kept-alive connection the instance closed while it sat idle (its idle
//     time-out, a restart) is found dead only when used. Such a call is sent again, on
//     a new connection, when not a byte of an answer came back: only methods that are
//     safe to repeat take this path, which is Transport's own rule for them. The other
//     idle connections to that instance are then dropped, since they are most likely
//     dead for the same reason.
//   - The call's context bounds it: when it ends (the time limit, the client gone),
//     the connection's deadline is put in the past, which unblocks any read or write,
//     and the connection is not used again.
//   - A connection goes back to the pool only after its answer was read to the end
//     and neither side asked to close it.
type fastTransport struct {
	fallback    http.RoundTripper
	dialer      net.Dialer
	maxIdle     int           // idle connections kept per instance
	idleTimeout time.Duration // an idle connection older than this is closed, not used

	mu     sync.Mutex
	idle   map[string][]*fastConn // by host:port, the most recently used last
	closed bool
}

func newFastTransport(fallback http.RoundTripper) *fastTransport {
	return &fastTransport{
		fallback: fallback,
		dialer:   net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		maxIdle:  128,
		// Below the services' own idle time-out (pkg/httpserver: 60 s), so that the
		// pool gives up a connection before the instance does, as a rule.
		idleTimeout: 50 * time.Second,
		idle:        make(map[string][]*fastConn),
	}
}

// fastConn is a kept-alive connection with its buffers, which are made once.
type fastConn struct {
	net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

// errBodyClosed is a read of an answer's body after its Close.
var errBodyClosed = errors.New("proxy: read of a body after its Close")

// errUpgrade refuses a switch of protocols, which only the fallback carries.
var errUpgrade = errors.New("proxy: the upstream switched protocols unasked")

// aLongTimeAgo is a deadline that has passed: setting it makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

func (t *fastTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !fastSuits(req) {
		return t.fallback.RoundTrip(req)
	}
	deadline, _ := req.Context().Deadline()
	return t.send(req.Context(), deadline, dialAddr(req.URL), req, func(bw *bufio.Writer) error { return req.Write(bw) })
}

// send makes one call to host: write puts the request on the wire (buffered), req
// tells what the answer is to (its method) and whether the connection may be kept
// after it (req.Close). The call ends by deadline (zero: none) and when ctx ends,
// whichever comes first, the answer's body included: a deadline costs less than a
// context's timer. A connection kept alive that turns out closed is replaced by a new
// one and the request written again, when no byte of an answer had come.
func (t *fastTransport) send(ctx context.Context, deadline time.Time, host string, req *http.Request, write func(*bufio.Writer) error) (*http.Response, error) {
	for {
		c, reused, err := t.conn(ctx, deadline, host)
		if err != nil {
			return nil, err
		}
		resp, nothingRead, err := t.exchange(ctx, deadline, c, host, req, write)
		if err == nil {
			return resp, nil
		}
		_ = c.Close()
		// A deadline that passed (the call's own, or the past one its context's end
		// puts) met an upstream that is slow, not a dead connection; and ctx need not
		// have ended with it, since the deadline is not the context's.
		if !reused || !nothingRead || ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
		// A connection kept alive that turned out closed: the instance never saw
		// the request, or saw it and answered nothing. Its neighbours go the same way.
		t.dropIdle(host)
	}
}

// fastSuits tells the requests this transport carries: replayable reads (see
// replayableRead) without a body, over plain HTTP.
func fastSuits(req *http.Request) bool {
	return req.URL.Scheme == "http" && (req.Body == nil || req.Body == http.NoBody) && replayableRead(req)
}

// replayableRead tells a GET, HEAD or OPTIONS asking for no protocol switch and no
// 100-continue: safe to send again, which a dead kept-alive connection may need, and
// answered in one exchange. Both the transport and the direct path carry only these.
func replayableRead(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	_, upgrade := r.Header["Upgrade"]
	_, expect := r.Header["Expect"]
	return !upgrade && !expect
}

// dialAddr is u's host:port, port 80 when u names none.
func dialAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// exchange writes a request on c and reads the answer's head. nothingRead tells, with
// an error, that not a byte of an answer had come: the case in which a reused
// connection may be tried again.
func (t *fastTransport) exchange(ctx context.Context, deadline time.Time, c *fastConn, host string, req *http.Request, write func(*bufio.Writer) error) (resp *http.Response, nothingRead bool, err error) {
	// Every call sets the deadline, a zero one too, so that a pooled connection
	// keeps none from its last call and release need not clear it.
	if err := c.SetDeadline(deadline); err != nil {
		return nil, true, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	defer func() {
		if err != nil {
			stop()
		}
	}()
	if err := write(c.bw); err != nil {
		return nil, true, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, true, err
	}
	if _, err := c.br.Peek(1); err != nil {
		return nil, true, err
	}
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return nil, false, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, false, errUpgrade
		}
		if resp.StatusCode >= 200 {
			break
		}
		// 100 Continue or 103 Early Hints: the answer proper follows.
	}
	reuse := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		t.release(c, host, stop, reuse)
		return resp, false, nil
	}
	resp.Body = &fastBody{rc: resp.Body, c: c, host: host, t: t, stop: stop, reuse: reuse}
	return resp, false, nil
}

// release ends a call on c: back to the pool when the answer was read whole, the
// connection may be kept, and the call's context had not ended (its past deadline
// would be on the connection); closed otherwise.
//
// A connection with bytes waiting past the answer's end is closed too: they can only
// be an upstream's mistake, and read as the next call's answer they would give one
// client's answer to another. (Bytes that come while it sits in the pool are not seen
// until then; Go's Transport, which reads idle connections, would notice them.)
func (t *fastTransport) release(c *fastConn, host string, stop func() bool, reuse bool) {
	if stop() && reuse && c.br.Buffered() == 0 {
		t.put(host, c)
		return
	}
	_ = c.Close()
}

// conn takes the instance's most recently used idle connection, or dials a new one.
func (t *fastTransport) conn(ctx context.Context, deadline time.Time, host string) (c *fastConn, reused bool, err error) {
	now := time.Now()
	var stale []*fastConn
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, false, errors.New("proxy: transport closed")
	}
	list := t.idle[host]
	for len(list) > 0 && c == nil {
		last := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(last.idleSince) < t.idleTimeout {
			c = last
		} else {
			stale = append(stale, last)
		}
	}
	t.idle[host] = list
	t.mu.Unlock()
	for _, s := range stale {
		_ = s.Close()
	}
	if c != nil {
		return c, true, nil
	}
	dialer := t.dialer
	dialer.Deadline = deadline
	nc, err := dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	return &fastConn{Conn: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, false, nil
}

// put keeps c for the next call to host, and closes the instance's oldest idle
// connection if it has been idle too long: conn takes the most recent one first, so
// the oldest are found here or not at all.
func (t *fastTransport) put(host string, c *fastConn) {
	now := time.Now()
	c.idleSince = now
	var stale *fastConn
	t.mu.Lock()
	list := t.idle[host]
	if t.closed || len(list) >= t.maxIdle {
		t.mu.Unlock()
		_ = c.Close()
		return
	}
	if len(list) > 0 && now.Sub(list[0].idleSince) >= t.idleTimeout {
		stale = list[0]
		list = append(list[:0], list[1:]...)
	}
	t.idle[host] = append(list, c)
	t.mu.Unlock()
	if stale != nil {
		_ = stale.Close()
	}
}

// dropIdle closes the instance's idle connections.
func (t *fastTransport) dropIdle(host string) {
	t.mu.Lock()
	list := t.idle[host]
	delete(t.idle, host)
	t.mu.Unlock()
	for _, c := range list {
		_ = c.Close()
	}
}

// CloseIdleConnections closes every idle connection, the fallback's too, and keeps no
// more: for a transport that is done with.
func (t *fastTransport) CloseIdleConnections() {
	t.mu.Lock()
	t.closed = true
	idle := t.idle
	t.idle = map[string][]*fastConn{}
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			_ = c.Close()
		}
	}
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// fastBody is an answer's body read off a pooled connection; the end of it, or its
// Close, ends the call (release).
type fastBody struct {
	rc    io.ReadCloser
	c     *fastConn
	host  string
	t     *fastTransport
	stop  func() bool
	reuse bool
	ended atomic.Bool
	whole bool // set before ended, when the body was read to its end
}

func (b *fastBody) Read(p []byte) (int, error) {
	if b.ended.Load() {
		if b.whole {
			return 0, io.EOF
		}
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.whole = true
		b.end(true)
	case err != nil:
		b.end(false)
	}
	return n, err
}

// Close before the end closes the connection: what is left of the answer is not
// worth reading to keep it.
func (b *fastBody) Close() error {
	b.end(false)
	return nil
}

func (b *fastBody) end(whole bool) {
	if b.ended.Swap(true) {
		return
	}
	b.t.release(b.c, b.host, b.stop, whole && b.reuse)
}
