// Package proxy forwards requests to one upstream service. Paths and bodies go through
// unchanged; the upstream gets the gateway's request id, the trace context, and
// X-Forwarded-* headers built from what the gateway itself saw; the whole call runs
// under a time limit; and when the upstream fails the client gets a problem+json
// answer that names the service but none of its addresses.
//
// Each request goes to an instance of the service that its balancer (pkg/balancer)
// picks, and the balancer is told how the call went: a call that got no answer (a
// refused, reset or dropped connection, no answer within the time limit) is a failure
// of that instance, which enough of in a row take out of service; any answer the
// instance gives, a 5xx included, is its own and passed on, since a service's 503 is
// often about its own dependencies, which another instance shares. When no instance
// is in service, or the upstream's breaker is open, the client gets a 503 at once.
//
// The gateway makes one Proxy per upstream service and one more for each streaming
// route (server-sent events), whose calls are bounded by silence rather than by their
// length (Options.IdleTimeout); both share the service's balancer, so that they share
// what it knows of the instances.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Timeouts of the connection itself; Options.Timeout bounds the call as a whole.
const (
	dialTimeout = 2 * time.Second
	tlsTimeout  = 5 * time.Second
)

// statusClientClosedRequest is nginx's status for a client that left before the
// answer. Nobody reads it; it keeps such requests out of the upstream-failure counts
// in the access log and the metrics.
const statusClientClosedRequest = 499

// Options tune a Proxy.
type Options struct {
	// Timeout bounds the whole call, from sending the request to the last byte of the
	// response (UPSTREAM_TIMEOUT); for a streaming proxy (IdleTimeout set) it bounds
	// only the wait for the response's headers. It must be positive.
	Timeout time.Duration
	// IdleTimeout, when positive, makes a streaming proxy, for responses that last as
	// long as the client listens (server-sent events). A call then has no overall
	// time limit: it ends when the upstream ends it, the client leaves, Stop ends, or
	// nothing has come from the upstream and got through to the client for
	// IdleTimeout (an upstream gone silent, or a client that stopped reading). It
	// must be longer than the upstream's keep-alive interval.
	IdleTimeout time.Duration
	// Stop, for a streaming proxy, ends every stream when it is done, so that the
	// gateway's graceful shutdown does not wait for streams that would never end by
	// themselves. Nil never stops them.
	Stop context.Context
	// Log receives upstream failures. It is required.
	Log *slog.Logger
	// Tracing, when set, makes a client span per call and propagates its context.
	Tracing *telemetry.Tracing
}

// Proxy forwards requests to one upstream service. It is an http.Handler.
type Proxy struct {
	name    string
	timeout time.Duration
	idle    time.Duration // 0 unless streaming
	stop    context.Context
	log     *slog.Logger
	rp      *httputil.ReverseProxy
	up      *balancer.Balancer
	pool    *fastTransport // the direct path's connections; nil when it is not taken
}

