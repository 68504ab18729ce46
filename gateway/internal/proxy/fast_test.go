package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests drive fastTransport on its own, against real TCP servers on the
// loopback: httptest servers whose connections are counted where Go's server does
// what is wanted, and hand-written HTTP where it would not (answers it never gives,
// connections kept open after saying they would close, answers cut short).

// patience bounds every wait for something that should happen at once: long enough
// for a loaded machine under -race, short enough that a hang fails the test.
const patience = 10 * time.Second

// countingFallback stands for Go's Transport behind fastTransport. With next nil it
// refuses every request, which makes a test that means to exercise fastTransport fail
// loudly if the request went elsewhere.
type countingFallback struct {
	next       http.RoundTripper
	calls      atomic.Int32
	idleClosed atomic.Int32
}

func (f *countingFallback) RoundTrip(req *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	if f.next == nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("test: %s %s went to the fallback", req.Method, req.URL)
	}
	return f.next.RoundTrip(req)
}

func (f *countingFallback) CloseIdleConnections() {
	f.idleClosed.Add(1)
	if ci, ok := f.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// newTestFast is a fastTransport whose fallback refuses everything, closed when the
// test ends so that no connection of it outlives the test.
func newTestFast(t *testing.T) (*fastTransport, *countingFallback) {
	t.Helper()
	fb := &countingFallback{}
	ft := newFastTransport(fb)
	t.Cleanup(ft.CloseIdleConnections)
	return ft, fb
}

// fastRequest is a request bound by patience, so that a transport that hangs fails
// the test instead of stalling it.
func fastRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// roundTrip makes req through rt and reads the answer to its end, as ReverseProxy
// does; any error fails the test.
func roundTrip(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

// fetch is roundTrip of a fresh request, for the status and the body.
func fetch(t *testing.T, rt http.RoundTripper, method, url string) (int, string) {
	t.Helper()
	resp, body := roundTrip(t, rt, fastRequest(t, method, url))
	return resp.StatusCode, body
}

// fetchOK GETs url through rt, and fails the test (saying what it was) unless the
// answer is 200 ok.
func fetchOK(t *testing.T, rt http.RoundTripper, url, what string) {
	t.Helper()
	status, body := fetch(t, rt, http.MethodGet, url)
	if status != http.StatusOK {
		t.Fatalf("%s: %d %q; want 200", what, status, body)
	}
	if body != "ok" {
		t.Fatalf("%s: body %q; want ok", what, body)
	}
}

// eventually polls cond until it holds, failing the test after patience.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not so after %s: %s", patience, what)
		}
	}
}

// countedUpstream is an httptest server that counts the connections it accepted
// and those that have ended.
type countedUpstream struct {
	*httptest.Server
	opened, closed atomic.Int32
}

// newCountedUpstream serves h; configure, when not nil, adjusts the server first.
func newCountedUpstream(t *testing.T, h http.HandlerFunc, configure func(*http.Server)) *countedUpstream {
	t.Helper()
	u := &countedUpstream{Server: httptest.NewUnstartedServer(h)}
	if configure != nil {
		configure(u.Config)
	}
	// Go's server reports StateNew before it reads a byte of the connection, so by
	// the time an answer has come back its connection has been counted.
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.closed.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// releaseBeforeClose closes release when the test ends, before the servers made so
// far are closed: handlers that wait also wait on it, so that a transport that fails
// to hang up cannot make the test hang in the server's Close.
func releaseBeforeClose(t *testing.T, release chan struct{}) {
	t.Cleanup(func() { close(release) })
}

// rawUpstream is a TCP server that speaks HTTP/1.1 by hand. serve handles each
// connection it accepts, numbered from 1 in the order accepted; the connection is
// closed when serve returns, and when the test ends.
type rawUpstream struct {
	url      string
	accepted atomic.Int32
}

func newRawUpstream(t *testing.T, serve func(n int32, c net.Conn, br *bufio.Reader)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{url: "http://" + ln.Addr().String()}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		done  bool
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := u.accepted.Add(1)
			mu.Lock()
			if done {
				mu.Unlock()
				_ = c.Close()
				return
			}
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(n, c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		done = true
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return u
}

// readRequest reads the next request on a raw connection, body and all; false when
// the client closed the connection (or the test ended).
func readRequest(br *bufio.Reader) (*http.Request, bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	_, _ = io.Copy(io.Discard, req.Body)
	return req, true
}

// hangUps records the raw connections, by number, that the client closed.
type hangUps struct{ m sync.Map }

func (h *hangUps) mark(n int32)     { h.m.Store(n, true) }
func (h *hangUps) has(n int32) bool { _, ok := h.m.Load(n); return ok }

// connAnswer is a 200 whose body names the connection it came on.
func connAnswer(n int32, extraHeaders string) string {
	body := fmt.Sprintf("conn %d", n)
	return fmt.Sprintf("HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s", extraHeaders, len(body), body)
}

// waitFor receives from ch within patience.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("not within %s: %s", patience, what)
		var zero T
		return zero
	}
}

