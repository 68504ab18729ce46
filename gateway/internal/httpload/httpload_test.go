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
		if res.Requests < 4 || res.Statuses[c.status] != res.Requests || res.OK() != res.Requests {
			t.Errorf("%s: %d answers, statuses %v", c.path, res.Requests, res.Statuses)
		}
		if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
			t.Errorf("%s: percentiles %v %v %v", c.path, res.P50, res.P99, res.Max)
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
	if err == nil || res.Errors == 0 {
		t.Fatalf("a closed port: %+v, %v", res, err)
	}
}