// New proxies to the instances of the service upstream balances, named in error
// details by the balancer's name. Request paths are forwarded unchanged. It returns an
// error when upstream is nil, opts.Timeout is not positive or opts.IdleTimeout is
// negative.
func New(upstream *balancer.Balancer, opts Options) (*Proxy, error) {
	if upstream == nil {
		return nil, errors.New("proxy: no upstream")
	}
	name := upstream.Name()
	if opts.Timeout <= 0 {
		return nil, fmt.Errorf("upstream %s: the timeout must be positive", name)
	}
	if opts.IdleTimeout < 0 {
		return nil, fmt.Errorf("upstream %s: the idle timeout must not be negative", name)
	}
	p := &Proxy{name: name, timeout: opts.Timeout, idle: opts.IdleTimeout, stop: opts.Stop, log: opts.Log, up: upstream}
	if p.stop == nil {
		p.stop = context.Background()
	}
	transport, pool := newTransport(name, opts)
	if pool != nil && opts.Tracing == nil {
		p.pool = pool // the direct path's
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { rewrite(pr, name) },
		Transport:      &balanced{up: upstream, next: transport},
		ModifyResponse: dropUpstreamRequestID,
		BufferPool:     copyBuffers{},
		ErrorHandler:   p.fail,
		ErrorLog:       slog.NewLogLogger(opts.Log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// ServeHTTP forwards r to an instance of the upstream and copies its answer back. A
// failing upstream is a 502 or a 504, or a 503 at once when no instance is in
// service or its breaker is open (see fail).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.idle > 0 {
		p.stream(w, r)
		return
	}
	if p.pool != nil && directSuits(r) {
		p.direct(w, r)
		return
	}
	p.reverse(w, r)
}

// reverse forwards r through ReverseProxy under the proxy's time limit.
func (p *Proxy) reverse(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// stream forwards a long-lived response. ReverseProxy already flushes each read of a
// text/event-stream (or unknown-length) body straight through; what stands in the way
// are time limits meant for ordinary requests:
//
//   - UPSTREAM_TIMEOUT, which ServeHTTP would put on the whole call; here only the
//     transport's ResponseHeaderTimeout keeps it, for the headers.
//   - The gateway server's WriteTimeout, a deadline on the connection set when the
//     request arrived, which would cut every stream after it. (Its ReadTimeout does
//     not matter: net/http lifts the read deadline once the request has been read.)
//
// The write deadline is lifted for this response, and the idle watchdog takes its
// place: it is reset each time a chunk has got through to the client, and when it
// fires it cancels the upstream call (which unblocks a read from a silent upstream)
// and puts a past write deadline on the client's connection (which unblocks a write
// to a client that stopped reading). ReverseProxy then aborts the response, the way
// it does for any failure in the middle of a body.
func (p *Proxy) stream(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	// An error means the writer cannot set deadlines (a test recorder): nothing to lift.
	_ = rc.SetWriteDeadline(time.Time{})

	wd := newWatchdog(p.idle, func() {
		p.log.InfoContext(ctx, "stream idle; closing it", "upstream", p.name, "idle", p.idle.String())
		cancel()
		_ = rc.SetWriteDeadline(time.Now())
	})
	defer wd.stop()
	stopStream := context.AfterFunc(p.stop, cancel)
	defer stopStream()

	p.rp.ServeHTTP(&activityWriter{ResponseWriter: w, wd: wd}, r.WithContext(ctx))
}

// watchdog calls fire once it has not been reset for a while, unless stopped first.
type watchdog struct {
	mu      sync.Mutex
	timer   *time.Timer
	idle    time.Duration
	stopped bool
}

func newWatchdog(idle time.Duration, fire func()) *watchdog {
	wd := &watchdog{idle: idle}
	wd.timer = time.AfterFunc(idle, func() {
		wd.mu.Lock()
		defer wd.mu.Unlock()
		// A timer that went off as the stream ended must not touch a connection
		// that may already serve the client's next request.
		if !wd.stopped {
			fire()
		}
	})
	return wd
}

func (wd *watchdog) reset() {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if !wd.stopped {
		wd.timer.Reset(wd.idle)
	}
}

func (wd *watchdog) stop() {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.stopped = true
	wd.timer.Stop()
}

// activityWriter resets the watchdog after every write and flush that got through.
type activityWriter struct {
	http.ResponseWriter
	wd *watchdog
}

func (a *activityWriter) Write(b []byte) (int, error) {
	n, err := a.ResponseWriter.Write(b)
	if err == nil {
		a.wd.reset()
	}
	return n, err
}

// FlushError is what http.ResponseController calls to flush.
func (a *activityWriter) FlushError() error {
	err := http.NewResponseController(a.ResponseWriter).Flush()
	if err == nil {
		a.wd.reset()
	}
	return err
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (a *activityWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// Via is what the gateway adds to the Via header of each request it forwards (RFC
// 9110, 7.6.3): the protocol and a pseudonym, not its address. A request that arrives
// with it has been through a Bazaar gateway already (Looped).
const Via = "1.1 " + viaName

const viaName = "bazaar-gateway"

// Looped reports whether r was forwarded by a Bazaar gateway: an upstream URL that
// points back at the gateway would otherwise send each request round until a limit
// stopped it, each lap holding a connection and a goroutine.
func Looped(r *http.Request) bool {
	for _, v := range r.Header["Via"] {
		if strings.Contains(v, viaName) {
			return true
		}
	}
	return false
}

// rewrite builds the outgoing request. Before calling it, ReverseProxy has already
// removed the hop-by-hop headers and the client's own Forwarded and X-Forwarded-*
// headers: the gateway is the edge, and a client could otherwise pose as any address.
// SetXForwarded then records what the gateway saw itself. (If a load balancer ever
// stands in front, trusting its X-Forwarded-For needs a list of trusted proxies.)
//
// The URL's host is the service's name until the transport (balanced) puts the
// instance's address, and its Host header, in its place.
func rewrite(pr *httputil.ProxyRequest, service string) {
	pr.SetURL(&url.URL{Scheme: "http", Host: service}) // the client's Host goes in X-Forwarded-Host
	pr.SetXForwarded()
	pr.Out.Header.Add("Via", Via)
	// The request-id middleware has already replaced an insane client id; setting it
	// from the context makes the upstream log under the gateway's id in every case.
	if id := logging.RequestID(pr.In.Context()); id != "" {
		pr.Out.Header.Set(httpserver.RequestIDHeader, id)
	}
	keepFromReplay(pr.Out)
}

// keepFromReplay makes sure Go's Transport cannot send out twice on its own (see
// newTransport) a request that changes something. It would re-send one that carries
// an Idempotency-Key header and no body, trusting the header's promise; but whether
// the upstream keeps that promise on a given path is not the gateway's to assume (the
// orders service keeps it for POST /api/v1/orders, which always has a body; nothing
// keeps it for POST /api/v1/orders/{id}/cancel). An empty body that cannot be
// rewound makes the request not replayable; the upstream sees an empty chunked body.
// The cost is that such a request is not retried either when it met a dead kept-alive
// connection before a byte was written (the client gets a 502 and may retry).
func keepFromReplay(out *http.Request) {
	switch out.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return
	}
	_, key := out.Header["Idempotency-Key"]
	_, xKey := out.Header["X-Idempotency-Key"]
	if out.Body == nil && (key || xKey) {
		out.Body = emptyBody{}
		out.GetBody = nil
	}
}

// emptyBody is a request body with nothing in it that, unlike http.NoBody, the
// Transport does not treat as "no body".
type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyBody) Close() error             { return nil }

// dropUpstreamRequestID keeps the response to the gateway's one X-Request-ID: the
// request-id middleware has set it already, and ReverseProxy adds the upstream's
// headers to the response rather than replacing them, so the upstream's echo of the
// same id would make a second header line.
func dropUpstreamRequestID(resp *http.Response) error {
	resp.Header.Del(httpserver.RequestIDHeader)
	return nil
}

// balanced sends each request to the instance its balancer picks, and tells the
// balancer how the call went once the answer's headers are in (a streamed answer
// holds a connection afterwards, not the instance's time).
//
// It sends a request a second time in one case only, to another instance: when the
// first could not even open a connection (nothing was sent) and the request has no
// body (which the first attempt may have consumed). That is what a dead instance
// looks like until enough failures take it out of service, and no request is ever
// delivered twice by it.
type balanced struct {
	up   *balancer.Balancer
	next http.RoundTripper
}

func (t *balanced) RoundTrip(req *http.Request) (*http.Response, error) {
	var avoid *balancer.Instance
	for attempt := 1; ; attempt++ {
		call, err := t.up.Pick(req.Context(), avoid)
		if err != nil {
			return nil, err
		}
		in := call.Instance()
		out := *req // a shallow copy: only the address differs
		u := *req.URL
		u.Scheme, u.Host = in.URL().Scheme, in.URL().Host
		out.URL, out.Host = &u, in.Host()
		resp, err := t.next.RoundTrip(&out)
		if err == nil {
			call.Done(balancer.Success)
			return resp, nil
		}
		var tooLarge *http.MaxBytesError
		if errors.Is(req.Context().Err(), context.Canceled) || errors.As(err, &tooLarge) {
			call.Done(balancer.Abandoned) // the client's doing, not the instance's
			return nil, err
		}
		call.Done(balancer.Failure)
		if attempt > 1 || !isDialError(err) || (req.Body != nil && req.Body != http.NoBody) {
			return nil, err
		}
		avoid = in
	}
}

// newTransport is the connection pool to one upstream's instances, traced when
// tracing is on (a span per attempt): fastTransport for the reads, Go's Transport
// behind it for every other request and for streams. The pool is returned too, for
// the direct path (nil for a streaming proxy).
//
// Retries: apart from balanced's second attempt at a connection that could not be
// opened, nothing in the gateway retries a request. ReverseProxy sends each request
// once and the otelhttp wrapper only observes. Both transports re-send a request by
// themselves only when a kept-alive connection they reused turns out to have been
// closed by the upstream, and then only when that is safe. fastTransport carries only
// GET, HEAD and OPTIONS without a body, and re-sends one when no byte of the answer had
// arrived. Go's Transport re-sends (a) a request of which not a byte had been written,
// so the upstream never saw it, and that has no body to re-send (a proxied body cannot
// be rewound); or (b) one that is replayable, that is GET, HEAD, OPTIONS or TRACE, or
// carries an Idempotency-Key header (which promises that a repeat is harmless), again
// with no body, and no byte of the answer had arrived. So a POST with a body is never
// sent twice, and keepFromReplay gives a body to the body-less writes that carry an
// Idempotency-Key; proxy_test.go checks both.
func newTransport(name string, opts Options) (http.RoundTripper, *fastTransport) {
	t := &http.Transport{
		// Proxy stays nil: upstreams are reached directly, never through an
		// HTTP_PROXY read from the environment behind run's back.
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   tlsTimeout,
		ResponseHeaderTimeout: opts.Timeout,
		ExpectContinueTimeout: time.Second,
		// The default of two idle connections per host would make a busy gateway
		// open and close connections to its upstream all the time.
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	var rt http.RoundTripper = t
	var pool *fastTransport
	if opts.IdleTimeout == 0 {
		// Streams stay on Go's Transport: they are few and long, and what
		// fastTransport saves a call would not matter to them.
		pool = newFastTransport(t)
		rt = pool
	}
	return opts.Tracing.Transport(rt, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return "proxy " + name + " " + r.Method
	})), pool
}

// copyBuffers lends ReverseProxy the buffers it copies answers through: without them it
// allocates, and zeroes, 32 KiB for every answer.
type copyBuffers struct{}

var buffers = sync.Pool{New: func() any { return make([]byte, 32<<10) }}

func (copyBuffers) Get() []byte { return buffers.Get().([]byte) }

//nolint:staticcheck // boxing the slice header allocates a little; the 32 KiB are what is reused
func (copyBuffers) Put(b []byte) { buffers.Put(b) }

// fail answers a call that brought no usable response. The detail names the service
// only: the error, with the upstream's address, goes to the log.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	p.failed(r.Context(), w, r, err) // the context carries the deadline ServeHTTP set
}

