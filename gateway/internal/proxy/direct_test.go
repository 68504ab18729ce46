package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// The direct path must forward a read as ReverseProxy does: these run on both.

func TestHopByHopHeadersStopAtTheGatewayBothWays(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		up, got := recordingUpstreamWith(t, func(w http.ResponseWriter) {
			h := w.Header()
			h.Set("Connection", "X-Upstream-Hop")
			h.Set("X-Upstream-Hop", "for the gateway only")
			h.Set("Keep-Alive", "timeout=5")
			h.Add("Cache-Control", "no-store")
			h.Add("Cache-Control", "private")
		})
		gw := serveGatewayOn(t, direct, up.URL, 5*time.Second)

		const path = "/api/v1/products/a%2Fb?cursor=x%20y&limit=2"
		req, _ := http.NewRequest(http.MethodGet, gw.URL+path, nil)
		req.Header.Set("Connection", "X-Client-Hop")
		req.Header.Set("X-Client-Hop", "for the gateway only")
		req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
		req.Header.Set("Te", "gzip") // "trailers" alone is passed on, for gRPC
		req.Header.Add("Accept", "application/json")
		req.Header.Add("Accept", "text/plain")
		resp, body := do(t, req)

		s := receive(t, got)
		if s.method != http.MethodGet || s.requestURI != path {
			t.Errorf("upstream got %s %s, want GET %s", s.method, s.requestURI, path)
		}
		for _, name := range []string{"X-Client-Hop", "Proxy-Authorization", "Te"} {
			if v := s.header.Values(name); len(v) > 0 {
				t.Errorf("upstream got hop-by-hop %s %q", name, v)
			}
		}
		if v := s.header.Values("Accept"); strings.Join(v, ",") != "application/json,text/plain" {
			t.Errorf("upstream got Accept %q, want both values in order", v)
		}
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("client got %d; want the upstream's 201", resp.StatusCode)
		}
		if body != `{"answer":42}` {
			t.Errorf("client got body %q; want the upstream's {\"answer\":42}", body)
		}
		for _, name := range []string{"X-Upstream-Hop", "Keep-Alive"} {
			if v := resp.Header.Values(name); len(v) > 0 {
				t.Errorf("client got hop-by-hop %s %q", name, v)
			}
		}
		if v := resp.Header.Values("Cache-Control"); strings.Join(v, ",") != "no-store,private" {
			t.Errorf("client got Cache-Control %q, want both values", v)
		}
	})
}

func TestAHeadRequestGetsTheHeadAlone(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		up, got := recordingUpstream(t)
		gw := serveGatewayOn(t, direct, up.URL, 5*time.Second)
		for range 3 { // and the connection serves the next one
			req, _ := http.NewRequest(http.MethodHead, gw.URL+"/api/v1/products", nil)
			resp, body := do(t, req)
			if s := receive(t, got); s.method != http.MethodHead {
				t.Errorf("upstream got %s, want HEAD", s.method)
			}
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("client got %d; want the upstream's 201", resp.StatusCode)
			}
			if body != "" {
				t.Errorf("client got body %q; want none", body)
			}
			if got := resp.Header.Get("X-Upstream"); got != "users" {
				t.Errorf("client got X-Upstream %q; want the upstream's users", got)
			}
		}
	})
}

func TestAClientThatLeavesEndsTheUpstreamCall(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		arrived, released := make(chan struct{}), make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				close(arrived)
				<-r.Context().Done() // answers only when the gateway hangs up
				close(released)
				return
			}
			io.WriteString(w, "ok")
		}))
		t.Cleanup(up.Close)
		gw := serveGatewayOn(t, direct, up.URL, time.Minute)

		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.URL+"/slow", nil)
		done := make(chan error, 1)
		go func() {
			resp, err := testhttp.Client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		waitFor(t, arrived, "the upstream never got the call")
		cancel()
		waitFor(t, released, "the upstream's call went on after the client left")
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("client: %v, want its own cancellation", err)
		}

		req, _ = http.NewRequest(http.MethodGet, gw.URL+"/next", nil)
		if resp, body := do(t, req); resp.StatusCode != http.StatusOK {
			t.Errorf("the next read: %d %q; want 200", resp.StatusCode, body)
		} else if body != "ok" {
			t.Errorf("the next read: body %q; want ok", body)
		}
	})
}

func TestAnAnswerCutShortIsCutShortForTheClient(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, strings.Repeat("x", 100))
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close() // the instance dies mid-answer
			}
		}))
		t.Cleanup(up.Close)
		gw := serveGatewayOn(t, direct, up.URL, 5*time.Second)

		// The head may not have left the gateway's buffer yet when it cuts the
		// connection: an error then or in the body, never a whole answer.
		resp, err := testhttp.Client.Get(gw.URL + "/api/v1/products")
		if err != nil {
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Errorf("the client read %d bytes and no error: a cut answer passed for whole", len(body))
		}
	})
}

// The direct path's point: one connection to the upstream carries read after read.
func TestReadsInTurnShareOneUpstreamConnection(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	gw := serveGatewayOn(t, true, up.URL, 5*time.Second)

	for range 50 {
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/products", nil)
		resp, body := do(t, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d %q; want 200", resp.StatusCode, body)
		}
		if body != `{"ok":true}` {
			t.Fatalf("got body %q; want {\"ok\":true}", body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("50 reads in turn opened %d connections to the upstream, want 1", n)
	}
}

// recordingUpstreamWith is recordingUpstream with more headers on its answer.
func recordingUpstreamWith(t *testing.T, header func(http.ResponseWriter)) (*httptest.Server, <-chan seen) {
	t.Helper()
	got := make(chan seen, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Method, r.RequestURI, r.Host, "", r.Header.Clone()}
		header(w)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"answer":42}`)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func waitFor(t *testing.T, ch <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal(why)
	}
}

// An instance reached over TLS is not the direct path's: the read goes through
// ReverseProxy and its Transport, which speaks TLS (here it does not trust the test
// server's certificate, so the answer is a 502; written as plain HTTP, the read
// would have been answered 400 by the TLS server itself).
func TestAReadToAnInstanceOverTLSTakesTheOtherPath(t *testing.T) {
	t.Parallel()
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	gw := serveGatewayOn(t, true, up.URL, 5*time.Second)
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/products", nil)
	resp, body := do(t, req)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("got %d %q; want the TLS call's failure (502), not plain HTTP sent to a TLS port", resp.StatusCode, body)
	}
}