func TestSequentialGetsToOneUpstreamShareOneConnection(t *testing.T) {
	t.Parallel()
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("chunked") {
			// A flush before the end makes Go's server send the body chunked, the
			// other framing a connection must be read to the end of to be kept.
			_, _ = io.WriteString(w, "chunked ")
			_ = http.NewResponseController(w).Flush()
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}, nil)
	ft, _ := newTestFast(t)

	for i := range 50 {
		path := fmt.Sprintf("/n/%d", i)
		url, want := up.URL+path, path
		if i%2 == 1 {
			url, want = url+"?chunked", "chunked "+path
		}
		if status, body := fetch(t, ft, http.MethodGet, url); status != http.StatusOK || body != want {
			t.Fatalf("GET %s: %d %q, want 200 %q", url, status, body, want)
		}
	}
	if n := up.opened.Load(); n != 1 {
		t.Errorf("50 GETs one after another opened %d connections; want 1", n)
	}
}

// The upstream's idle time-out closed the kept-alive connection: the next GET meets
// a dead connection and must succeed all the same, on a new one, the upstream seeing
// it once.
func TestAGetOnAnIdleConnectionTheUpstreamClosedIsSentAgainOnANewOne(t *testing.T) {
	t.Parallel()
	var served atomic.Int32
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, "ok")
	}, func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond })
	ft, _ := newTestFast(t)

	fetchOK(t, ft, up.URL, "first GET")
	eventually(t, "the upstream closed the idle connection", func() bool { return up.closed.Load() == 1 })
	fetchOK(t, ft, up.URL, "GET after the upstream closed the connection")
	if n := up.opened.Load(); n != 2 {
		t.Errorf("%d connections opened; want 2, the second for the retry", n)
	}
	if n := served.Load(); n != 2 {
		t.Errorf("the upstream served %d requests for 2 GETs", n)
	}
}

// When a reused connection turns out dead, the pool's other idle connections to that
// instance are dropped too, and the retry goes to a new connection rather than to one
// of them. Here only connection 1 dies (it answers once and closes); connection 2 is
// alive, so a retry on it would be seen.
func TestADeadReusedConnectionTakesTheOtherIdleOnesWithIt(t *testing.T) {
	t.Parallel()
	var hungUp hangUps
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			if _, ok := readRequest(br); !ok {
				hungUp.mark(n)
				return
			}
			if _, err := io.WriteString(c, connAnswer(n, "")); err != nil {
				return
			}
			if n == 1 {
				return // closed, as an idle time-out would, once the answer is out
			}
		}
	})
	ft, _ := newTestFast(t)

	// Connection 1 busy with an unread answer makes the second GET open connection 2;
	// reading the first answer last puts connection 1 on top of the pool.
	first, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.url))
	if err != nil {
		t.Fatal(err)
	}
	if _, body := roundTrip(t, ft, fastRequest(t, http.MethodGet, up.url)); body != "conn 2" {
		t.Fatalf("second GET answered by %q; want conn 2", body)
	}
	if body, err := io.ReadAll(first.Body); err != nil || string(body) != "conn 1" {
		t.Fatalf("first GET's body: %q, %v; want conn 1", body, err)
	}
	_ = first.Body.Close()

	if _, body := roundTrip(t, ft, fastRequest(t, http.MethodGet, up.url)); body != "conn 3" {
		t.Errorf("the GET after connection 1 died was answered by %q; want a new connection, conn 3", body)
	}
	eventually(t, "the client closed the idle connection 2", func() bool { return hungUp.has(2) })
}