// failed is fail with the call's context, which carries its deadline.
func (p *Proxy) failed(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		// The client's streamed body passed the gateway's limit on its way through.
		problem.Write(w, r, p.log, apperr.E(apperr.TooLarge, "the body is over %d bytes", tooLarge.Limit))
	case errors.Is(err, balancer.ErrNoInstance) || errors.Is(err, balancer.ErrOpen):
		// Refused without a call: an Unavailable naming the service. A second is
		// about when the next readiness check may put an instance back.
		w.Header().Set("Retry-After", "1")
		problem.Write(w, r, p.log, err)
	case errors.Is(ctx.Err(), context.Canceled):
		p.log.DebugContext(ctx, "client left before the upstream answered", "upstream", p.name, "err", err)
		w.WriteHeader(statusClientClosedRequest)
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err):
		problem.Write(w, r, p.log, apperr.Wrap(err, apperr.Timeout,
			fmt.Sprintf("the %s service did not answer within %s", p.name, p.timeout)))
	case isDialError(err):
		problem.Write(w, r, p.log, apperr.Wrap(err, apperr.BadGateway,
			fmt.Sprintf("the %s service cannot be reached", p.name)))
	default: // a reset or dropped connection, or an answer that is not HTTP
		problem.Write(w, r, p.log, apperr.Wrap(err, apperr.BadGateway,
			fmt.Sprintf("the %s service did not give a valid answer", p.name)))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
