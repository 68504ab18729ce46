package httpserver

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// MaxBodyBytes is the largest request body any Bazaar program reads.
const MaxBodyBytes = 1 << 20

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-ID"

// Deps are what the standard middleware needs.
type Deps struct {
	Log     *slog.Logger
	Metrics *metrics.Registry
	Tracing *telemetry.Tracing
}

// NewRouter is a chi router with the standard middleware installed and problem+json
// answers for unknown routes and methods. The caller adds its routes.
func NewRouter(d Deps) *chi.Mux {
	r := chi.NewRouter()
	r.Use(RequestID, d.tracing, AccessLog(d.Log), Recover(d.Log), LimitBody(MaxBodyBytes), d.Metrics.Middleware)
	r.NotFound(problem.Handler(d.Log, apperr.E(apperr.NotFound, "no such resource")).ServeHTTP)
	r.MethodNotAllowed(problem.Handler(d.Log, apperr.E(apperr.NotAllowed, "this resource does not allow that method")).ServeHTTP)
	return r
}

func (d Deps) tracing(next http.Handler) http.Handler {
	if d.Tracing == nil {
		return next
	}
	if !d.Tracing.Exporting {
		return traceIDs(d.Tracing, next)
	}
	return otelhttp.NewHandler(routeAttribute(next), "http.server",
		otelhttp.WithTracerProvider(d.Tracing.Provider),
		otelhttp.WithPropagators(d.Tracing.Propagator),
		// Named by route, "GET /orders/{id}", not by the raw path, which carries ids:
		// a name per order would make every span its own kind. The route is known
		// once the router has set r.Pattern; otelhttp asks again after serving.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Method + " " + r.Pattern
			}
			return r.Method
		}),
	)
}

// routeAttribute records the route that served the request as http.route, once the
// router has matched one (chi knows the pattern only after routing).
func routeAttribute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if rc := chi.RouteContext(r.Context()); rc != nil {
			if pattern := rc.RoutePattern(); pattern != "" {
				trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("http.route", pattern))
			}
		}
	})
}

// traceIDs gives each request a span when spans are not exported: the caller's trace
// (traceparent) or a new one, so that the logs name it and the calls the request
// makes pass it on. The span records nothing, so it is given no attributes: the
// otelhttp handler would compute a dozen for each request, and its metrics, for
// nobody.
func traceIDs(t *telemetry.Tracing, next http.Handler) http.Handler {
	tracer := t.Provider.Tracer("github.com/bazaar-shop/bazaar/pkg/httpserver")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, "http.server")
		defer span.End()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// saneID reports whether a caller's request id may be used as it is: 1 to 128 of
// A-Z a-z 0-9 . _ : -.
func saneID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// requestIDKey is RequestIDHeader as header maps keep it, so that it is not worked
// out again (and allocated) for every request.
var requestIDKey = http.CanonicalHeaderKey(RequestIDHeader)

// NewRequestID is a random 128-bit id in hex.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RequestID takes the caller's X-Request-ID when it is a sane token, else makes one,
// puts it in the context for logs, and echoes it on the response.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header[requestIDKey]
		if len(v) != 1 || !saneID(v[0]) {
			v = []string{NewRequestID()}
			r.Header[requestIDKey] = v
		}
		// The same one-element slice in both headers: neither is changed in place.
		w.Header()[requestIDKey] = v
		next.ServeHTTP(w, r.WithContext(logging.WithRequestID(r.Context(), v[0])))
	})
}

// AccessLog writes one line per request once it is done. Probes and scrapes log at
// debug level so that they do not drown the rest.
func AccessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rw := &recorder{ResponseWriter: w}
			next.ServeHTTP(rw, r)
			level := slog.LevelInfo
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				level = slog.LevelDebug
			}
			if rw.status >= 500 {
				level = slog.LevelWarn
			}
			// LogAttrs: typed attributes, not values boxed in interfaces.
			log.LogAttrs(r.Context(), level, "request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", rw.statusOr200()),
				slog.Int("bytes", rw.bytes), slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
				slog.String("remote", r.RemoteAddr))
		})
	}
}

// Recover turns a panic into a logged 500 problem (unless the response had begun).
func Recover(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
					panic(v)
				}
				log.ErrorContext(r.Context(), "panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				problem.Write(w, r, nil, apperr.E(apperr.Internal, "an unexpected error occurred"))
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// LimitBody refuses bodies over n bytes: at once when Content-Length says so, else
// when the handler reads past the limit (httpjson then answers 413).
func LimitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				problem.Write(w, r, nil, apperr.E(apperr.TooLarge, "the body is over %d bytes", n))
				return
			}
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, n)
			}
			next.ServeHTTP(w, r)
		})
	}
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *recorder) statusOr200() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