// The retry is for a connection that was kept alive and may have died idle. A new
// connection that fails failed for another reason (the instance is dying, overloaded,
// not HTTP), and sending again would only double the load: the error goes back, after
// exactly one connection. The same holds for the retry's own connection.
func TestAGetOnANewConnectionIsNotSentAgain(t *testing.T) {
	t.Parallel()
	ft, _ := newTestFast(t)

	t.Run("the first call", func(t *testing.T) {
		t.Parallel()
		up := newRawUpstream(t, func(int32, net.Conn, *bufio.Reader) {}) // accepts and hangs up
		if resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.url)); err == nil {
			resp.Body.Close()
			t.Fatalf("got %d from an upstream that hangs up; want an error", resp.StatusCode)
		}
		// The upstream accepted every connection of the call before the call could
		// fail on it, so the count is final.
		if n := up.accepted.Load(); n != 1 {
			t.Errorf("the call opened %d connections; want 1", n)
		}
	})
	t.Run("the retry", func(t *testing.T) {
		t.Parallel()
		up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
			if n == 1 { // answers once, then closes; every later connection hangs up at once
				if _, ok := readRequest(br); ok {
					_, _ = io.WriteString(c, connAnswer(n, ""))
				}
			}
		})
		if _, body := roundTrip(t, ft, fastRequest(t, http.MethodGet, up.url)); body != "conn 1" {
			t.Fatalf("first GET: %q", body)
		}
		if resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.url)); err == nil {
			resp.Body.Close()
			t.Fatalf("got %d; want an error when the retry fails too", resp.StatusCode)
		}
		if n := up.accepted.Load(); n != 2 {
			t.Errorf("%d connections opened; want 2: the first, and the one retry", n)
		}
	})
}

// Once a byte of an answer has come, the upstream has seen the request: a connection
// that breaks then is an error, even a reused one.
func TestAGetWhoseAnswerBrokeOffIsNotSentAgain(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		if _, ok := readRequest(br); !ok {
			return
		}
		_, _ = io.WriteString(c, connAnswer(n, ""))
		if _, ok := readRequest(br); !ok {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n") // and no more
	})
	ft, _ := newTestFast(t)

	if _, body := roundTrip(t, ft, fastRequest(t, http.MethodGet, up.url)); body != "conn 1" {
		t.Fatalf("first GET: %q", body)
	}
	// A retry would be answered in full on connection 2.
	if resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.url)); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("got %d %q; want the broken answer's error", resp.StatusCode, body)
	}
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("%d connections opened; want 1, no retry", n)
	}
}

// Either side asking to close: the connection is not pooled. The upstream here says
// so but keeps the connection open and would answer on it again, so that reusing it
// would be seen (a closed one would only be retried on a new connection).
func TestAConnectionEitherSideAskedToCloseIsNotReused(t *testing.T) {
	t.Parallel()
	ft, _ := newTestFast(t)
	for _, tc := range []struct {
		name         string
		answer       func(n int32) string
		requestClose bool
	}{
		{"answer with Connection: close", func(n int32) string { return connAnswer(n, "Connection: close\r\n") }, false},
		{"HTTP/1.0 answer", func(n int32) string {
			return strings.Replace(connAnswer(n, ""), "HTTP/1.1", "HTTP/1.0", 1)
		}, false},
		{"request with Connection: close", func(n int32) string { return connAnswer(n, "") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var hungUp hangUps
			up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
				for {
					if _, ok := readRequest(br); !ok {
						hungUp.mark(n)
						return
					}
					if _, err := io.WriteString(c, tc.answer(n)); err != nil {
						return
					}
				}
			})
			for i := int32(1); i <= 2; i++ {
				req := fastRequest(t, http.MethodGet, up.url)
				req.Close = tc.requestClose
				if _, body := roundTrip(t, ft, req); body != fmt.Sprintf("conn %d", i) {
					t.Fatalf("GET %d answered by %q; want conn %d", i, body, i)
				}
			}
			eventually(t, "the client closed connection 1", func() bool { return hungUp.has(1) })
		})
	}
}

