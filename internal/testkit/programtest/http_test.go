package programtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// recorder is a testing.TB that records failures; Fatal stops its goroutine.
type recorder struct {
	testing.TB
	failed, fatal bool
}

func (r *recorder) Helper()                           {}
func (r *recorder) Errorf(string, ...any)             { r.failed = true }
func (r *recorder) Fatal(...any)                      { r.failed, r.fatal = true, true; runtime.Goexit() }
func (r *recorder) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }

// try runs f against a recorder and reports what it recorded.
func try(t *testing.T, f func(testing.TB)) *recorder {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); f(r) }()
	<-done
	return r
}

// echo answers with what it was sent, as JSON, or with the problem named by ?problem.
func echo(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if doc := r.URL.Query().Get("problem"); doc != "" {
			w.Header().Set("Content-Type", problem.ContentType)
			w.WriteHeader(http.StatusConflict)
			_, _ = io.WriteString(w, doc)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"body": string(body), "content_type": r.Header.Get("Content-Type"),
			"authorization": r.Header.Get("Authorization"), "x_extra": r.Header.Get("X-Extra"),
		})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCallSendsBodyAndHeaders(t *testing.T) {
	t.Parallel()
	u := echo(t)

	r := Call(t, http.MethodPost, u, `{"a":1}`, append(Bearer("tok"), "X-Extra", "x")...)
	var got map[string]string
	r.JSON(t, &got)
	if r.Status != http.StatusOK || r.Header.Get("X-Method") != http.MethodPost {
		t.Errorf("status %d, method %q", r.Status, r.Header.Get("X-Method"))
	}
	want := map[string]string{"body": `{"a":1}`, "content_type": "application/json", "authorization": "Bearer tok", "x_extra": "x"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}

	r = Call(t, http.MethodGet, u, "")
	got = nil
	r.JSON(t, &got)
	if got["body"] != "" || got["content_type"] != "" || got["authorization"] != "" {
		t.Errorf("bodiless call sent %v", got)
	}

	r = Call(t, http.MethodPut, u, "x", "Content-Type", "text/plain")
	got = nil
	r.JSON(t, &got)
	if got["content_type"] != "text/plain" {
		t.Errorf("header did not override the content type: %v", got)
	}
}

func TestCallFailsWhenTheServerIsGone(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	if rec := try(t, func(tb testing.TB) { Call(tb, http.MethodGet, srv.URL, "") }); !rec.fatal {
		t.Error("Call to a closed server did not fail the test")
	}
}

func TestJSONFailsOnBadJSON(t *testing.T) {
	t.Parallel()
	if rec := try(t, func(tb testing.TB) { var v any; Response{Body: []byte("{")}.JSON(tb, &v) }); !rec.fatal {
		t.Error("JSON accepted a broken document")
	}
}

func TestProblem(t *testing.T) {
	t.Parallel()
	u := echo(t)
	// withProblem is a URL at which echo answers with the problem document doc.
	withProblem := func(doc string) string { return u + "?problem=" + url.QueryEscape(doc) }
	good := `{"type":"urn:bazaar:problem:conflict","status":409,"request_id":"r1","detail":"d"}`
	d := Call(t, http.MethodGet, withProblem(good), "").Problem(t, http.StatusConflict)
	if d.RequestID != "r1" || d.Type != "urn:bazaar:problem:conflict" {
		t.Errorf("Problem = %+v", d)
	}

	for name, tc := range map[string]struct {
		resp   func() Response
		status int
		fatal  bool
	}{
		"other status":  {func() Response { return Call(t, http.MethodGet, withProblem(good), "") }, http.StatusNotFound, true},
		"not a problem": {func() Response { return Call(t, http.MethodGet, u, "") }, http.StatusOK, true},
		"no request_id": {func() Response {
			return Call(t, http.MethodGet, withProblem(`{"type":"t","status":409}`), "")
		}, http.StatusConflict, false},
		"no type": {func() Response {
			return Call(t, http.MethodGet, withProblem(`{"status":409,"request_id":"r"}`), "")
		}, http.StatusConflict, false},
		"document status differs": {func() Response {
			return Call(t, http.MethodGet, withProblem(`{"type":"t","status":400,"request_id":"r"}`), "")
		}, http.StatusConflict, false},
	} {
		r := tc.resp()
		rec := try(t, func(tb testing.TB) { r.Problem(tb, tc.status) })
		if !rec.failed || rec.fatal != tc.fatal {
			t.Errorf("%s: failed %v, fatal %v; want failed, fatal %v", name, rec.failed, rec.fatal, tc.fatal)
		}
	}
}
