package storefront

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/propagation"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// api calls the public API the way any client does, but in the process: each call is
// a request served by the gateway's own handler, so it is authenticated, rate limited
// (per the browser's address and per user), cached, logged and traced exactly like a
// request from outside, and the pages can do nothing a script with the same token
// could not. Nothing here reaches a service but through the gateway's routes.
type api struct {
	h http.Handler // the gateway's public handler (the router the pages are mounted on)
}

// call is one API request on behalf of the page request from.
type call struct {
	method string
	path   string // with its query, e.g. /api/v1/products?limit=12
	token  string // the access token to send; "" for an anonymous call
	body   any    // JSON-encoded when not nil
	header http.Header
	// anyStatus decodes the body whatever the status, for answers that are read
	// either way (GET /health answers 503 with the report when something is down).
	anyStatus bool
}

// answer is what the API answered: its status and headers; the body is decoded into
// the caller's value on success.
type answer struct {
	status int
	header http.Header
}

// do makes c on behalf of from (the browser's request: its address, its request id
// and its trace go along) and decodes a 2xx body into out (when not nil). Any other
// status is returned as the *apperr.Error its problem document describes
// (problem.FromResponse), with the Retry-After it carried kept in retryAfter.
func (a api) do(from *http.Request, c call, out any) (answer, error) {
	var body io.Reader = http.NoBody
	if c.body != nil {
		b, err := json.Marshal(c.body)
		if err != nil {
			return answer{}, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(innerContext(from.Context()), c.method, c.path, body)
	if err != nil {
		return answer{}, err
	}
	a.prepare(req, from, c)
	rec := newRecorder()
	a.h.ServeHTTP(rec, req)
	ans := answer{status: rec.status, header: rec.header}
	if (rec.status < 200 || rec.status > 299) && !c.anyStatus {
		resp := &http.Response{StatusCode: rec.status, Header: rec.header, Body: io.NopCloser(&rec.body)}
		return ans, withRetryAfter(problem.FromResponse(resp), rec.header)
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return ans, apperr.Wrap(err, apperr.BadGateway, "the API answered something the shop cannot read")
		}
	}
	return ans, nil
}

// stream forwards the API's answer to c straight to w as it is written: for the order
// status stream (server-sent events), which lasts.
func (a api) stream(w http.ResponseWriter, from *http.Request, c call) {
	req, err := http.NewRequestWithContext(innerContext(from.Context()), c.method, c.path, http.NoBody)
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	a.prepare(req, from, c)
	a.h.ServeHTTP(w, req)
}

// prepare gives req what it carries from the page request: the client's address (the
// API's limits are the browser's, not the gateway's), the request id (one id for the
// page and its calls in the logs) and the trace context. The browser's cookies stay
// behind: the API knows nothing of them, and the services must never see them.
func (a api) prepare(req *http.Request, from *http.Request, c call) {
	req.RemoteAddr = from.RemoteAddr
	req.Host = from.Host
	req.TLS = from.TLS
	req.Header.Set("Accept", "application/json")
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if id := from.Header.Get("X-Request-ID"); id != "" {
		req.Header.Set("X-Request-ID", id)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	propagation.TraceContext{}.Inject(from.Context(), propagation.HeaderCarrier(req.Header))
}

// innerContext is ctx without the router's state, so that the API request is routed
// afresh: chi reuses a routing context it finds in the request's context.
func innerContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, chi.RouteCtxKey, (*chi.Context)(nil))
}

// retryAfterError is an API refusal that said how long to wait.
type retryAfterError struct {
	error
	wait time.Duration
}

func (e retryAfterError) Unwrap() error { return e.error }

func withRetryAfter(err error, h http.Header) error {
	if s, e := strconv.Atoi(h.Get("Retry-After")); e == nil && s > 0 {
		return retryAfterError{err, time.Duration(s) * time.Second}
	}
	return err
}

// recorder keeps what the API answered to a call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// Flush is there for handlers that flush as they go; the answer is read whole.
func (r *recorder) Flush() {}