// A body closed before its end: what is left is not read (the upstream here never
// sends it, so reading it would hang) and the connection is closed, not pooled, where
// the next request would read the rest as its answer.
func TestABodyClosedBeforeItsEndClosesTheConnection(t *testing.T) {
	t.Parallel()
	var hungUp hangUps
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		for {
			req, ok := readRequest(br)
			if !ok {
				hungUp.mark(n)
				return
			}
			answer := connAnswer(n, "")
			if req.URL.Path == "/big" {
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + strings.Repeat("x", 1024)
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	ft, _ := newTestFast(t)

	resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.url+"/big"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- resp.Body.Close() }()
	waitFor(t, closed, "Close of a body the upstream never finishes returned")

	eventually(t, "the client closed connection 1", func() bool { return hungUp.has(1) })
	if _, body := roundTrip(t, ft, fastRequest(t, http.MethodGet, up.url)); body != "conn 2" {
		t.Errorf("the next GET was answered by %q; want a new connection, conn 2", body)
	}
}

// The call's context ending while the upstream has not answered ends the call at
// once, and the connection with it: an answer arriving later must not be read as the
// next request's. The reused connection here is not retried either: the context, not
// the connection, ended the call.
func TestAContextEndingBeforeTheAnswerEndsTheCallAndItsConnection(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			select { // answers only when the client has gone
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}, nil)
	releaseBeforeClose(t, release)
	ft, _ := newTestFast(t)

	t.Run("cancelled", func(t *testing.T) {
		fetch(t, ft, http.MethodGet, up.URL) // a kept-alive connection for /slow to reuse
		opened := up.opened.Load()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, up.URL+"/slow", nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := ft.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		waitFor(t, entered, "the upstream got the request")
		cancel()
		if err := waitFor(t, errc, "RoundTrip returned after its context was cancelled"); err == nil {
			t.Fatal("RoundTrip succeeded; want an error")
		}
		fetchOK(t, ft, up.URL, "GET after the cancelled call")
		if n := up.opened.Load() - opened; n != 1 {
			t.Errorf("%d connections opened after the cancelled call; want 1, for the GET after it", n)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		fetch(t, ft, http.MethodGet, up.URL)
		opened := up.opened.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, up.URL+"/slow", nil)
		start := time.Now()
		resp, err := ft.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatal("RoundTrip succeeded; want an error")
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("RoundTrip returned after %s; its deadline was 100ms", took)
		}
		fetchOK(t, ft, up.URL, "GET after the timed-out call")
		if n := up.opened.Load() - opened; n != 1 {
			t.Errorf("%d connections opened after the timed-out call; want 1, for the GET after it", n)
		}
	})
	eventually(t, "the upstream saw both abandoned connections closed", func() bool { return up.closed.Load() >= 2 })
}

