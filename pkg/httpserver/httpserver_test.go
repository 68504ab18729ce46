package httpserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

func newTestRouter(t *testing.T) (*httptest.Server, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	log, _ := logging.New(logs, "debug", "test")
	tr, err := telemetry.Setup(context.Background(), "test", telemetry.Export{})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter(Deps{Log: log, Metrics: metrics.New(), Tracing: tr})
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	r.Post("/echo", func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := httpjson.Decode(r, &v); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "echoed")
		httpjson.Write(w, 200, v)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, logs
}

func decodeProblem(t *testing.T, resp *http.Response) problem.Details {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("content type %q", ct)
	}
	var d problem.Details
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRequestIDEchoedAndLogged(t *testing.T) {
	t.Parallel()
	srv, logs := newTestRouter(t)
	req, _ := http.NewRequest("POST", srv.URL+"/echo", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(RequestIDHeader, "abc-123")
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(RequestIDHeader); got != "abc-123" {
		t.Fatalf("X-Request-ID = %q", got)
	}
	if !strings.Contains(logs.String(), `"msg":"echoed"`) || !strings.Contains(logs.String(), `"request_id":"abc-123"`) ||
		!regexp.MustCompile(`"trace_id":"[0-9a-f]{32}"`).MatchString(logs.String()) {
		t.Fatalf("logs lack ids: %s", logs.String())
	}

	// An insane id is replaced.
	req, _ = http.NewRequest("POST", srv.URL+"/echo", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(RequestIDHeader, "<script>")
	resp, err = testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(RequestIDHeader); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got) {
		t.Fatalf("X-Request-ID = %q", got)
	}
}

func TestProblemsFromMiddleware(t *testing.T) {
	t.Parallel()
	srv, logs := newTestRouter(t)
	get := func(method, path string, body io.Reader) *http.Response {
		req, _ := http.NewRequest(method, srv.URL+path, body)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := testhttp.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if d := decodeProblem(t, get("GET", "/nope", nil)); d.Status != 404 {
		t.Errorf("unknown route: %+v", d)
	}
	if d := decodeProblem(t, get("GET", "/echo", nil)); d.Status != 405 {
		t.Errorf("wrong method: %+v", d)
	}
	if d := decodeProblem(t, get("GET", "/panic", nil)); d.Status != 500 || d.RequestID == "" {
		t.Errorf("panic: %+v", d)
	}
	if !strings.Contains(logs.String(), `"msg":"panic"`) {
		t.Error("panic not logged")
	}
	big := `{"a":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	if d := decodeProblem(t, get("POST", "/echo", strings.NewReader(big))); d.Status != 413 {
		t.Errorf("big body: %+v", d)
	}
	// A body with no Content-Length is cut off while it is read.
	if d := decodeProblem(t, get("POST", "/echo", io.MultiReader(strings.NewReader(big)))); d.Status != 413 {
		t.Errorf("big chunked body: %+v", d)
	}
}

func TestServerGracefulShutdown(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(200 * time.Millisecond) // a slow request in flight at shutdown
		w.Write([]byte("done"))
	})
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	s := New("127.0.0.1:0", h, log)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()

	addrRe := regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := addrRe.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("server never logged its address")
	}
	body := make(chan string, 1)
	go func() {
		resp, err := testhttp.Client.Get("http://" + addr)
		if err != nil {
			body <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body <- string(b)
	}()
	<-started
	cancel()
	if got := <-body; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := testhttp.Client.Get("http://" + addr); err == nil {
		t.Fatal("server still accepts after shutdown")
	}
}
