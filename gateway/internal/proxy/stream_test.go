package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/gateway/internal/proxy"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// streamGateway serves a streaming proxy to upstream behind the standard middleware,
// on a server whose read and write timeouts are serverTimeout, as the gateway's own
// are (much longer there, which is all the difference). When served is not nil, it
// is told each time the gateway has finished with a request.
func streamGateway(t *testing.T, upstream string, serverTimeout time.Duration, opts proxy.Options, served chan<- struct{}) *httptest.Server {
	t.Helper()
	log, err := logging.New(t.Output(), "debug", "gateway")
	if err != nil {
		t.Fatal(err)
	}
	tracing, err := telemetry.Setup(context.Background(), "gateway", telemetry.Export{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Log, opts.Tracing = log, tracing
	p, err := proxy.New(balanced(t, "orders", upstream, balancer.Settings{}), opts)
	if err != nil {
		t.Fatal(err)
	}
	r := httpserver.NewRouter(httpserver.Deps{Log: log, Metrics: metrics.New(), Tracing: tracing})
	r.Handle("/*", p)
	var h http.Handler = r
	if served != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			defer func() { served <- struct{}{} }() // also when the proxy aborts the response
			r.ServeHTTP(w, req)
		})
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = serverTimeout
	srv.Config.WriteTimeout = serverTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// sseUpstream writes `event: status` frames, flushing each one. Before each frame
// after the first it waits for the test to say the previous one arrived (so a frame
// held back anywhere on the way stalls the test rather than passing it) and then
// pauses for pause. After the last frame it stays open until the request ends,
// which it reports on the returned channel.
func sseUpstream(t *testing.T, frames int, pause time.Duration, next <-chan struct{}) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	ended := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ended <- struct{}{} }()
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := 1; i <= frames; i++ {
			if i > 1 {
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
				time.Sleep(pause) // the silence the stream must survive, not synchronisation
			}
			fmt.Fprintf(w, "event: status\ndata: {\"n\":%d}\n\n", i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
		<-r.Context().Done()
	}))
	t.Cleanup(up.Close)
	return up, ended
}

// frameReader reads an event stream frame by frame in the background.
type frameReader struct {
	frames chan string
	done   chan error // the error that ended the stream (io.EOF for a clean end)
}

func readFrames(body io.Reader) *frameReader {
	f := &frameReader{frames: make(chan string, 16), done: make(chan error, 1)}
	go func() {
		br := bufio.NewReader(body)
		var frame strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				f.done <- err
				return
			}
			if line == "\n" {
				f.frames <- frame.String()
				frame.Reset()
				continue
			}
			frame.WriteString(line)
		}
	}()
	return f
}

func (f *frameReader) next(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case fr := <-f.frames:
		return fr
	case err := <-f.done:
		t.Fatalf("the stream ended (%v) while a frame was expected", err)
	case <-time.After(within):
		t.Fatalf("no frame within %s", within)
	}
	return ""
}

func (f *frameReader) end(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case fr := <-f.frames:
		t.Fatalf("got frame %q, want the stream to end", fr)
	case <-f.done:
	case <-time.After(within):
		t.Fatalf("the stream was still open after %s", within)
	}
}

func openStream(t *testing.T, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("got %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp
}

func TestStreamFlushesEachFrameAndOutlivesEveryTimeout(t *testing.T) {
	t.Parallel()
	const (
		timeout = 200 * time.Millisecond // UPSTREAM_TIMEOUT
		server  = 300 * time.Millisecond // the gateway server's read and write timeouts
		pause   = 2 * server             // between frames, longer than both
		frames  = 3
	)
	next := make(chan struct{})
	up, _ := sseUpstream(t, frames, pause, next)
	gw := streamGateway(t, up.URL, server, proxy.Options{Timeout: timeout, IdleTimeout: time.Minute}, nil)

	start := time.Now()
	resp := openStream(t, gw.URL+"/api/v1/orders/o1/events")
	f := readFrames(resp.Body)
	for i := 1; i <= frames; i++ {
		// The upstream sends frame i+1 only once frame i is here: a frame held back
		// by the gateway would stall the test here.
		if got, want := f.next(t, 5*time.Second), fmt.Sprintf("event: status\ndata: {\"n\":%d}\n", i); got != want {
			t.Fatalf("frame %d: got %q, want %q", i, got, want)
		}
		if i < frames {
			next <- struct{}{}
		}
	}
	if took := time.Since(start); took < (frames-1)*pause {
		t.Fatalf("the stream took %s, want at least %s: the test did not test the timeouts", took, (frames-1)*pause)
	}
}

func TestStreamEndsWhenTheUpstreamFallsSilent(t *testing.T) {
	t.Parallel()
	up, ended := sseUpstream(t, 1, 0, nil)
	gw := streamGateway(t, up.URL, time.Minute, proxy.Options{Timeout: 5 * time.Second, IdleTimeout: 300 * time.Millisecond}, nil)

	f := readFrames(openStream(t, gw.URL+"/api/v1/orders/o1/events").Body)
	f.next(t, 5*time.Second)
	f.end(t, 5*time.Second)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the gateway left the upstream's call running")
	}
}

func TestStreamEndsWhenTheGatewayStops(t *testing.T) {
	t.Parallel()
	up, ended := sseUpstream(t, 1, 0, nil)
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	gw := streamGateway(t, up.URL, time.Minute, proxy.Options{Timeout: 5 * time.Second, IdleTimeout: time.Minute, Stop: stop}, nil)

	f := readFrames(openStream(t, gw.URL+"/api/v1/orders/o1/events").Body)
	f.next(t, 5*time.Second)
	cancel()
	f.end(t, 5*time.Second)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the gateway left the upstream's call running")
	}
}

func TestStreamStillTimesOutAnUpstreamThatSendsNoHeaders(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(up.Close)
	gw := streamGateway(t, up.URL, time.Minute, proxy.Options{Timeout: 200 * time.Millisecond, IdleTimeout: time.Minute}, nil)

	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/orders/o1/events", nil)
	resp, body := do(t, req)
	if d := decodeProblem(t, resp, body); resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("got %d %+v, want 504", resp.StatusCode, d)
	}
}

func TestStreamEndsWhenTheClientStopsReading(t *testing.T) {
	t.Parallel()
	ended := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(ended)
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		frame := []byte("event: status\ndata: " + strings.Repeat("x", 32<<10) + "\n\n")
		for r.Context().Err() == nil {
			if _, err := w.Write(frame); err != nil || rc.Flush() != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	served := make(chan struct{}, 1)
	gw := streamGateway(t, up.URL, time.Minute, proxy.Options{Timeout: 5 * time.Second, IdleTimeout: 300 * time.Millisecond}, served)

	// The client takes the stream and never reads it: the connection's buffers fill,
	// the gateway's write blocks, and only the idle bound can end it.
	openStream(t, gw.URL+"/api/v1/orders/o1/events")
	for name, ch := range map[string]chan struct{}{"the upstream's call": ended, "the gateway's handler": served} {
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s was still running for a client that stopped reading", name)
		}
	}
}