// The context ending in the middle of a body (the upstream sent half and stalled)
// makes the blocked Read return an error at once, and the connection is not reused.
func TestAContextEndingInTheMiddleOfABodyFailsTheRead(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stall" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "hello")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}, nil)
	releaseBeforeClose(t, release)
	ft, _ := newTestFast(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, up.URL+"/stall", nil)
	resp, err := ft.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	half := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, half); err != nil {
		t.Fatalf("the first half: %q, %v", half, err)
	}
	if string(half) != "hello" {
		t.Fatalf("the first half: %q; want hello", half)
	}
	type result struct {
		n   int
		err error
	}
	read := make(chan result, 1)
	go func() {
		n, err := resp.Body.Read(make([]byte, 5))
		read <- result{n, err}
	}()
	cancel()
	if r := waitFor(t, read, "the Read blocked on a stalled body returned after cancel"); r.err == nil {
		t.Fatalf("Read got %d bytes and no error; want an error", r.n)
	}
	resp.Body.Close()

	fetchOK(t, ft, up.URL, "GET after the cancelled body")
	if n := up.opened.Load(); n != 2 {
		t.Errorf("%d connections opened; want 2, the stalled one not reused", n)
	}
}

// Requests that are not safe to send twice, that carry a body, that ask for a
// protocol switch or a 100 Continue, or that go over TLS, are Go's Transport's.
func TestWhatTheFastTransportDoesNotCarryGoesToTheFallback(t *testing.T) {
	t.Parallel()
	var got sync.Map // method and path → body received
	h := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.Store(r.Method+" "+r.URL.Path, string(body))
	}
	plain := httptest.NewServer(http.HandlerFunc(h))
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(http.HandlerFunc(h))
	t.Cleanup(secure.Close)
	// The TLS server's own client transport trusts its certificate, and speaks plain
	// HTTP as well.
	next := secure.Client().Transport.(*http.Transport).Clone()
	fb := &countingFallback{next: next}
	ft := newFastTransport(fb)
	t.Cleanup(ft.CloseIdleConnections)

	for _, tc := range []struct {
		name, method, url, body string
		header                  http.Header
		fallback                bool
	}{
		{"GET", http.MethodGet, plain.URL + "/get", "", nil, false},
		{"HEAD", http.MethodHead, plain.URL + "/head", "", nil, false},
		{"OPTIONS", http.MethodOptions, plain.URL + "/options", "", nil, false},
		{"POST with a body", http.MethodPost, plain.URL + "/post", `{"a":1}`, nil, true},
		{"DELETE without a body", http.MethodDelete, plain.URL + "/delete", "", nil, true},
		{"GET with a body", http.MethodGet, plain.URL + "/get-body", "q", nil, true},
		{"GET over TLS", http.MethodGet, secure.URL + "/tls", "", nil, true},
		{"GET with Upgrade", http.MethodGet, plain.URL + "/upgrade", "", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"GET with Expect", http.MethodGet, plain.URL + "/expect", "", http.Header{"Expect": {"100-continue"}}, true},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		req, err := http.NewRequestWithContext(ctx, tc.method, tc.url, body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.header {
			req.Header[k] = v
		}
		before := fb.calls.Load()
		resp, _ := roundTrip(t, ft, req)
		cancel()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: got %d", tc.name, resp.StatusCode)
		}
		if went := fb.calls.Load() != before; went != tc.fallback {
			t.Errorf("%s: went to the fallback: %t; want %t", tc.name, went, tc.fallback)
		}
		path := tc.url[strings.LastIndex(tc.url, "/"):]
		if b, ok := got.Load(tc.method + " " + path); !ok || b != tc.body {
			t.Errorf("%s: the upstream got body %q (received: %t); want %q", tc.name, b, ok, tc.body)
		}
	}
}

// Interim answers (100 Continue, 103 Early Hints) come before the answer proper and
// are skipped whole, leaving the connection ready for the next request.
func TestInterimAnswersAreSkipped(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		for {
			if _, ok := readRequest(br); !ok {
				return
			}
			for _, part := range []string{
				"HTTP/1.1 100 Continue\r\n\r\n",
				"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n",
				connAnswer(n, ""),
			} {
				if _, err := io.WriteString(c, part); err != nil {
					return
				}
			}
		}
	})
	ft, _ := newTestFast(t)

	for i := range 2 {
		resp, body := roundTrip(t, ft, fastRequest(t, http.MethodGet, up.url))
		if resp.StatusCode != http.StatusOK || body != "conn 1" || resp.Header.Get("Link") != "" {
			t.Errorf("GET %d: %d %q, Link %q; want 200 conn 1, no Link (the 103's)", i+1, resp.StatusCode, body, resp.Header.Get("Link"))
		}
	}
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("%d connections opened; want 1", n)
	}
}

