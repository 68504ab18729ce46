// Package inproc makes requests of the gateway's own public handler in the process,
// as if they came from outside: the storefront's pages and the order story are
// clients of the public API like any other, and this is how they call it without a
// round trip over the network.
//
// A request made here is routed, authenticated and rate limited afresh, exactly as
// the same request from outside would be: it carries none of the calling request's
// context values (its route, a principal verified for it), only what a client would
// send — the token it is given, the caller's address (so that the per-address
// limits are the caller's), and the request id and trace context of the request it
// is made for, so that logs and traces tie the two together.
package inproc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// maxAnswer bounds what one answer read whole (Do) may hold.
const maxAnswer = 4 << 20

// Client calls an http.Handler (the gateway's router) in the process.
type Client struct {
	Handler http.Handler
}

// Request is one call.
type Request struct {
	Method string
	Path   string // with its query, e.g. /api/v1/products?limit=12
	Token  string // the bearer access token to send; "" for none
	Body   any    // sent as JSON when not nil
	Header http.Header
	// AnyStatus decodes the body whatever the status, for answers that are read
	// either way (GET /health answers 503 with its report when something is down).
	AnyStatus bool
}

// caller is what a call takes from the request it is made for.
type caller struct {
	remoteAddr, host string
	tls              *tls.ConnectionState
}

type callerKey struct{}

// WithCaller is ctx carrying what calls made with it take from r, the request they
// are made for: the client's address, so that the calls count against that client's
// own limits per address, and r's host and TLS state. The request id and the trace
// are ctx's own (the gateway's middleware put r's there). Without it the calls come
// from no address.
func WithCaller(ctx context.Context, r *http.Request) context.Context {
	return context.WithValue(ctx, callerKey{}, caller{remoteAddr: r.RemoteAddr, host: r.Host, tls: r.TLS})
}

// Do makes req and decodes a 2xx answer's JSON body into out (when not nil). Any
// other status is returned as the *apperr.Error its problem document describes
// (problem.FromResponse). The answer's headers are returned either way.
func (c Client) Do(ctx context.Context, req Request, out any) (http.Header, error) {
	inner, cancel := detached(ctx)
	defer cancel()
	r, err := c.request(inner, ctx, req)
	if err != nil {
		return nil, err
	}
	rec := &recorder{header: http.Header{}}
	c.Handler.ServeHTTP(rec, r)
	if (rec.status < 200 || rec.status > 299) && !req.AnyStatus {
		resp := &http.Response{StatusCode: rec.status, Header: rec.header, Body: io.NopCloser(&rec.body)}
		return rec.header, problem.FromResponse(resp)
	}
	if rec.overflow {
		return rec.header, apperr.E(apperr.BadGateway, "the answer to %s was too large", r.URL.Path)
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return rec.header, apperr.Wrap(err, apperr.BadGateway, "the answer to "+r.URL.Path+" could not be read")
		}
	}
	return rec.header, nil
}

// Stream makes req and writes the answer to w as it is written: for answers that
// last, such as an order's status stream (server-sent events).
func (c Client) Stream(ctx context.Context, w http.ResponseWriter, req Request) {
	inner, cancel := detached(ctx)
	defer cancel()
	r, err := c.request(inner, ctx, req)
	if err != nil {
		http.Error(w, "the request could not be made", http.StatusInternalServerError)
		return
	}
	c.Handler.ServeHTTP(w, r)
}

// request builds req on inner, with what it takes from the caller in ctx.
func (c Client) request(inner, ctx context.Context, req Request) (*http.Request, error) {
	var body io.Reader = http.NoBody
	if req.Body != nil {
		b, err := json.Marshal(req.Body)
		if err != nil {
			return nil, apperr.Wrap(err, apperr.Internal, "the request could not be made")
		}
		body = bytes.NewReader(b)
	}
	r, err := http.NewRequestWithContext(inner, req.Method, req.Path, body)
	if err != nil {
		return nil, apperr.Wrap(err, apperr.Internal, "the request could not be made")
	}
	if cl, ok := ctx.Value(callerKey{}).(caller); ok {
		r.RemoteAddr, r.Host, r.TLS = cl.remoteAddr, cl.host, cl.tls
	}
	r.Header.Set("Accept", "application/json")
	if req.Body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if req.Token != "" {
		r.Header.Set("Authorization", "Bearer "+req.Token)
	}
	if id := logging.RequestID(ctx); id != "" {
		r.Header.Set("X-Request-ID", id)
	}
	if tp := telemetry.TraceParent(ctx); tp != "" {
		r.Header.Set("traceparent", tp)
	}
	for k, v := range req.Header {
		r.Header[k] = v
	}
	return r, nil
}

// detached is a context for a request made in the process as if it came from
// outside: it ends when ctx does (and has its deadline), but carries none of ctx's
// values, so nothing of the calling request (its route, its verified principal)
// leaks into the call, which is routed, authenticated and limited afresh.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	inner, cancel := context.WithCancelCause(context.Background())
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	var cancelDeadline context.CancelFunc = func() {}
	if d, ok := ctx.Deadline(); ok {
		inner, cancelDeadline = context.WithDeadline(inner, d)
	}
	return inner, func() {
		stop()
		cancelDeadline()
		cancel(context.Canceled)
	}
}

// recorder keeps what the handler answered to one call, up to maxAnswer bytes.
type recorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(p) > maxAnswer {
		r.overflow = true
		return len(p), nil
	}
	return r.body.Write(p)
}

// Flush is there for handlers that flush as they go; the answer is read whole.
func (r *recorder) Flush() {}
