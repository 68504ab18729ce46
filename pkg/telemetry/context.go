package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
)

// TraceParent is the W3C traceparent of the span in ctx, "" when there is none: what
// travels with work that leaves the process through storage (an outbox row, a queued
// notification) or a queue (a task's headers, an event's envelope).
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// WithTraceParent is ctx carrying the remote span context that traceparent names, so
// that spans started from it join that trace; ctx as it is when traceparent is empty
// or malformed.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// Transport is rt with each call a client span of t's, and the caller's trace passed
// on in traceparent, so that the called program's spans and logs join it. Without an
// exporter the spans record nothing but the trace still travels. A nil t gives rt as
// it is. opts are otelhttp's (a span name formatter, say).
func (t *Tracing) Transport(rt http.RoundTripper, opts ...otelhttp.Option) http.RoundTripper {
	if t == nil {
		return rt
	}
	return otelhttp.NewTransport(rt, append([]otelhttp.Option{
		otelhttp.WithTracerProvider(t.Provider), otelhttp.WithPropagators(t.Propagator)}, opts...)...)
}