// A 101 to a request that asked for no switch leaves the connection in an unknown
// protocol: an error, and the connection closed.
func TestSwitchingProtocolsUnaskedIsAnError(t *testing.T) {
	t.Parallel()
	hungUp := make(chan struct{}, 1)
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		if _, ok := readRequest(br); !ok {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_, _ = io.Copy(io.Discard, br) // until the client hangs up
		hungUp <- struct{}{}
	})
	ft, _ := newTestFast(t)

	resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.url))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got %d; want an error", resp.StatusCode)
	}
	if !errors.Is(err, errUpgrade) {
		t.Errorf("got %v; want errUpgrade", err)
	}
	waitFor(t, hungUp, "the client closed the switched connection")
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("%d connections opened; want 1", n)
	}
}

// Answers that have no body by rule (to a HEAD; a 204; a 304) end with their head,
// whatever Content-Length says: the connection goes back to the pool at once.
func TestAnswersWithoutABodyKeepTheConnection(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		for {
			req, ok := readRequest(br)
			if !ok {
				return
			}
			var answer string
			switch {
			case req.Method == http.MethodHead:
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
			case req.URL.Path == "/204":
				answer = "HTTP/1.1 204 No Content\r\n\r\n"
			case req.URL.Path == "/304":
				answer = "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n"
			case req.URL.Path == "/empty":
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
			default:
				answer = connAnswer(n, "")
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	ft, _ := newTestFast(t)

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodGet, "/204", http.StatusNoContent},
		{http.MethodGet, "/304", http.StatusNotModified},
		{http.MethodGet, "/empty", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
	} {
		// A transport that waited for the body Content-Length promises would fail
		// here, at the request's deadline.
		if status, body := fetch(t, ft, tc.method, up.url+tc.path); status != tc.status || body != "" {
			t.Errorf("%s %s: %d %q; want %d and no body", tc.method, tc.path, status, body, tc.status)
		}
	}
	if _, body := fetch(t, ft, http.MethodGet, up.url); body != "conn 1" {
		t.Errorf("the GET after them was answered by %q; want conn 1", body)
	}
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("%d connections opened; want 1", n)
	}
}

// CloseIdleConnections is for a transport that is done with: it closes the idle
// connections and the fallback's, a connection busy at the time is closed when its
// answer ends rather than pooled, and later calls fail.
func TestCloseIdleConnectionsClosesThemAndTheTransport(t *testing.T) {
	t.Parallel()
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}, nil)
	ft, fb := newTestFast(t)

	busy, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Body.Close()
	fetch(t, ft, http.MethodGet, up.URL) // a second connection, left idle

	ft.CloseIdleConnections()
	eventually(t, "the idle connection was closed", func() bool { return up.closed.Load() == 1 })
	if n := fb.idleClosed.Load(); n != 1 {
		t.Errorf("the fallback's CloseIdleConnections was called %d times; want 1", n)
	}
	body, err := io.ReadAll(busy.Body)
	if err != nil {
		t.Fatalf("the busy connection's body: %q, %v", body, err)
	}
	if string(body) != "ok" {
		t.Fatalf("the busy connection's body: %q; want ok", body)
	}
	eventually(t, "the busy connection was closed once its answer ended", func() bool { return up.closed.Load() == 2 })

	if resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.URL)); err == nil {
		resp.Body.Close()
		t.Errorf("a GET after CloseIdleConnections got %d; want an error", resp.StatusCode)
	}
	if n := up.opened.Load(); n != 2 {
		t.Errorf("%d connections opened; want 2", n)
	}
}

