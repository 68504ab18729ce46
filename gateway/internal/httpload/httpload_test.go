package httpload

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The generator reads answers of every framing it may meet (a length, chunks, a body
// to the end of a closed connection), counts each answer's status, and reuses a
// connection as long as the server keeps it.
func TestRunCountsAnswersOfEveryFraming(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/chunked":
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	for _, c := range []struct {
		path     string
		status   int
		reusable bool
	}{{"/length", 200, true}, {"/chunked", 202, true}, {"/close", 200, false}} {
		before := conns.Load()
		res, err := Run(context.Background(), Options{
			Addr:     addr,
			Requests: [][]byte{[]byte("GET " + c.path + " HTTP/1.1\r\nHost: x\r\n\r\n")},
			Conns:    2,
			Duration: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if res.Requests < 4 {
			t.Errorf("%s: %d answers, want at least 4", c.path, res.Requests)
		}
		if n := res.Statuses[c.status]; n != res.Requests {
			t.Errorf("%s: %d of %d answers %d, want all; statuses %v", c.path, n, res.Requests, c.status, res.Statuses)
		}
		if n := res.OK(); n != res.Requests {
			t.Errorf("%s: OK() = %d of %d answers, want all; statuses %v", c.path, n, res.Requests, res.Statuses)
		}
		if res.P50 <= 0 {
			t.Errorf("%s: p50 %v, want above 0", c.path, res.P50)
		}
		if res.P99 < res.P50 {
			t.Errorf("%s: p99 %v below p50 %v", c.path, res.P99, res.P50)
		}
		if res.Max < res.P99 {
			t.Errorf("%s: max %v below p99 %v", c.path, res.Max, res.P99)
		}
		dialled := int(conns.Load() - before)
		if c.reusable && dialled != 2 {
			t.Errorf("%s: %d connections for 2 kept-alive workers", c.path, dialled)
		}
		if !c.reusable && dialled < res.Requests {
			t.Errorf("%s: %d connections for %d answers on closed connections", c.path, dialled, res.Requests)
		}
		if !strings.HasPrefix(string(res.Sample), "HTTP/1.1 ") {
			t.Errorf("%s: sample %q", c.path, res.Sample)
		}
	}
}

func TestRunFailsWhenNothingAnswers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	res, err := Run(context.Background(), Options{Addr: addr, Requests: [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n")}, Conns: 1, Duration: 50 * time.Millisecond})
	if err == nil {
		t.Errorf("a closed port: %+v, no error; want one", res)
	}
	if res.Errors == 0 {
		t.Errorf("a closed port: no broken connections counted, want some; %v", err)
	}
}