func TestConcurrentGetsGetTheirOwnAnswersOnNoMoreConnectionsThanCalls(t *testing.T) {
	t.Parallel()
	const goroutines, each = 32, 50
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path)
	}, nil)
	ft, _ := newTestFast(t)

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				path := fmt.Sprintf("/g/%d/%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), patience)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, up.URL+path, nil)
				resp, err := ft.RoundTrip(req)
				if err != nil {
					cancel()
					t.Errorf("GET %s: %v", path, err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				cancel()
				if err != nil {
					t.Errorf("GET %s: reading the body: %v", path, err)
					return
				}
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET %s: %d %q; want 200", path, resp.StatusCode, body)
					return
				}
				if string(body) != path {
					t.Errorf("GET %s: body %q; want the path", path, body)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := up.opened.Load(); n > goroutines {
		t.Errorf("%d connections opened for %d concurrent callers; want no more", n, goroutines)
	}
}

// A connection idle for longer than idleTimeout may be one the upstream is closing
// at that moment: it is closed rather than used.
func TestAConnectionIdleTooLongIsNotUsed(t *testing.T) {
	t.Parallel()
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}, nil)
	ft, _ := newTestFast(t)
	ft.idleTimeout = time.Nanosecond // every pooled connection is too old by the next call

	fetch(t, ft, http.MethodGet, up.URL)
	fetch(t, ft, http.MethodGet, up.URL)
	if n := up.opened.Load(); n != 2 {
		t.Errorf("%d connections opened; want 2", n)
	}
	eventually(t, "the stale connection was closed", func() bool { return up.closed.Load() == 1 })
}

// The pool keeps at most maxIdle connections per instance; one more is closed.
func TestThePoolKeepsNoMoreThanMaxIdle(t *testing.T) {
	t.Parallel()
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}, nil)
	ft, _ := newTestFast(t)
	ft.maxIdle = 1

	var open []*http.Response
	for range 2 { // two answers held unread: two connections
		resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.URL))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, resp)
	}
	for _, resp := range open {
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	eventually(t, "the connection over maxIdle was closed", func() bool { return up.closed.Load() == 1 })
	fetch(t, ft, http.MethodGet, up.URL)
	if n := up.opened.Load(); n != 2 {
		t.Errorf("%d connections opened; want 2, the pooled one reused", n)
	}
}

// A call whose time ran out on a reused connection met a slow upstream, not a dead
// connection: the upstream has the request. It is not sent again, the pool's other
// connections to the instance stay, and the error is the time-out, not a failure to
// connect (which the callers take for an instance that never saw the request, and try
// another instance). The direct path gives send a deadline and a context that ends
// only when the client leaves, so the error is all there is to tell the two apart.
func TestACallOutOfTimeOnAReusedConnectionIsNotSentAgain(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var slow atomic.Int32
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slow.Add(1)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}, nil)
	releaseBeforeClose(t, release)
	ft, _ := newTestFast(t)

	// Two idle connections: the slow call takes one, the other must stay pooled.
	held, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.URL))
	if err != nil {
		t.Fatal(err)
	}
	fetch(t, ft, http.MethodGet, up.URL)
	if _, err := io.ReadAll(held.Body); err != nil {
		t.Fatal(err)
	}
	held.Body.Close()

	req := fastRequest(t, http.MethodGet, up.URL+"/slow") // its context ends after patience
	start := time.Now()
	resp, err := ft.send(req.Context(), start.Add(100*time.Millisecond), up.Listener.Addr().String(), req,
		func(bw *bufio.Writer) error { return req.Write(bw) })
	if err == nil {
		resp.Body.Close()
		t.Fatal("the slow call succeeded; want a time-out")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the call returned after %s; its deadline was 100ms", took)
	}
	if !isTimeout(err) || isDialError(err) {
		t.Errorf("got %v; want the read's time-out, not a dial error", err)
	}
	fetchOK(t, ft, up.URL, "GET after the slow call")
	if n := up.opened.Load(); n != 2 {
		t.Errorf("%d connections opened; want 2, the GET after the slow call on the one left idle", n)
	}
	if n := slow.Load(); n != 1 {
		t.Errorf("the upstream got the slow call %d times", n)
	}
}

// A body that fails part-way leaves the connection in the middle of an answer: it is
// closed, never pooled, whether the call's deadline cut the body (the upstream sent
// half and stalled) or the body was malformed (the upstream would go on answering on
// that connection, so that pooling it would be seen).
func TestABodyThatFailsPartWayClosesTheConnection(t *testing.T) {
	t.Parallel()
	var hungUp hangUps
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		for {
			req, ok := readRequest(br)
			if !ok {
				hungUp.mark(n)
				return
			}
			answer := connAnswer(n, "")
			switch req.URL.Path {
			case "/stall":
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"
			case "/malformed":
				answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})

	// Each on a transport of its own, so that the call opens a connection.
	t.Run("deadline", func(t *testing.T) {
		ft, _ := newTestFast(t)
		before := up.accepted.Load()
		req := fastRequest(t, http.MethodGet, up.url+"/stall")
		start := time.Now()
		resp, err := ft.send(req.Context(), start.Add(200*time.Millisecond), strings.TrimPrefix(up.url, "http://"), req,
			func(bw *bufio.Writer) error { return req.Write(bw) })
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if body, err := io.ReadAll(resp.Body); err == nil || string(body) != "hello" {
			t.Fatalf("the stalled body: %q, %v; want hello and an error", body, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the read failed after %s; the deadline was 200ms", took)
		}
		resp.Body.Close()
		eventually(t, "the client closed the stalled connection", func() bool { return hungUp.has(before + 1) })
		if _, body := roundTrip(t, ft, fastRequest(t, http.MethodGet, up.url)); body != fmt.Sprintf("conn %d", before+2) {
			t.Errorf("the next GET was answered by %q; want a new connection", body)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		ft, _ := newTestFast(t)
		before := up.accepted.Load()
		resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.url+"/malformed"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if body, err := io.ReadAll(resp.Body); err == nil {
			t.Fatalf("the malformed body read as %q; want an error", body)
		}
		resp.Body.Close()
		eventually(t, "the client closed the connection", func() bool { return hungUp.has(before + 1) })
		if _, body := roundTrip(t, ft, fastRequest(t, http.MethodGet, up.url)); body != fmt.Sprintf("conn %d", before+2) {
			t.Errorf("the next GET was answered by %q; want a new connection", body)
		}
	})
}

// Bytes after an answer's end are an upstream's mistake; kept, they would be read as
// the next call's answer, one client's answer given to another.
func TestAConnectionWithBytesPastTheAnswerIsNotReused(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		for {
			if _, ok := readRequest(br); !ok {
				return
			}
			// Two answers at once: the second belongs to no request.
			stray := "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
			if _, err := io.WriteString(c, connAnswer(n, "")+stray); err != nil {
				return
			}
		}
	})
	ft, _ := newTestFast(t)
	for i := range 2 {
		status, body := fetch(t, ft, http.MethodGet, up.url)
		if status != http.StatusOK {
			t.Errorf("call %d: %d %q; want 200", i+1, status, body)
		}
		if want := fmt.Sprintf("conn %d", i+1); body != want {
			t.Errorf("call %d: body %q; want %q, from a connection of its own", i+1, body, want)
		}
	}
}

// conn takes the most recent idle connection first, so the oldest would stay open for
// ever under steady traffic: put closes them once idle too long.
func TestTheOldestIdleConnectionIsClosedOnceIdleTooLong(t *testing.T) {
	t.Parallel()
	up := newCountedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}, nil)
	ft, _ := newTestFast(t)

	var open []*http.Response
	for range 2 { // two answers held unread: two connections, both pooled after
		resp, err := ft.RoundTrip(fastRequest(t, http.MethodGet, up.URL))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, resp)
	}
	for _, resp := range open {
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	ft.mu.Lock()
	ft.idleTimeout = time.Nanosecond // both are too old now
	ft.mu.Unlock()
	fetch(t, ft, http.MethodGet, up.URL) // takes the newer (closing it: too old), dials, puts
	eventually(t, "both old connections closed", func() bool { return up.closed.Load() == 2 })
}
